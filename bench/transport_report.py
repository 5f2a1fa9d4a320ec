"""Turn transports.json (bench.transports) into transports.md and transports.png; put the table, the
plot and a paragraph of what they say in the README.

    python -m bench.transport_report bench/results                  # redraw from the JSON
    python -m bench.transport_report bench/results --readme README.md  # and the README's section

Every figure sits next to its ratio to the baseline run of the same invocation (WebSocket in split,
results["baseline"]). The README section is the text between BEGIN and END below.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench import report
from bench.report import _num
from bench.stats import ratio

BEGIN = "<!-- transports:begin (make bench-transports writes this section) -->"
END = "<!-- transports:end -->"
NAMES = {"websocket": "WebSocket", "longpoll": "long polling", "poll": "short polling"}
# The four figures of a run: (key in figures(), label, unit).
FIGURES = (
    ("requests_per_s", "requests/s at Nginx", "1/s"),
    ("bytes_per_update", "bytes per update per client (clients ↔ Nginx)", "B"),
    ("cpu_s", "server CPU s (every container)", "s"),
    ("p50", "update latency p50 / p99", "ms"),
)


def transport_name(transport: str, period: float | None = None) -> str:
    name = NAMES.get(transport, transport)
    return f"{name} every {period:g} s" if transport == "poll" and period else name


def figures(run: dict) -> dict:
    """The four figures of a run (plus p99): {"requests_per_s", "bytes_per_update", "cpu_s", "p50",
    "p99"}; None where the run could not measure one."""
    return {
        "requests_per_s": run["requests"]["per_s"],
        "bytes_per_update": run["bytes"]["per_update_per_client"],
        "cpu_s": run["cpu_s_total"],
        "p50": run["latency_ms"]["p50"],
        "p99": run["latency_ms"]["p99"],
    }


def baseline_run(results: dict) -> dict | None:
    """The run that every ratio divides by (results["baseline"]: mode, transport), or None."""
    mode, transport = results.get("baseline", ("split", "websocket"))
    return next((r for r in results["runs"] if r["mode"] == mode and r["transport"] == transport), None)


def ratios(run: dict, base: dict | None) -> dict:
    """figures(run) ÷ figures(base), key by key (None where either is missing or the base is 0)."""
    if base is None:
        return dict.fromkeys(figures(run))
    mine, theirs = figures(run), figures(base)
    return {key: ratio(mine[key], theirs[key]) for key in mine}


def _with_ratio(value, factor, digits: int = 0) -> str:
    text = _num(value, digits)
    return text if factor is None else f"{text} (×{factor:.3g})"


def one_line(run: dict) -> str:
    """A run in one line for the log."""
    f, lat = figures(run), run["latency_ms"]
    return (
        f"{run['mode']}/{run['transport']}: {run['open']} open ({run['failed']} failed), "
        f"{_num(f['requests_per_s'], 1)} requests/s, {_num(f['bytes_per_update'])} B per update per client, "
        f"CPU {_num(f['cpu_s'], 2)} s, latency p50 {_num(lat['p50'])} p99 {_num(lat['p99'])} ms, "
        f"missing {run['lost']}, dup {run['duplicates']}, failed requests {run['request_failures'] or 0}"
    )


HEADER = (
    "| mode | transport | clients open (failed) | updates posted (failed) | requests/s "
    "| bytes / update / client (Nginx ↔ app) | server CPU s | latency p50 / p99 ms | missing / dup "
    "| failed requests | load-gen CPU s (busiest) |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def table(results: dict) -> str:
    """Every run, each figure with its ratio to the baseline run in brackets; skipped runs last."""
    base = baseline_run(results)
    period = results["settings"].get("poll_period_s")
    rows = [HEADER]
    for run in results["runs"]:
        f, x, b = figures(run), ratios(run, base), run["bytes"]
        failed = sum(run["request_failures"].values())
        rows.append(
            f"| {run['mode']} | {transport_name(run['transport'], period)} | {run['open']:,} ({run['failed']}) "
            f"| {run['updates']['ok']} ({run['updates']['asked'] - run['updates']['ok']}) "
            f"| {_with_ratio(f['requests_per_s'], x['requests_per_s'], 1)} "
            f"| {_with_ratio(f['bytes_per_update'], x['bytes_per_update'])} "
            f"({_num(b['upstream_per_update_per_client'])}) "
            f"| {_with_ratio(f['cpu_s'], x['cpu_s'], 1)} "
            f"| {_with_ratio(f['p50'], x['p50'])} / {_with_ratio(f['p99'], x['p99'])} "
            f"| {run['lost']} / {run['duplicates']} | {failed} "
            f"| {_num(run['loadgen']['cpu_s_total'], 1)} ({_num(run['loadgen']['busiest_core_share'], 2)}) |"
        )
    for skipped in results.get("skipped", []):
        rows.append(
            f"| {skipped['mode']} | {transport_name(skipped['transport'], period)} "
            f"| not run: {skipped['reason']} | | | | | | | | |"
        )
    return "\n".join(rows)


def machine_line(results: dict) -> str:
    m, s = results["machine"], results["settings"]
    end = results.get("load_average_at_end")
    return (
        f"Measured {results['started']} (commit {m.get('commit')}) on {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, Docker {m.get('docker')}; load average at start "
        f"{', '.join(str(x) for x in m['load_average_at_start'])}"
        f"{'' if not end else ', at the end ' + ', '.join(str(x) for x in end)}. "
        f"{s['clients']:,} clients per run, one update every {1 / s['rate']:g} s for {s['seconds']:g} s, "
        f"short polls every {s['poll_period_s']:g} s, long polls held up to {s['wait_timeout_s']:g} s; "
        f"clients in {s['receivers']} processes on the same machine{'; --quick' if s.get('quick') else ''}."
    )


NOTES = (
    "*requests/s*: requests Nginx finished during the run's window (updates posted and awaited; its access "
    "log), the posts (one per update) included; a WebSocket is one request written at its close, after the "
    "window, so WebSocket rows count only the posts. *bytes / update / client*: the Nginx container's "
    "network counters (its interface, both directions: Ethernet frames with their TCP/IP headers, ACKs and "
    "WebSocket pings) minus its traffic with the app (the app container's interface on that network), over "
    "the window, divided by updates × clients; in brackets the Nginx ↔ app traffic the same way. *server "
    "CPU*: the stack containers' cgroups (Nginx, the app's programs, Redis) over the window. *latency*: post "
    "sent (its time is in the text) → the client has the update, every delivery. In brackets: ×, the ratio "
    "to WebSocket in split from the same invocation (compare runs through those ratios: absolute figures on "
    "this shared 2-core machine move between invocations)."
)


def _ran(results: dict) -> list[str]:
    stacks = results.get("stacks", {})
    return [m for m in results["settings"].get("modes", []) if m in stacks] or sorted(stacks)


def _find(results: dict, mode: str, transport: str) -> dict | None:
    return next((r for r in results["runs"] if r["mode"] == mode and r["transport"] == transport), None)


def failure_clause(run: dict) -> str:
    """What went wrong in a run, for the summary ("" when nothing did): clients that never connected,
    failed requests by reason, deliveries missing at the deadline, duplicates."""
    parts = []
    updates = run["updates"]
    if updates["ok"] < updates["asked"]:
        parts.append(
            f"{updates['asked'] - updates['ok']:,} of {updates['asked']:,} updates were not posted (the poster's "
            "POST failed), so its per-update figures divide by the rest"
        )
    if run["failed"]:
        parts.append(f"{run['failed']:,} of {run['clients']:,} clients never connected")
    failures = run.get("request_failures") or {}
    if failures:
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in sorted(failures.items(), key=lambda kv: -kv[1]))
        parts.append(f"{sum(failures.values()):,} requests failed ({reasons})")
    if run["lost"]:
        parts.append(f"{run['lost']:,} of {run['expected']:,} deliveries missing at the deadline")
    if run["duplicates"]:
        parts.append(f"{run['duplicates']:,} shown twice")
    return "; ".join(parts)


def summary(results: dict) -> str:
    """One paragraph of what the figures say, written from them (so it stays true when they change)."""
    base = baseline_run(results)
    if base is None:
        return "No WebSocket run in split: no baseline, no comparison."
    period = results["settings"].get("poll_period_s", 2)
    fb = figures(base)
    sentences = [
        f"In split, WebSocket delivered each update with {_num(fb['p50'])} ms p50 latency for "
        f"{_num(fb['bytes_per_update'])} bytes per client and {_num(fb['cpu_s'], 1)} CPU s in all, with no "
        "request per update."
    ]
    for transport in ("longpoll", "poll"):
        run = _find(results, "split", transport)
        if run is None:
            continue
        f, x = figures(run), ratios(run, base)
        # Why, in a clause: what each polling transport pays by design (its requests), not a measurement.
        why = (
            "a request and an answer per update per client"
            if transport == "longpoll"
            else "a request per client per period, updates or not; its latency is the period's: half of it on "
            "average, up to all of it"
        )
        sentences.append(
            f"{transport_name(transport, period).capitalize()} cost {_num(f['requests_per_s'])} requests/s "
            f"({why}), {_num(f['bytes_per_update'])} bytes per update per client (×{x['bytes_per_update'] or 0:.3g}) "
            f"and ×{x['cpu_s'] or 0:.3g} the CPU, at {_num(f['p50'])} ms p50 / {_num(f['p99'])} ms p99 latency."
        )
    for mode in ("asgi", "wsgi"):
        runs = [r for r in results["runs"] if r["mode"] == mode]
        if not runs:
            continue
        parts = []
        for run in runs:
            same = _find(results, "split", run["transport"])
            versus = ratio(run["cpu_s_total"], same["cpu_s_total"]) if same else None
            to_base = ratios(run, base)["cpu_s"] or 0
            parts.append(
                f"{transport_name(run['transport'], period)} ×{to_base:.3g} of the baseline's CPU"
                + ("" if versus is None else f" (×{versus:.3g} of the same transport in split)")
                + f", {_num(run['latency_ms']['p50'])} ms p50"
            )
        sentences.append(f"In {mode}: " + "; ".join(parts) + ".")
    for run in results["runs"]:
        trouble = failure_clause(run)
        if trouble:
            name = transport_name(run["transport"], period).capitalize()
            sentences.append(f"{name} in {run['mode']} did not carry the load: {trouble}.")
    for skipped in results.get("skipped", []):
        sentences.append(
            f"{transport_name(skipped['transport'], period).capitalize()} in {skipped['mode']} was not measured: "
            f"{skipped['reason']}."
        )
    return " ".join(sentences)


def markdown(results: dict, image: str | None = "transports.png") -> str:
    parts = [
        machine_line(results),
        "",
        # In the order the modes ran (the JSON's keys are sorted).
        "\n".join(f"- **{mode}**: {results['stacks'][mode]}" for mode in _ran(results)),
        "",
        table(results),
        "",
        NOTES,
        "",
        summary(results),
    ]
    if image:
        parts += ["", f"![requests/s, bytes, CPU and latency per transport and deploy mode]({image})"]
    return "\n".join(parts) + "\n"


COLORS = {"websocket": "tab:blue", "longpoll": "tab:orange", "poll": "tab:green"}
SHORT = {"websocket": "WebSocket", "longpoll": "long poll", "poll": "short poll"}


def plot(results: dict, path: Path) -> Path:
    """Four bar charts (FIGURES), one bar per run (mode, transport); latency shows p50 and p99."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    labels = [f"{r['mode']}\n{SHORT.get(r['transport'], r['transport'])}" for r in runs]
    colors = [COLORS.get(r["transport"], "tab:grey") for r in runs]
    # Hatched: a run that did not carry the load (failure_clause), whose figures are not the transport's.
    hatches = ["//" if failure_clause(r) else "" for r in runs]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for axis, (key, title, unit) in zip(axes.flat, FIGURES, strict=True):
        positions = range(len(runs))
        values = [figures(r)[key] or 0 for r in runs]
        if key == "p50":
            p99 = [figures(r)["p99"] or 0 for r in runs]
            axis.bar(positions, p99, color=colors, alpha=0.35, label="p99", hatch=hatches)
            axis.bar(positions, values, color=colors, label="p50", hatch=hatches)
            axis.set_yscale("log")
            axis.legend(fontsize=8)
        else:
            axis.bar(positions, values, color=colors, hatch=hatches)
            if key == "requests_per_s":
                axis.set_yscale("log")  # from the posts alone (WebSocket) to a poll per client per period
        axis.set_xticks(list(positions), labels, fontsize=7)
        axis.set_title(title, fontsize=9)
        axis.set_ylabel(unit)
        axis.grid(True, axis="y", alpha=0.3)
    m, s = results["machine"], results["settings"]
    fig.suptitle(
        f"{s['clients']:,} clients, 1 update / {1 / s['rate']:g} s for {s['seconds']:g} s; {m['cores']} cores "
        f"({m['cpu']}), load {m['load_average_at_start'][0]} at start, {results['started']}\n"
        "hatched: the run did not carry the load (failed requests or posts, missing updates)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(results: dict, out: Path) -> list[Path]:
    """transports.md and transports.png in `out`; returns their paths."""
    md = out / "transports.md"
    md.write_text("# make bench-transports: latest results\n\n" + markdown(results))
    return [md, plot(results, out / "transports.png")]


def update_readme(readme: Path, results: dict, results_dir: Path) -> None:
    """Replace the text between BEGIN and END in `readme` with the section. ValueError without them."""
    report.replace_section(readme, BEGIN, END, markdown(results, (results_dir / "transports.png").as_posix()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport_report", description=__doc__.split("\n")[0])
    parser.add_argument("results_dir", type=Path, help="folder with transports.json")
    parser.add_argument("--readme", type=Path, help="also replace this README's transports section")
    args = parser.parse_args(argv)
    results = json.loads((args.results_dir / "transports.json").read_text())
    for path in write_all(results, args.results_dir):
        print(f"transport report: wrote {path}")
    if args.readme:
        update_readme(args.readme, results, args.results_dir)
        print(f"transport report: updated the transports section of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
