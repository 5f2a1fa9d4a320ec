"""Fixtures of the scanner tier (issue 12, item 2): tools nobody here wrote, run on the stacks the other
tiers bring up (tests/conftest.py's --target and --fresh), with thresholds. `make test-scan` runs it
alone; within `make test` it shares test-stacks' session. README "Hardening, as scanners see it"."""

from __future__ import annotations

import pytest


def needs_target(config, kind: str) -> None:
    """Skips the test unless the session was given --target `kind`: a session scans the stacks it was
    asked for and never brings up another (`make test` gives both targets to one session)."""
    if kind not in config.getoption("--target"):
        pytest.skip(f"needs --target {kind} (this session does not test that stack)")


@pytest.fixture(scope="session")
def compose(request, stacks):
    """The compose stack (harness ComposeTarget), up; skipped in a session without --target compose."""
    needs_target(request.config, "compose")
    return stacks.get("compose")


@pytest.fixture
def with_compose_session(request):
    """Skips offline scans (files of the repository, no stack) in sessions without --target compose, so
    `make test`'s two sessions run them once."""
    needs_target(request.config, "compose")


@pytest.fixture(scope="session")
def vm(request, stacks):
    """The test host (harness VmTarget), up; skipped in a session without --target vm."""
    needs_target(request.config, "vm")
    return stacks.get("vm")
