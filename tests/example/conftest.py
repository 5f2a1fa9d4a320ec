"""Fixtures of the example tier: the stack's checks that do not depend on the board, run against
the chat example (examples/chat) deployed through its variables alone. `make test-example` runs it
with --target compose --target vm --fresh, EXTRA_VARS and VM_VARS naming examples/chat/deploy-vars.yml;
--target, --fresh and the target fixture are tests/conftest.py's."""

from __future__ import annotations

import pytest
import testinfra
from harness.programs import Supervisor
from harness.site import Site
from harness.waiting import wait_until

# Every program RUNNING and both tiers healthy through Nginx again, after a test stopped or killed some.
RECOVERY_SECONDS = 60
# Per test, setup and teardown included.
EXAMPLE_TEST_TIMEOUT = 300


def pytest_collection_modifyitems(items):
    """A hung test fails after EXAMPLE_TEST_TIMEOUT seconds instead of the global 600."""
    for item in items:
        if "tests/example/" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(EXAMPLE_TEST_TIMEOUT))


@pytest.fixture
def site(target):
    """The chat site through Nginx (GET / sets the CSRF cookie Site wants)."""
    return Site(target)


@pytest.fixture
def app_host(target):
    """testinfra host of the container or machine that runs supervisord."""
    return testinfra.get_host(target.host_spec())


@pytest.fixture
def supervisor(target, app_host):
    """supervisorctl on the target; after the test every program is RUNNING and the site healthy again."""
    supervisor = Supervisor(app_host, target.supervisorctl)
    yield supervisor
    status = supervisor.status()
    stopped = [name for name in target.programs if name not in status or status[name].state != "RUNNING"]
    if stopped:
        supervisor.start(*stopped)
    wait_until(target.all_running, RECOVERY_SECONDS, "every program RUNNING after the test")
    wait_until(target.healthy, RECOVERY_SECONDS, "site healthy through Nginx after the test")
