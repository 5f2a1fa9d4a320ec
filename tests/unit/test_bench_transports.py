"""Tests that the transport comparison's parts that need no load are right: the counters' parsing, the
run plan, the polling clients against the bare server (loopback), and the report from a sample JSON."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import counters, transport_report  # noqa: E402
from bench.poster import Poster  # noqa: E402
from bench.receivers import Endpoint, ReceiverPool  # noqa: E402
from bench.targets import BareServer, TargetError  # noqa: E402
from bench.transport_run import difference, per_update_per_client  # noqa: E402
from bench.transports import mode_vars, parse_list, plan  # noqa: E402

NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes  packets errs drop fifo frame compressed multicast|bytes  packets errs drop fifo colls carrier compressed
  lo:  107532  1229  0  0  0  0  0  0  107532  1229  0  0  0  0  0  0
  eth1:  22611  226  0  0  0  0  0  0  36769  158  0  0  0  0  0  0
  eth0:  66838  813  0  0  0  0  0  0  97316  962  0  0  0  0  0  0
"""
# /proc/net/route of a container on two compose networks: 172.18.0.0/16 (eth0, the default route's)
# and 172.19.0.0/16 (eth1); addresses little-endian hex.
ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t010012AC\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
eth1\t000013AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""
CGROUP_V1 = """12:cpu,cpuacct:/docker/abc
11:memory:/docker/abc
0::/docker/abc
"""
ACCESS = "\n".join(
    [
        '2026-11-30T01:25:45.100000000Z 172.21.0.1 - [30/Nov/2026:01:25:45 +0000] "GET /api/messages?after=28 '
        'HTTP/1.1" 200 80 0.032 "-" "aiohttp" request_id=a upstream=172.21.0.2:8000 peer=172.21.0.1',
        '2026-11-30T01:25:45.200000000Z 172.21.0.1 - [30/Nov/2026:01:25:45 +0000] "GET /api/messages/wait?after=28'
        '&timeout=25 HTTP/1.1" 200 80 1.0 "-" "aiohttp" request_id=b upstream=172.21.0.2:8100 peer=172.21.0.1',
        '2026-11-30T01:25:45.300000000Z 172.21.0.1 - [30/Nov/2026:01:25:45 +0000] "POST /api/messages HTTP/1.1" '
        '201 90 0.05 "http://localhost/" "python-requests" request_id=c upstream=172.21.0.2:8000 peer=172.21.0.1',
        '2026-11-30T01:25:45.400000000Z 172.21.0.1 - [30/Nov/2026:01:25:45 +0000] "GET /ws/board/?after=3 HTTP/1.1" '
        '101 900 60.0 "-" "Python/3.11 websockets/17.4" request_id=d upstream=172.21.0.2:8100 peer=172.21.0.1',
        '2026-11-30T01:25:45.500000000Z 127.0.0.1 - [30/Nov/2026:01:25:45 +0000] "GET /healthz HTTP/1.0" 200 108 '
        '0.03 "-" "-" request_id=e upstream=172.21.0.2:8000 peer=127.0.0.1',
        "2026-11-30T01:25:45.600000000Z upstream-watch: app now at 172.21.0.2; reloading Nginx",
        '2026-11-30T01:25:50.000000000Z 172.21.0.1 - [30/Nov/2026:01:25:50 +0000] "GET /api/messages?after=29 '
        'HTTP/1.1" 200 80 0.032 "-" "aiohttp" request_id=f upstream=172.21.0.2:8000 peer=172.21.0.1',
    ]
)
T0 = counters.parse_docker_time("2026-11-30T01:25:45Z")


def test_net_dev_gives_received_and_sent_bytes_per_interface():
    """Tests that /proc/net/dev's text gives each interface's rx_bytes and tx_bytes."""
    assert counters.parse_net_dev(NET_DEV) == {
        "lo": (107532, 107532),
        "eth1": (22611, 36769),
        "eth0": (66838, 97316),
    }


def test_a_malformed_net_dev_line_is_an_error():
    """Tests that a line that is not an interface's counters raises CounterError naming it."""
    with pytest.raises(counters.CounterError, match="eth0: 1 2"):
        counters.parse_net_dev(NET_DEV.splitlines()[0] + "\nheader\neth0: 1 2\n")


@pytest.mark.parametrize(("address", "iface"), [("172.19.0.3", "eth1"), ("172.18.200.1", "eth0")])
def test_the_interface_towards_an_address_is_its_networks(address, iface):
    """Tests that the interface on the directly connected network holding an address is found."""
    assert counters.interface_towards(ROUTE, address) == iface


def test_no_interface_towards_an_address_elsewhere():
    """Tests that an address on no connected network is an error, not the default route's interface."""
    with pytest.raises(counters.CounterError, match="10.0.0.1"):
        counters.interface_towards(ROUTE, "10.0.0.1")


def test_cgroup_cpu_is_read_from_v1_cpuacct_or_v2_cpu_stat(tmp_path):
    """Tests that a process's cgroup CPU seconds come from cpuacct.usage (v1, ns) or cpu.stat (v2, µs)."""
    (tmp_path / "proc" / "7").mkdir(parents=True)
    (tmp_path / "proc" / "7" / "cgroup").write_text(CGROUP_V1)
    usage = tmp_path / "cg" / "cpu,cpuacct" / "docker" / "abc" / "cpuacct.usage"
    usage.parent.mkdir(parents=True)
    usage.write_text("2500000000\n")
    assert counters.cgroup_cpu_seconds(7, tmp_path / "proc", tmp_path / "cg") == 2.5
    (tmp_path / "proc" / "8").mkdir()
    (tmp_path / "proc" / "8" / "cgroup").write_text("0::/system.slice/docker-abc.scope\n")
    stat = tmp_path / "cg" / "system.slice" / "docker-abc.scope" / "cpu.stat"
    stat.parent.mkdir(parents=True)
    stat.write_text("usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n")
    assert counters.cgroup_cpu_seconds(8, tmp_path / "proc", tmp_path / "cg") == 1.5


def test_a_cgroup_file_without_cpu_accounting_is_an_error():
    """Tests that /proc/<pid>/cgroup with neither a cpuacct nor a unified line raises CounterError."""
    with pytest.raises(counters.CounterError, match="cpuacct"):
        counters.parse_cgroup_cpu_path("4:memory:/docker/abc\n")


def test_requests_are_counted_by_kind_within_the_window():
    """Tests that access log lines in the window are counted by kind and status; the health probe from
    loopback, lines outside the window and lines that are no access log are not."""
    counted = counters.count_requests(ACCESS, T0, T0 + 1)
    assert counted == {
        "total": 4,
        "by_kind": {"poll": 1, "longpoll": 1, "post": 1, "websocket": 1},
        "by_status": {"200": 2, "201": 1, "101": 1},
    }


def test_docker_timestamps_keep_their_fraction():
    """Tests that a docker logs timestamp with nanoseconds reads as epoch seconds with the fraction."""
    assert counters.parse_docker_time("2026-11-30T01:25:45.250000000Z") == pytest.approx(T0 + 0.25)
    with pytest.raises(counters.CounterError):
        counters.parse_docker_time("yesterday")


def test_the_clients_bytes_are_nginxs_minus_its_traffic_with_the_app():
    """Tests that the clients' bytes are Nginx's interface minus the app's, direction by direction."""
    before = {"time": 10.0, "cpu_s": {"app": 1.0, "nginx": 0.5}, "nginx": (1000, 2000), "app": (100, 300)}
    after = {"time": 70.0, "cpu_s": {"app": 4.0, "nginx": 1.5}, "nginx": (6000, 9000), "app": (1100, 2300)}
    # Nginx received 5,000 (2,000 of them from the app) and sent 7,000 (1,000 of them to the app).
    assert difference(before, after) == {
        "seconds": 60.0,
        "cpu_s": {"app": 3.0, "nginx": 1.0},
        "client_rx": 3000,
        "client_tx": 6000,
        "upstream": 3000,
    }
    assert per_update_per_client(9000, 60, 100) == 1.5
    assert per_update_per_client(9000, 0, 100) is None


def test_each_mode_runs_the_transports_it_offers():
    """Tests that wsgi runs short polling only, split and asgi all three, WebSocket first."""
    assert plan(["split", "wsgi"], ["websocket", "longpoll", "poll"]) == [
        ("split", "websocket"),
        ("split", "longpoll"),
        ("split", "poll"),
        ("wsgi", "poll"),
    ]
    assert plan(["wsgi"], ["websocket"]) == []


def test_unknown_modes_and_transports_are_refused():
    """Tests that a mode or transport that does not exist is an error naming it and the choices."""
    assert parse_list("wsgi, split", ("split", "asgi", "wsgi"), "--modes") == ["split", "wsgi"]
    with pytest.raises(ValueError, match="--modes: mixed is not one of split, asgi, wsgi"):
        parse_list("split,mixed", ("split", "asgi", "wsgi"), "--modes")


def test_the_mode_is_added_to_the_bench_profile_only_where_defaults_know_it(tmp_path):
    """Tests that deploy_mode joins the profile's variables when deploy/defaults.yml defines it, and that
    without it split is today's stack while another mode is a clear error."""
    profile = tmp_path / "profile.yml"
    profile.write_text("nginx_tls: false\n")
    with_mode, without = tmp_path / "with.yml", tmp_path / "without.yml"
    with_mode.write_text("deploy_mode: split\nnginx_tls: true\n")
    without.write_text("nginx_tls: true\n")
    assert mode_vars(profile, "asgi", with_mode) == {"nginx_tls": False, "deploy_mode": "asgi"}
    assert mode_vars(profile, "split", without) == {"nginx_tls": False}
    with pytest.raises(TargetError, match="no deploy_mode"):
        mode_vars(profile, "wsgi", without)


@pytest.fixture(scope="module")
def bare():
    with BareServer() as server:
        yield server


@pytest.mark.parametrize("transport", ["poll", "longpoll"])
def test_polling_clients_show_every_update_once(bare, transport):
    """Tests that 10 polling clients in 2 processes each show all 4 posts once, counting their requests."""
    http_port = bare.ports[1]
    endpoint = Endpoint("127.0.0.1", http_port, f"127.0.0.1:{http_port}", f"http://127.0.0.1:{http_port}")
    poster = Poster(bare.site, f"p-{transport}", rate=10, count=4)
    after = poster.latest_id()
    with ReceiverPool(endpoint, 2, transport=transport, poll_period=0.2, wait_timeout=5) as pool:
        opened = pool.connect(10, after)
        assert (opened["ok"], opened["failed"]) == (10, 0)
        pool.arm(f"p-{transport}")
        posted = poster.run()
        result = pool.expect(f"p-{transport}", posted["posted"], timeout=10)
    assert (result["deliveries"], result["lost"], result["duplicates"]) == (40, 0, 0)
    assert result["requests"] >= 10 and result["request_failures"] == {}


def test_refused_polls_are_counted_by_reason():
    """Tests that polls to a port nobody listens on are failures named 'refused' and no client is ready."""
    from bench.targets import free_port

    port = free_port()
    endpoint = Endpoint("127.0.0.1", port, f"127.0.0.1:{port}", "http://x")
    with ReceiverPool(endpoint, 1, transport="poll", open_timeout=2) as pool:
        opened = pool.connect(3, 0)
    assert opened["ok"] == 0 and opened["failures"] == {"refused": 3}


SAMPLE = {
    "started": "2026-11-30T02:00:00+00:00",
    "machine": {
        "cpu": "CPU",
        "cores": 2,
        "memory_gib": 8,
        "kernel": "6",
        "docker": "20",
        "load_average_at_start": [1.0, 2.0, 3.0],
        "commit": "abc",
    },
    "settings": {
        "clients": 1000,
        "seconds": 60.0,
        "rate": 1.0,
        "poll_period_s": 2.0,
        "wait_timeout_s": 25.0,
        "receivers": 2,
        "quick": False,
    },
    "baseline": ["split", "websocket"],
    "stacks": {"split": "compose project tbench-split"},
    "load_average_at_end": [2.0, 2.0, 2.0],
    "skipped": [{"mode": "asgi", "transport": "longpoll", "reason": "HTTP 404"}],
    "runs": [],
}


def _run(mode, transport, requests_per_s, per_update, cpu, p50, p99):
    return {
        "mode": mode,
        "transport": transport,
        "clients": 1000,
        "open": 1000,
        "failed": 0,
        "updates": {"asked": 60, "ok": 60, "failed": {}},
        "requests": {"per_s": requests_per_s},
        "request_failures": {},
        "bytes": {"per_update_per_client": per_update, "upstream_per_update_per_client": per_update / 2},
        "cpu_s_total": cpu,
        "latency_ms": {"p50": p50, "p99": p99},
        "lost": 0,
        "expected": 60000,
        "duplicates": 0,
        "loadgen": {"cpu_s_total": 3.0, "busiest_core_share": 0.2},
    }


@pytest.fixture
def sample() -> dict:
    return {
        **SAMPLE,
        "runs": [
            _run("split", "websocket", 1.0, 250.0, 20.0, 40.0, 200.0),
            _run("split", "poll", 501.0, 750.0, 80.0, 1000.0, 2100.0),
            _run("wsgi", "poll", 500.0, 740.0, 60.0, 1100.0, 2200.0),
        ],
    }


def test_the_table_gives_each_figure_with_its_ratio_to_websocket_in_split(sample):
    """Tests that each row shows its figures with the ratio to split WebSocket, and skipped runs say why."""
    table = transport_report.table(sample)
    websocket = "| split | WebSocket | 1,000 (0) | 60 (0) | 1.0 (×1) | 250 (×1) (125) | 20.0 (×1) | 40 (×1) / 200 (×1)"
    polling = "| split | short polling every 2 s | 1,000 (0) | 60 (0) | 501.0 (×501) | 750 (×3) (375) | 80.0 (×4) |"
    assert websocket in table and polling in table
    assert "| asgi | long polling | not run: HTTP 404 |" in table


def test_the_summary_is_written_from_the_figures(sample):
    """Tests that the paragraph quotes the runs' figures and ratios, mode by mode, and the skipped run."""
    text = transport_report.summary(sample)
    assert "WebSocket delivered each update with 40 ms p50 latency for 250 bytes" in text
    assert "Short polling every 2 s cost 501 requests/s (a request per client per period" in text
    assert "750 bytes per update per client (×3) and ×4 the CPU, at 1,000 ms p50 / 2,100 ms p99 latency" in text
    assert "In wsgi: short polling every 2 s ×3 of the baseline's CPU (×0.75 of the same transport in split)" in text
    assert "Long polling in asgi was not measured: HTTP 404." in text
    assert "did not carry the load" not in text


def test_the_summary_names_failed_requests_and_missing_deliveries(sample):
    """Tests that a run with failed requests and missing deliveries is said not to have carried the load."""
    sample["runs"][1] |= {"request_failures": {"HTTP 500": 7, "timeout": 2}, "lost": 5, "expected": 60000}
    sample["runs"][1]["updates"] = {"asked": 60, "ok": 58, "failed": {"HTTP 500": 2}}
    assert (
        "Short polling every 2 s in split did not carry the load: 2 of 60 updates were not posted (the poster's "
        "POST failed), so its per-update figures divide by the rest; 9 requests failed (7 HTTP 500, 2 timeout); "
        "5 of 60,000 deliveries missing at the deadline." in transport_report.summary(sample)
    )


def test_the_report_files_and_readme_section_are_written(sample, tmp_path):
    """Tests that transports.md and a PNG are written, and the README's section replaced between its markers."""
    written = transport_report.write_all(sample, tmp_path)
    assert [p.name for p in written] == ["transports.md", "transports.png"]
    assert (tmp_path / "transports.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{transport_report.BEGIN}\nold\n{transport_report.END}\nrest\n")
    transport_report.update_readme(readme, json.loads(json.dumps(sample)), Path("bench/results"))
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith(f"{transport_report.END}\nrest\n")
    assert "![requests/s, bytes, CPU and latency per transport and deploy mode](bench/results/transports.png)" in text
    readme.write_text("no markers\n")
    with pytest.raises(ValueError, match="no <!-- transports:begin"):
        transport_report.update_readme(readme, sample, tmp_path)
