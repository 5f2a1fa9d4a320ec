"""Turn results.json (bench.__main__) into results.md, latency.png and storm.png; put the tables in
the README.

    python -m bench.report bench/results                 # redraw results.md and the plot from the JSON
    python -m bench.report bench/results --readme README.md   # and replace the README's bench section

Every stack figure sits next to the bare server's from the same invocation and their ratio
(stack ÷ bare). The README section is the text between the lines BEGIN and END below.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.stats import ratio

BEGIN = "<!-- bench:begin (make bench writes this section) -->"
END = "<!-- bench:end -->"


def _num(value, digits: int = 0) -> str:
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _ratio(value, baseline) -> str:
    r = ratio(value, baseline)
    return "–" if r is None else f"×{r:.3g}"


def one_line(result: dict) -> str:
    """A run in one line for the log."""
    hs, d, f = result["handshakes"], result["delivery_ms"], result["fanout_ms"]
    return (
        f"{result['server']} {result['sockets']}: {hs['ok']} open ({hs['failed']} failed, {_num(hs['per_s'])}/s), "
        f"delivery p50 {_num(d['p50'])} p99 {_num(d['p99'])} max {_num(d['max'])} ms, "
        f"fan-out p99 {_num(f['p99'])} ms, missing {result['lost']}, dup {result['duplicates']}, "
        f"server CPU {result['server_usage']['cpu_s_total']} s, load-gen CPU {result['loadgen']['cpu_s_total']} s"
    )


def storm_line(result: dict) -> str:
    """A reconnect storm in one line for the log."""
    rc, k, posts = result["reconnect"], result["killed"], result["posts"]
    return (
        f"storm {result['sockets']}: killed {k['process']} holding {k['held']}, {rc['back']} back "
        f"({rc['not_back']} not), all back {_num(rc['all_back_s'], 2)} s "
        f"(design {_num(result['predicted_all_back_s'], 2)} s), "
        f"reconnect p50 {_num(rc['reconnect_ms']['p50'])} p99 {_num(rc['reconnect_ms']['p99'])} ms, "
        f"{rc['failed_attempts']} failed attempts {rc['failures']}, others dropped {rc['others_closed']}, "
        f"posts {posts['ok']}/{posts['asked']}, missing {result['lost']}, dup {result['duplicates']}"
    )


def _row_values(r: dict) -> dict:
    usage, load = r["server_usage"], r["loadgen"]
    return {
        "hs": r["handshakes"]["per_s"],
        "d50": r["delivery_ms"]["p50"],
        "d99": r["delivery_ms"]["p99"],
        "dmax": r["delivery_ms"]["max"],
        "f50": r["fanout_ms"]["p50"],
        "f99": r["fanout_ms"]["p99"],
        "dps": r["deliveries_per_s"],
        "p50": r["posts"]["ms"]["p50"],
        "p99": r["posts"]["ms"]["p99"],
        "cpu": usage["cpu_s_total"],
        "rss": usage["peak_rss_kib_total"] / 1024,
        "kps": usage["kib_per_socket"],
        "load": load["cpu_s_total"],
    }


HEADER = (
    "| sockets | server | handshakes/s (failed) | delivery p50 / p99 / max ms | fan-out p50 / p99 ms "
    "| missing / dup | deliveries/s | POST p50 / p99 ms (failed) | server CPU s | server peak RSS MiB | KiB / socket "
    "| load-gen CPU s (busiest) |\n"
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def fanout_table(results: dict) -> str:
    rows = [HEADER]
    by_size: dict[int, dict[str, dict]] = {}
    for r in results["fanout"]:
        by_size.setdefault(r["sockets"], {})[r["server"]] = r
    for size in sorted(by_size):
        runs = by_size[size]
        for name in ("stack", "bare"):
            r = runs.get(name)
            if r is None:
                continue
            v = _row_values(r)
            rows.append(
                f"| {size:,} | {name} | {_num(v['hs'])} ({r['handshakes']['failed']}) "
                f"| {_num(v['d50'])} / {_num(v['d99'])} / {_num(v['dmax'])} | {_num(v['f50'])} / {_num(v['f99'])} "
                f"| {r['lost']} / {r['duplicates']} | {_num(v['dps'])} | {_num(v['p50'], 1)} / {_num(v['p99'], 1)} "
                f"({r['posts']['asked'] - r['posts']['ok']}) "
                f"| {_num(v['cpu'], 2)} | {_num(v['rss'])} | {_num(v['kps'], 1)} "
                f"| {_num(v['load'], 1)} ({_num(r['loadgen']['busiest_core_share'], 2)}) |"
            )
        if "stack" in runs and "bare" in runs:
            s, b = _row_values(runs["stack"]), _row_values(runs["bare"])
            rows.append(
                f"| {size:,} | *stack ÷ bare* | {_ratio(s['hs'], b['hs'])} "
                f"| {_ratio(s['d50'], b['d50'])} / {_ratio(s['d99'], b['d99'])} / {_ratio(s['dmax'], b['dmax'])} "
                f"| {_ratio(s['f50'], b['f50'])} / {_ratio(s['f99'], b['f99'])} | | {_ratio(s['dps'], b['dps'])} "
                f"| {_ratio(s['p50'], b['p50'])} / {_ratio(s['p99'], b['p99'])} | {_ratio(s['cpu'], b['cpu'])} "
                f"| {_ratio(s['rss'], b['rss'])} | {_ratio(s['kps'], b['kps'])} | {_ratio(s['load'], b['load'])} |"
            )
    return "\n".join(rows)


def idle_table(results: dict) -> str:
    if not results.get("idle"):
        return ""
    by_name = {r["server"]: r for r in results["idle"]}
    rows = [
        "| server | idle sockets held | stopped by | failed handshakes | KiB per socket (all processes) |",
        "|---|---:|---|---:|---:|",
    ]
    for name in ("stack", "bare"):
        r = by_name.get(name)
        if r is None:
            continue
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(r["failures"].items())) or "none"
        stopped = f"the {r['max_sockets']:,} cap" if r["stopped"] == "cap" else "failures"
        rows.append(
            f"| {name} | {r['held']:,} | {stopped} | {r['failed']} ({reasons}) | {_num(r['kib_per_socket'], 1)} |"
        )
    if "stack" in by_name and "bare" in by_name:
        s, b = by_name["stack"], by_name["bare"]
        rows.append(
            f"| *stack ÷ bare* | {_ratio(s['held'], b['held'])} | | "
            f"| {_ratio(s['kib_per_socket'], b['kib_per_socket'])} |"
        )
    return "\n".join(rows)


STORM_HEADER = (
    "| sockets | killed Daphne held | back | all back s (design) | reconnect p50 / p99 / max ms "
    "| Daphne restarted s | failed handshakes (reasons) | others dropped | posts ok (failed) | missing / dup "
    "| delivery p50 / p99 ms | load-gen CPU s (busiest) |\n"
    "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"
)


def storm_table(results: dict) -> str:
    """The reconnect storm runs (results["storm"]) as a Markdown table; "" when there are none."""
    runs = results.get("storm") or []
    if not runs:
        return ""
    rows = [STORM_HEADER]
    for r in runs:
        rc, k, posts = r["reconnect"], r["killed"], r["posts"]
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(rc["failures"].items())) or "none"
        design, back_ms = r["predicted_all_back_s"], rc["reconnect_ms"]
        versus = _ratio(rc["all_back_s"], design)
        rows.append(
            f"| {r['sockets']:,} | {k['held']:,} ({k['process'].removeprefix('app/')}) | {rc['back']:,} "
            f"| {_num(rc['all_back_s'], 1)} ({_num(design, 1)}{'' if versus == '–' else ', ' + versus}) "
            f"| {_num(back_ms['p50'])} / {_num(back_ms['p99'])} / {_num(back_ms['max'])} "
            f"| {_num(r['restarted_s'], 1)} | {rc['failed_attempts']} ({reasons}) | {rc['others_closed']} "
            f"| {posts['ok']} ({posts['asked'] - posts['ok']}) | {r['lost']} / {r['duplicates']} "
            f"| {_num(r['delivery_ms']['p50'])} / {_num(r['delivery_ms']['p99'])} "
            f"| {_num(r['loadgen']['cpu_s_total'], 1)} ({_num(r['loadgen']['busiest_core_share'], 2)}) |"
        )
    return "\n".join(rows)


def storm_notes(results: dict) -> str:
    """What the storm table's columns mean, with the limits and the first connect of the run."""
    r = results["storm"][0]
    stages = "; ".join(
        f"{name} {_num(s['rate_per_s'])}/s, delay {s['delay']:,}, burst {s['burst']:,}"
        for name, s in r["limits"].items()
    )
    hs = r["handshakes"]
    # Runs before --storm-rate posted at the fan-out rate.
    rate = results["settings"].get("storm_rate") or results["settings"]["rate"]
    return (
        f"One Daphne killed with SIGKILL while {r['sockets']:,} sockets were open through Nginx (least_conn spreads "
        f"them over the Daphne processes), a post every {1 / rate:g} s before, during and "
        "after; the clients reconnect like board.js (`?after=<last id>`, 0.25–0.5 s after the close, backoff "
        "on failure). *all back*: kill → the last of its clients ready again (backlog included), next to the "
        "*design* figure and their ratio: the clients' first backoff (0.5 s at most) plus the wait Nginx's "
        'slowest handshake stage gives that many handshakes at once (README "Handshake limits"; the stack\'s '
        f"stages: {stages}): what is left is the servers' own time; *failed handshakes*: every failed attempt from "
        "the kill on, retries included; *others dropped*: clients of the other Daphne that lost their socket; "
        "*missing / dup*: as in the fan-out table, over every client and every post answered 201 during the "
        f"storm. The first connect of all {r['sockets']:,} took {_num(hs['seconds'], 1)} s "
        f"({_num(hs['per_s'])}/s, {hs['failed']} failed)."
    )


def process_table(results: dict) -> str:
    """Per-process CPU (fan-out phase) and peak RSS of the largest stack run."""
    stack_runs = [r for r in results["fanout"] if r["server"] == "stack"]
    if not stack_runs:
        return ""
    r = max(stack_runs, key=lambda x: x["sockets"])
    usage = r["server_usage"]
    rows = [
        f"Stack processes at {r['sockets']:,} sockets (CPU over the fan-out phase of "
        f"{r['fanout_phase_s']} s; handshake phase {usage['cpu_connect_s_total']} s in all):",
        "",
        "| process | CPU s | peak RSS MiB |",
        "|---|---:|---:|",
    ]
    for name in sorted(usage["peak_rss_kib"]):
        cpu = usage["cpu_s"].get(name)
        rows.append(f"| {name} | {_num(cpu, 2)} | {_num(usage['peak_rss_kib'][name] / 1024, 1)} |")
    return "\n".join(rows)


def machine_line(results: dict) -> str:
    m, s = results["machine"], results["settings"]
    stack = ", ".join(f"{k} {v}" for k, v in sorted(m.get("stack", {}).items()))
    return (
        f"Measured {results['started']} (commit {m.get('commit')}) on {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, Docker {m.get('docker')}; load average at start "
        f"{', '.join(str(x) for x in m['load_average_at_start'])}. Stack: {stack}. Load generator and "
        f"bare server: Python {m['python']}, websockets {m['websockets']}. One poster, {s['posts']} posts "
        f"at {s['rate']:g}/s per run; receivers in {s['receivers']} processes on the same machine"
        f"{'; --quick' if s.get('quick') else ''}."
    )


def markdown(results: dict, image: str | None = "latency.png") -> str:
    targets = results.get("targets", {})
    parts = [
        machine_line(results),
        "",
        "\n".join(f"- **{name}**: {how}" for name, how in targets.items()),
        "",
        fanout_table(results),
        "",
        "*delivery*: post sent → frame read, every socket; *fan-out*: post sent → its last socket's "
        "frame; *missing*: deliveries of posts answered 201 that an open socket had not shown "
        f"{results['settings'].get('drain_timeout_s', '?')} s after the last post (lost, or later than that); "
        "*KiB / socket*: RSS of every server process with all sockets open minus the same after the warm-up, "
        "per socket; *load-gen CPU*: receivers and poster during the fan-out (the busiest receiver's share "
        "of one core: near 1 the client set the pace).",
    ]
    idle = idle_table(results)
    if idle:
        parts += [
            "",
            "Idle capacity (each server restarted first; sockets opened in steps through the same path, held 5 s):",
            "",
            idle,
        ]
    procs = process_table(results)
    if procs:
        parts += ["", procs]
    if image:
        parts += ["", f"![fan-out latency vs sockets, stack and bare]({image})"]
    storm = storm_table(results)
    if storm:
        parts += ["", "Reconnect storm (stack only: the bare server has no second process to come back to):", "", storm]
        parts += ["", storm_notes(results)]
        if image:
            storm_png = Path(image).with_name("storm.png").as_posix()
            parts += ["", f"![reconnect storm: clients back after the kill]({storm_png})"]
    return "\n".join(parts) + "\n"


def plot(results: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"stack": ("tab:red", "stack (Nginx → Daphne → Redis)"), "bare": ("tab:blue", "bare asyncio server")}
    for axis, key, title in (
        (axes[0], "fanout_ms", "fan-out completion (post → last socket)"),
        (axes[1], "delivery_ms", "per-delivery latency"),
    ):
        for name, (color, label) in styles.items():
            runs = sorted((r for r in results["fanout"] if r["server"] == name), key=lambda r: r["sockets"])
            if not runs:
                continue
            sizes = [r["sockets"] for r in runs]
            for stat, line in (("p99", "-"), ("p50", ":")):
                values = [float("nan") if r[key][stat] is None else r[key][stat] for r in runs]
                axis.plot(sizes, values, line, color=color, marker="o", label=f"{label} {stat}")
        axis.set_xscale("log")
        axis.set_yscale("log")
        sizes = sorted({r["sockets"] for r in results["fanout"]})
        axis.set_xticks(sizes, [f"{s:,}" for s in sizes])
        axis.minorticks_off()
        axis.set_xlabel("open sockets")
        axis.set_ylabel("ms")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    m = results["machine"]
    fig.suptitle(
        f"{results['settings']['rate']:g} posts/s, {m['cores']} cores ({m['cpu']}), {results['started']}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_storm(results: dict, path: Path) -> Path:
    """Clients of the killed Daphne back vs seconds since the kill, per storm run, with the design's
    figure and the issue's 15 s marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axis = plt.subplots(figsize=(7, 4.2))
    for r in results["storm"]:
        times = [0.0, *r["reconnect"]["reconnect_s"]]
        label = f"{r['sockets']:,} sockets: {r['killed']['held']:,} held"
        axis.step(times, range(len(times)), where="post", label=label)
        axis.axvline(r["predicted_all_back_s"], linestyle=":", color="grey")
    axis.axvline(15, linestyle="--", color="tab:red", label="15 s (issue 9)")
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_xlabel("seconds since SIGKILL")
    axis.set_ylabel("clients of the killed Daphne ready again")
    axis.set_title("reconnect storm (dotted: the handshake limits' design figure)", fontsize=9)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(results: dict, out: Path) -> list[Path]:
    """results.md, latency.png and (with a storm run) storm.png in `out`; returns their paths."""
    md = out / "results.md"
    md.write_text("# make bench: latest results\n\n" + markdown(results))
    written = [md, plot(results, out / "latency.png")]
    if results.get("storm"):
        written.append(plot_storm(results, out / "storm.png"))
    return written


def replace_section(readme: Path, begin: str, end: str, body: str) -> None:
    """Replace the text between the marker lines `begin` and `end` in `readme` with `body` (markdown
    ending in a newline); the markers stay. ValueError when either marker is missing."""
    text = readme.read_text()
    if begin not in text or end not in text:
        raise ValueError(f"{readme}: no {begin} ... {end} section")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{body}{end}{tail}")


def update_readme(readme: Path, results: dict, results_dir: Path) -> None:
    """Replace the text between BEGIN and END in `readme` with the table and the plot."""
    replace_section(readme, BEGIN, END, markdown(results, (results_dir / "latency.png").as_posix()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n")[0])
    parser.add_argument("results_dir", type=Path, help="folder with results.json")
    parser.add_argument("--readme", type=Path, help="also replace this README's bench section")
    args = parser.parse_args(argv)
    results = json.loads((args.results_dir / "results.json").read_text())
    for path in write_all(results, args.results_dir):
        print(f"report: wrote {path}")
    if args.readme:
        update_readme(args.readme, results, args.results_dir)
        print(f"report: updated the bench section of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
