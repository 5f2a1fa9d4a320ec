"""Tests the test host's hardening as lynis (CISOfy's auditing tool, Debian's package) scores it: the
hardening index of a full `lynis audit system` on the provisioned host, held to a floor, with the
report and the suggestions saved under artifacts/ for the README's before/after table (README
"Hardening, as scanners see it": which suggestions were taken, which not, and why)."""

from __future__ import annotations

import re

# Issue 12 aims at 75. The floor is what the provisioned test host reaches (61 with the hardening role,
# 54 before it; one point below for the odd test lynis scores differently from run to run): below it, a
# change made the host weaker. README "Hardening, as scanners see it" says why not 75 on a container.
HARDENING_INDEX_FLOOR = 60
LYNIS_SECONDS = 480
REPORT = "/var/log/lynis-report.dat"


def report_values(report: str, key: str) -> list[str]:
    """Every value of `key` in a lynis-report.dat (`key=value` lines; lists as `key[]=value`)."""
    return [line.partition("=")[2] for line in report.splitlines() if line.partition("=")[0] in (key, f"{key}[]")]


def test_lynis_hardening_index_of_the_test_host_is_at_least_the_floor(vm, artifacts_dir):
    """Tests that lynis rates the provisioned test host at HARDENING_INDEX_FLOOR or more, and saves
    its report."""
    host = vm.app_host()
    if not host.package("lynis").is_installed:
        install = host.run("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lynis")
        if install.rc != 0:
            install = host.run("apt-get update -qq && apt-get install -y -qq --no-install-recommends lynis")
        assert install.rc == 0, install.stderr

    audit = host.run(f"timeout {LYNIS_SECONDS} lynis audit system --quick --no-colors")
    assert audit.rc == 0, audit.stdout[-2000:] + audit.stderr[-2000:]
    report = host.file(REPORT).content_string
    (artifacts_dir / "lynis-report.dat").write_text(report)
    (artifacts_dir / "lynis-output.txt").write_text(audit.stdout)
    (index,) = report_values(report, "hardening_index")
    suggestions = report_values(report, "suggestion")
    warnings = report_values(report, "warning")
    summary = [f"lynis hardening index {index}", f"warnings ({len(warnings)}):", *warnings]
    summary += [f"suggestions ({len(suggestions)}):", *suggestions]
    (artifacts_dir / "lynis-summary.txt").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))

    assert re.fullmatch(r"\d+", index), index
    assert int(index) >= HARDENING_INDEX_FLOOR, f"lynis hardening index {index} < {HARDENING_INDEX_FLOOR}"
