"""The bench tier (`make test-bench`): tests that a `make bench --quick` run produced well-formed output.

BENCH_RESULTS names the folder the run wrote. Only the shape of the output and that the harness did
its job (sockets opened, posts answered, deliveries counted) are asserted: never a speed, a latency
or a loss figure — those are what the benchmark reports, not what a test may demand.
"""

import json
import os
from pathlib import Path

import pytest

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results_dir() -> Path:
    folder = os.environ.get("BENCH_RESULTS")
    if not folder:
        pytest.fail("BENCH_RESULTS is not set: run this through `make test-bench`")
    return Path(folder)


@pytest.fixture(scope="module")
def results(results_dir) -> dict:
    return json.loads((results_dir / "results.json").read_text())


def test_every_size_ran_on_both_servers(results):
    """Tests that each size of the quick run has a stack run and a bare run."""
    runs = {(r["sockets"], r["server"]) for r in results["fanout"]}
    assert runs == {(size, server) for size in results["settings"]["sizes"] for server in ("stack", "bare")}


def test_the_harness_opened_sockets_posted_and_counted_deliveries(results):
    """Tests that sockets were opened, posts answered and deliveries counted in every run."""
    for run in results["fanout"]:
        assert run["handshakes"]["ok"] > 0, run["handshakes"]
        assert run["posts"]["ok"] > 0, run["posts"]
        assert run["deliveries"] > 0
        assert run["deliveries"] + run["lost"] >= run["expected"]


@pytest.mark.parametrize("key", ["delivery_ms", "fanout_ms"])
def test_latency_summaries_are_ordered(results, key):
    """Tests that every latency summary has p50 <= p99 <= max, in milliseconds."""
    for run in results["fanout"]:
        summary = run[key]
        assert summary["n"] > 0
        assert 0 <= summary["p50"] <= summary["p99"] <= summary["max"], summary


def test_server_and_load_generator_processes_were_measured(results):
    """Tests that CPU and peak RSS were read for the stack's processes (Daphne among them) and the load's."""
    stack = next(r for r in results["fanout"] if r["server"] == "stack")
    names = set(stack["server_usage"]["peak_rss_kib"])
    assert any("daphne" in n for n in names) and any("nginx" in n for n in names), names
    assert all(v > 0 for v in stack["server_usage"]["peak_rss_kib"].values())
    assert stack["loadgen"]["cpu_s_total"] > 0


def test_reconnect_storm_killed_a_daphne_that_held_sockets(results):
    """Tests that the storm ran on the stack, killed a Daphne that held some of its sockets, and timed them."""
    assert [r["server"] for r in results["storm"]] == ["stack"]
    run = results["storm"][0]
    assert run["sockets"] == results["settings"]["storm_sockets"]
    assert run["handshakes"]["ok"] > 0
    killed, back = run["killed"], run["reconnect"]
    assert killed["process"].startswith("app/daphne:") and killed["process"].endswith(killed["port"])
    assert 0 < killed["held"] <= run["handshakes"]["ok"]
    assert killed["held"] + killed["others"] <= run["handshakes"]["ok"]
    assert back["held"] == killed["held"] and back["back"] + back["not_back"] == back["held"]
    assert sum(back["back_on"].values()) == back["back"] == len(back["reconnect_s"]) == back["reconnect_ms"]["n"]
    assert back["reconnect_s"] == sorted(back["reconnect_s"])
    assert back["failed_attempts"] == sum(back["failures"].values())
    assert run["predicted_all_back_s"] > run["predicted_nginx_wait_s"] >= 0
    assert set(run["limits"]) == {"per address", "site"}


def test_reconnect_storm_posted_throughout_and_counted_deliveries(results):
    """Tests that posts were answered during the storm and every delivery was accounted for."""
    run = results["storm"][0]
    assert run["posts"]["ok"] > 0 and run["posts"]["asked"] >= run["posts"]["ok"]
    assert run["deliveries"] > 0 and run["deliveries"] + run["lost"] >= run["expected"]
    delivery = run["delivery_ms"]
    assert 0 <= delivery["p50"] <= delivery["p99"] <= delivery["max"], delivery
    for key in ("reconnect_ms", "noticed_ms"):
        summary = run["reconnect"][key]
        if summary["n"]:
            assert 0 <= summary["p50"] <= summary["p99"] <= summary["max"], summary


def test_idle_capacity_was_probed_on_both(results):
    """Tests that the idle probe held sockets on both servers and priced them in KiB."""
    idle = {r["server"]: r for r in results["idle"]}
    assert set(idle) == {"stack", "bare"}
    assert all(r["held"] > 0 and r["kib_per_socket"] is not None for r in idle.values())


def test_machine_and_versions_are_recorded(results):
    """Tests that the machine and the stack's versions are in the JSON."""
    assert results["machine"]["cores"] >= 1 and results["machine"]["cpu"]
    assert {"daphne", "channels", "django"} <= set(results["machine"]["stack"])


def test_markdown_and_plots_were_written(results_dir, results):
    """Tests that results.md has a stack, bare and ratio row per size and a storm row, and both plots are PNGs."""
    table = (results_dir / "results.md").read_text()
    for size in results["settings"]["sizes"]:
        for row in ("stack", "bare", "*stack ÷ bare*"):
            assert f"| {size:,} | {row} |" in table
    assert f"| {results['settings']['storm_sockets']:,} | " in table.split("Reconnect storm", 1)[1]
    for image in ("latency.png", "storm.png"):
        assert (results_dir / image).read_bytes()[:8] == PNG_SIGNATURE
