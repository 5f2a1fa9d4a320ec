"""Tests that the bench's receivers and poster count every delivery against the bare server (loopback)."""

import socket
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.poster import Poster  # noqa: E402
from bench.receivers import ReceiverPool  # noqa: E402
from bench.targets import BareServer  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def bare():
    with BareServer(free_port(), free_port()) as server:
        yield server


def test_every_post_reaches_every_socket_once(bare):
    """Tests that 30 sockets in 2 processes each get all 5 posts once, with latencies and no loss."""
    poster = Poster(bare.site, "t1", rate=50, count=5)
    after = poster.latest_id()
    with ReceiverPool(bare.endpoint, 2) as pool:
        opened = pool.connect(30, after)
        assert (opened["ok"], opened["failed"]) == (30, 0)
        pool.arm("t1")
        posted = poster.run()
        assert posted["posted"] == [0, 1, 2, 3, 4] and not posted["failed"]
        result = pool.expect("t1", posted["posted"], timeout=10)
    assert (result["deliveries"], result["lost"], result["duplicates"]) == (150, 0, 0)
    assert len(result["latencies"]) == 150 and all(0 <= x < 10 for x in result["latencies"])
    assert set(result["per_seq_count"].values()) == {30}


def test_a_post_nobody_got_is_lost_for_every_socket(bare):
    """Tests that a seq the receivers never saw counts as lost once per open socket."""
    poster = Poster(bare.site, "t2", rate=50, count=1)
    after = poster.latest_id()
    with ReceiverPool(bare.endpoint, 1) as pool:
        pool.connect(4, after)
        pool.arm("t2")
        poster.run()
        result = pool.expect("t2", [0, 99], timeout=0.5)
    assert result["lost"] == 4 and result["deliveries"] == 4


def test_refused_handshakes_are_counted_by_reason():
    """Tests that sockets to a port nobody listens on are failures named 'refused', not a crash."""
    from bench.receivers import Endpoint

    port = free_port()
    with ReceiverPool(Endpoint("127.0.0.1", port, f"127.0.0.1:{port}", "http://x"), 1, open_timeout=2) as pool:
        opened = pool.connect(3, None)
    assert opened["ok"] == 0 and opened["failures"] == {"refused": 3}
