"""Fixtures shared by the tiers that test a deployed stack (tests/e2e, tests/vm, tests/faults); the unit
tier (tests/unit) has its own pytest.ini and never loads this file.

`--target compose` / `--target vm` (repeatable) says which stacks; `--fresh` brings them up for the
session (concurrently) and removes them at the end with their logs saved under ARTIFACTS_DIR (default
artifacts/), also on failure or Ctrl-C; without it the running ones are used (`make up`, `make vm`).
The make targets of tests/tiers.mk pass --fresh.
"""

from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import pytest
from harness.deploy import app_ports, daphne_ports, deploy_vars, programs
from harness.kinds import KINDS
from harness.session import ARTIFACTS, Stacks

STACKS = pytest.StashKey[Stacks]()
# The tier whose tests need the test host whatever --target says.
VM_TIER = Path(__file__).parent / "vm"

# Arguments a test may take to run once per program or per app server port of each target; their
# values come from the target's deploy variables, so a stack with three Daphne processes gets three.
PER_TARGET = {
    "deployed_program": programs,
    "app_port": app_ports,
    "daphne_port": daphne_ports,
}

# Per test, setup and teardown included, by tier: a hung test fails after this many seconds instead of
# pyproject's global 600 (a test that sets its own timeout marker keeps it).
TIER_TEST_TIMEOUTS = {
    # The slowest end-to-end test (a restart of the whole stack) takes about 40 s.
    "tests/e2e/": 240,
    "tests/example/": 300,
    # A job of a few steps, a poll loop of a few seconds.
    "tests/modes/": 180,
    # A scan of the test host (lynis) takes a few minutes on a loaded machine; the rest take seconds.
    "tests/scan/": 600,
}


def pytest_addoption(parser):
    parser.addoption(
        "--target",
        action="append",
        default=[],
        choices=sorted(KINDS),
        help="stack to test: compose (docker-compose.yml) or vm (the systemd test host); repeat for several",
    )
    parser.addoption(
        "--fresh",
        action="store_true",
        help="bring the stacks up afresh for this session and remove them at the end (logs saved)",
    )


def _terminate(signum, frame):
    # pytest tears the session fixtures down (the stacks removed) on KeyboardInterrupt, not on SIGTERM.
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    def log(message: str) -> None:
        # Bring-up and removal take minutes: said as they happen, not captured with a test's output.
        capture = config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(message, flush=True)

    config.stash[STACKS] = Stacks(config.getoption("--target"), config.getoption("--fresh"), log=log)
    if config.getoption("--fresh"):
        signal.signal(signal.SIGTERM, _terminate)


def pytest_collection_modifyitems(items):
    """Each test of a tier in TIER_TEST_TIMEOUTS gets that tier's timeout, unless it has its own."""
    for item in items:
        tier = next((folder for folder in TIER_TEST_TIMEOUTS if item.nodeid.startswith(folder)), None)
        if tier is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIER_TEST_TIMEOUTS[tier]))


def pytest_generate_tests(metafunc):
    if "target" in metafunc.fixturenames:
        names = metafunc.config.getoption("--target")
        if not names:
            raise pytest.UsageError(f"{metafunc.definition.nodeid} needs --target compose and/or --target vm")
        per_target = [argname for argname in PER_TARGET if argname in metafunc.fixturenames]
        if not per_target:
            metafunc.parametrize("target", names, indirect=True, scope="session")
            return
        argname = per_target[0]
        params = [
            pytest.param(name, value, id=f"{name}-{value}")
            for name in names
            for value in PER_TARGET[argname](deploy_vars(name))
        ]
        metafunc.parametrize(("target", argname), params, indirect=["target"], scope="session")


def pytest_collection_finish(session):
    """Brings the stacks up (or checks the running ones) before the first test, outside every test's
    timeout: the --target kinds, and the VM when a collected test of the VM tier (tests/vm) needs it.
    Elsewhere a `vm` fixture is there only with --target vm (tests/scan skips without it): `make
    test`'s compose session must not bring up the test host its VM session provisions."""
    if session.config.option.collectonly or not session.items:
        return
    needs_vm = any(
        VM_TIER in Path(item.path).parents and "vm" in getattr(item, "fixturenames", ()) for item in session.items
    )
    session.config.stash[STACKS].start(["vm"] if needs_vm else [])


def pytest_sessionfinish(session):
    # Also after a failure, Ctrl-C or SIGTERM: fresh stacks saved (logs) and removed.
    session.config.stash[STACKS].close()


@pytest.fixture(scope="session")
def stacks(request):
    """The session's stacks (harness.session.Stacks), up before the first test."""
    return request.config.stash[STACKS]


@pytest.fixture(scope="session")
def target(request, stacks):
    """The stack under test (a harness Target), one per --target."""
    return stacks.get(request.param)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash[STACKS].timing_lines()
    if lines:
        terminalreporter.section("stacks: wall times")
        for line in lines:
            terminalreporter.write_line(line)
