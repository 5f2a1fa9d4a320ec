"""Tests that the bench harness's pure parts (texts, frames, statistics, sizes, report) are right."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import report  # noqa: E402
from bench.__main__ import parse_sizes  # noqa: E402
from bench.protocol import make_text, parse_frame, parse_text  # noqa: E402
from bench.stats import fanout_completion, percentile, rate, ratio, summary_ms  # noqa: E402


def test_bench_text_round_trips_run_seq_and_send_time():
    """Tests that a posted text gives back its run, sequence number and send time."""
    parsed = parse_text(make_text("abc-stack-100", 7, 1700000000.25))
    assert (parsed.run, parsed.seq, parsed.sent) == ("abc-stack-100", 7, 1700000000.25)


@pytest.mark.parametrize("text", ["hello", "bench a b c", "bench run 1", "bench run x 1.0", "", "bench r 1 2 3"])
def test_other_texts_are_not_bench_texts(text):
    """Tests that a user's message or a malformed text is not taken for a bench delivery."""
    assert parse_text(text) is None


def test_run_tag_must_be_one_word():
    """Tests that a run tag with a space is refused (it would make texts unparseable)."""
    with pytest.raises(ValueError, match="one word"):
        make_text("two words", 1)


def test_board_frames_are_read_by_type():
    """Tests that message, ready and other frames are told apart, with their ids."""
    message = parse_frame(json.dumps({"type": "message", "id": 5, "text": "t", "created": "x"}))
    assert (message.kind, message.id, message.text) == ("message", 5, "t")
    ready = parse_frame('{"type": "ready", "last_id": 9, "served_by": "x"}')
    assert (ready.kind, ready.last_id) == ("ready", 9)
    assert parse_frame('{"type": "error", "error": "no"}').kind == "error"


@pytest.mark.parametrize("raw", ["[1]", "not json", "3"])
def test_frames_that_are_not_objects_are_errors(raw):
    """Tests that a frame that is not a JSON object raises ValueError."""
    with pytest.raises(ValueError, match="not a JSON object|Expecting value"):
        parse_frame(raw)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1, 2, 3, 4], 50, 2.5), ([1, 2, 3, 4], 0, 1), ([1, 2, 3, 4], 100, 4), ([10], 99, 10), (list(range(101)), 99, 99)],
)
def test_percentile_interpolates_like_numpy(values, q, expected):
    """Tests that percentiles interpolate between closest ranks (numpy's default method)."""
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_of_nothing_is_none_and_q_is_checked():
    """Tests that no values give None and a percentile outside 0..100 is refused."""
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="not within"):
        percentile([1], 101)


def test_summary_reports_milliseconds():
    """Tests that durations in seconds are summarised in milliseconds, and an empty list as None."""
    assert summary_ms([0.001, 0.002, 0.003]) == {"n": 3, "p50": 2.0, "p99": 2.98, "max": 3.0}
    assert summary_ms([]) == {"n": 0, "p50": None, "p99": None, "max": None}


def test_ratio_and_rate_handle_missing_and_zero():
    """Tests that ratios and rates are None rather than errors when a figure is missing or zero."""
    assert ratio(30, 10) == 3.0
    assert ratio(None, 10) is None and ratio(1, 0) is None and ratio(1, None) is None
    assert rate(100, 4) == 25.0
    assert rate(100, 0) is None and rate(5, None) is None


def test_fanout_completion_covers_delivered_posts_only():
    """Tests that fan-out completion is taken per posted message that reached anyone."""
    assert fanout_completion({0: 0.5, 1: 0.7, 3: 9.0}, [0, 1, 2]) == [0.5, 0.7]


@pytest.mark.parametrize(("text", "sizes"), [("100", [100]), ("100,1_000, 2000", [100, 1000, 2000])])
def test_sizes_parse(text, sizes):
    """Tests that --sizes takes a comma list of socket counts."""
    assert parse_sizes(text) == sizes


@pytest.mark.parametrize("text", ["0", "x", "", "100,", "-5"])
def test_bad_sizes_are_refused(text):
    """Tests that --sizes refuses anything but positive integers."""
    with pytest.raises(ValueError, match="--sizes"):
        parse_sizes(text)


def _run(server, sockets, p99):
    summary = {"n": 10, "p50": p99 / 2, "p99": p99, "max": p99 * 1.5}
    return {
        "server": server,
        "sockets": sockets,
        "how": "x",
        "handshakes": {"ok": sockets, "failed": 0, "failures": {}, "per_s": 500.0, "ms": summary},
        "posts": {"asked": 5, "ok": 5, "failed": {}, "ms": summary},
        "delivery_ms": summary,
        "fanout_ms": summary,
        "expected": sockets * 5,
        "deliveries": sockets * 5,
        "lost": 0,
        "duplicates": 0,
        "closed_during_run": 0,
        "deliveries_per_s": 100.0,
        "fanout_phase_s": 1.0,
        "server_usage": {
            "cpu_s": {f"{server}/p": 2.0},
            "cpu_s_total": 2.0,
            "cpu_connect_s_total": 1.0,
            "peak_rss_kib": {f"{server}/p": 2048},
            "peak_rss_kib_total": 2048,
            "kib_per_socket": 10.0,
        },
        "loadgen": {"processes": 2, "cpu_s": {}, "cpu_s_total": 1.0, "busiest_core_share": 0.5},
    }


RESULTS = {
    "started": "2026-11-29T10:00:00+00:00",
    "machine": {
        "cpu": "CPU",
        "cores": 2,
        "memory_gib": 24,
        "kernel": "6",
        "python": "3.11",
        "websockets": "17",
        "stack": {"daphne": "4.2"},
        "docker": "20",
        "load_average_at_start": [1.0, 1.0, 1.0],
        "commit": "abc",
    },
    "settings": {"sizes": [100], "rate": 10, "posts": 5, "receivers": 2, "quick": False},
    "targets": {"stack": "s", "bare": "b"},
    "fanout": [_run("stack", 100, 400.0), _run("bare", 100, 100.0)],
    "idle": [],
}


def test_report_shows_each_stack_figure_as_a_ratio_to_bare():
    """Tests that the Markdown table has a stack row, a bare row and their ratio row."""
    table = report.fanout_table(RESULTS)
    assert "| 100 | stack |" in table and "| 100 | bare |" in table
    assert "*stack ÷ bare*" in table and "×4" in table


def test_readme_section_is_replaced_between_markers(tmp_path):
    """Tests that the README's bench section is rewritten and the text around it kept."""
    readme = tmp_path / "README.md"
    readme.write_text(f"before\n{report.BEGIN}\nold\n{report.END}\nafter\n")
    report.update_readme(readme, RESULTS, Path("bench/results"))
    text = readme.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "old" not in text
    assert "bench/results/latency.png" in text


def test_readme_without_markers_is_an_error(tmp_path):
    """Tests that a README without the bench markers is refused, not appended to."""
    readme = tmp_path / "README.md"
    readme.write_text("no section\n")
    with pytest.raises(ValueError, match="bench"):
        report.update_readme(readme, RESULTS, Path("bench/results"))
