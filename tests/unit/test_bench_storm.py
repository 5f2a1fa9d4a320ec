"""Tests that the reconnect storm's pure parts (who held what, who came back when, the limits'
design figure, the report) are right, and that reconnecting clients record their way back."""

import copy
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402
from bench.poster import Poster  # noqa: E402
from bench.protocol import parse_frame  # noqa: E402
from bench.receivers import BACKOFF_CAP, ReceiverPool, backoff  # noqa: E402
from bench.storm import (  # noqa: E402
    busiest,
    failures_since,
    handshake_stages,
    live_port,
    parse_rate,
    port_of,
    predicted_wait_s,
    reconnects,
    stack_limits,
)
from bench.targets import BareServer  # noqa: E402

KILL = 100.0


def ready(t, port):
    return ("ready", t, f"0.0.0.0:{port}")


def closed(t):
    return ("closed", t, "")


# Client timelines around a kill at t=100 of the Daphne on 8100.
BACK_ON_OTHER = [ready(10, 8100), closed(100.01), ready(100.6, 8101)]
BACK_ON_NEW = [ready(11, 8100), closed(100.02), ready(104.0, 8100)]
NEVER_BACK = [ready(12, 8100), closed(100.03)]
UNDISTURBED = [ready(13, 8101)]
DROPPED_OTHER = [ready(14, 8101), closed(101.0), ready(101.5, 8101)]
NEVER_READY: list = []
GONE_BEFORE = [ready(15, 8100), closed(50.0)]
CLIENTS = [BACK_ON_OTHER, BACK_ON_NEW, NEVER_BACK, UNDISTURBED, DROPPED_OTHER, NEVER_READY, GONE_BEFORE]


def test_ready_frame_names_the_daphne_that_serves_it():
    """Tests that a ready frame's served_by is read, and its port taken from host:port."""
    frame = parse_frame('{"type": "ready", "last_id": 9, "served_by": "172.20.0.3:8101"}')
    assert frame.served_by == "172.20.0.3:8101" and port_of(frame.served_by) == "8101"
    assert port_of("") == ""


@pytest.mark.parametrize(
    ("events", "at", "port"),
    [
        (BACK_ON_OTHER, KILL, "8100"),
        (BACK_ON_OTHER, 101, "8101"),
        (NEVER_BACK, 101, None),
        (NEVER_READY, KILL, None),
        (BACK_ON_OTHER, 5, None),
        (GONE_BEFORE, KILL, None),
    ],
)
def test_live_port_is_the_daphne_holding_the_socket_at_a_time(events, at, port):
    """Tests that a client's Daphne at a time is its last ready before it, none after a close or before any ready."""
    assert live_port(events, at) == port


def test_busiest_daphne_is_the_one_holding_most_ready_clients():
    """Tests that the Daphne to kill is the one with the most ready clients, the lower port on a tie."""
    assert busiest(CLIENTS, KILL) == ("8100", 3)
    assert busiest([[ready(1, 8101)], [ready(1, 8100)]], 2) == ("8100", 1)
    with pytest.raises(ValueError, match="no client"):
        busiest([NEVER_READY], KILL)


def test_reconnects_time_each_held_client_from_the_kill_to_its_next_ready():
    """Tests that only the killed Daphne's clients are timed, from the kill to the ready after their close."""
    result = reconnects(CLIENTS, KILL, "8100")
    assert (result["held"], result["back"], result["not_back"]) == (3, 2, 1)
    assert (result["others"], result["others_closed"]) == (2, 1)
    assert result["back_on"] == {"8100": 1, "8101": 1}
    assert result["reconnect_s"] == pytest.approx([0.6, 4.0])
    assert result["noticed_s"] == pytest.approx([0.01, 0.02, 0.03])


def test_a_held_client_that_never_saw_its_close_is_not_back():
    """Tests that a client of the killed Daphne with no close after the kill counts as held and not back."""
    result = reconnects([[ready(10, 8100)]], KILL, "8100")
    assert (result["held"], result["back"], result["not_back"], result["noticed_s"]) == (1, 0, 1, [])


def test_failures_are_counted_from_the_kill_on_by_reason():
    """Tests that failed attempts before the kill are left out and the rest counted by reason."""
    attempts = [(99.0, "HTTP 429"), (100.0, "HTTP 502"), (100.5, "HTTP 502"), (101.0, "timeout")]
    assert failures_since(attempts, KILL) == {"HTTP 502": 2, "timeout": 1}


@pytest.mark.parametrize(("text", "per_s"), [("200r/s", 200.0), ("30r/m", 0.5), ("100000r/s", 100000.0)])
def test_nginx_rates_are_read_per_second(text, per_s):
    """Tests that limit_req rates in r/s and r/m are read as requests per second."""
    assert parse_rate(text) == per_s


@pytest.mark.parametrize("text", ["200", "r/s", "2.5r/s", "200r/h"])
def test_other_rates_are_refused(text):
    """Tests that a value Nginx would not take as a rate is refused."""
    with pytest.raises(ValueError, match="not an Nginx rate"):
        parse_rate(text)


PRODUCT = handshake_stages(
    {
        "nginx_ws_rate": "50r/s",
        "nginx_ws_delay": 500,
        "nginx_ws_burst": 1000,
        "nginx_ws_site_rate": "200r/s",
        "nginx_ws_site_delay": 100,
        "nginx_ws_site_burst": 2000,
    }
)


@pytest.mark.parametrize(("handshakes", "seconds"), [(100, 0.0), (300, 1.0), (500, 2.0), (1000, 10.0), (1500, 10.0)])
def test_design_wait_matches_the_readme_table_for_one_address(handshakes, seconds):
    """Tests that the design figure is README "Handshake limits"' table for N clients behind one address."""
    assert predicted_wait_s(handshakes, PRODUCT) == seconds


def test_bench_profile_leaves_the_site_stage_as_shipped():
    """Tests that the storm's stack has the product's site stage and the per-address stage lifted: 1,000 in 4.5 s."""
    limits = stack_limits()
    assert limits["site"] == PRODUCT["site"]
    assert limits["per address"]["delay"] >= 60000
    assert predicted_wait_s(1000, limits) == 4.5


def test_backoff_is_board_js_with_jitter_and_a_cap():
    """Tests that reconnect attempt n waits 50-100 % of 0.5 s x 2^n, capped."""
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (10, BACKOFF_CAP)]:
        waits = [backoff(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), (attempt, min(waits), max(waits))


STORM = {
    "server": "stack",
    "sockets": 200,
    "how": "x",
    "limits": copy.deepcopy(PRODUCT),
    "predicted_nginx_wait_s": 1.5,
    "predicted_all_back_s": 2.0,
    "handshakes": {"ok": 200, "failed": 0, "failures": {}, "per_s": 150.0, "ms": {}, "seconds": 1.33},
    "killed": {"process": "app/daphne:8100", "pid": 7, "port": "8100", "held": 100, "others": 100},
    "restarted_s": 1.2,
    "reconnect": {
        "held": 100,
        "back": 100,
        "not_back": 0,
        "others_closed": 0,
        "back_on": {"8101": 100},
        "noticed_ms": {"n": 100, "p50": 2.0, "p99": 5.0, "max": 6.0},
        "reconnect_ms": {"n": 100, "p50": 700.0, "p99": 3900.0, "max": 4000.0},
        "all_back_s": 4.0,
        "reconnect_s": [0.5, 4.0],
        "failed_attempts": 3,
        "failures": {"HTTP 502": 3},
    },
    "posts": {"asked": 80, "ok": 80, "failed": {}, "ms": {}},
    "posting_s": 8.0,
    "expected": 16000,
    "deliveries": 16000,
    "lost": 0,
    "duplicates": 0,
    "delivery_ms": {"n": 16000, "p50": 30.0, "p99": 900.0, "max": 1000.0},
    "loadgen": {"processes": 2, "cpu_s_total": 3.0, "busiest_core_share": 0.2},
}


def test_storm_table_shows_the_way_back_next_to_the_design_figure():
    """Tests that the storm row has held, all back with the design figure and ratio, failures and losses."""
    table = report.storm_table({"storm": [STORM]})
    row = table.splitlines()[-1]
    assert row.startswith("| 200 | 100 (daphne:8100) | 100 | 4.0 (2.0, ×2) | 700 / 3,900 / 4,000 | 1.2 |")
    assert "3 (HTTP 502: 3)" in row and "| 0 / 0 |" in row
    assert report.storm_table({"storm": []}) == ""


def test_storm_with_nobody_back_has_no_all_back_figure():
    """Tests that a storm where a client never came back shows no all-back time or ratio."""
    run = copy.deepcopy(STORM)
    run["reconnect"].update(not_back=1, back=99, all_back_s=None)
    row = report.storm_table({"storm": [run]}).splitlines()[-1]
    assert "| – (2.0) |" in row


def test_reconnecting_clients_record_their_close_and_their_way_back():
    """Tests that clients of a server that restarts record a close, then a ready naming the server, and reconnect."""
    with BareServer() as bare:
        after = Poster(bare.site, "storm", 10, 0).latest_id()
        with ReceiverPool(bare.endpoint, 1, reconnect=True, open_timeout=5) as pool:
            assert pool.connect(5, after)["ok"] == 5
            killed_at = time.time()
            bare.restart()
            for _ in range(100):
                if pool.status()["live"] == 5 and pool.status()["closed"] == 5:
                    break
                time.sleep(0.1)
            timelines = pool.timelines()
    assert [[kind for kind, _, _ in events] for events in timelines["clients"]] == [["ready", "closed", "ready"]] * 5
    back = reconnects(timelines["clients"], killed_at, "bare")
    assert (back["held"], back["back"]) == (5, 5)
    assert all(0.25 <= s < 10 for s in back["reconnect_s"])
