"""Fixtures of the scanner tier (issue 12, item 2): tools nobody here wrote, run on the stacks the other
tiers bring up (tests/conftest.py's --target and --fresh), with thresholds. `make test-scan` runs it
alone; within `make test` it shares test-stacks' session. README "Hardening, as scanners see it"."""

from __future__ import annotations

import pytest

# A scan of the test host (lynis) takes a few minutes on a loaded machine; the rest take seconds.
SCAN_TEST_TIMEOUT = 600


def pytest_collection_modifyitems(items):
    """A hung scanner fails after SCAN_TEST_TIMEOUT seconds instead of the global timeout."""
    for item in items:
        if "tests/scan/" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(SCAN_TEST_TIMEOUT))


@pytest.fixture(scope="session")
def compose(stacks):
    """The compose stack (harness ComposeTarget), up: brought up by this session when --target
    compose was not given."""
    return stacks.get("compose")


@pytest.fixture(scope="session")
def vm(stacks):
    """The test host (harness VmTarget), up: brought up by this session when --target vm was not given."""
    return stacks.get("vm")
