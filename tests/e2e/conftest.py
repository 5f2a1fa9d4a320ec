"""Fixtures of the end-to-end suite. Run it with `pytest -p no:django tests/e2e --target compose`
(or `--target vm`, or both; add --fresh to bring the stacks up and remove them after, as
`make test-compose` does). --target and the target fixture are tests/conftest.py's."""

from __future__ import annotations

import pytest

from .stack import AppLog, NginxLog

# Every program RUNNING and both tiers healthy through Nginx again, after a test stopped or killed some.
RECOVERY_SECONDS = 40
# Per test, setup and teardown included; the slowest (a restart of the whole stack) takes about 40 s.
E2E_TEST_TIMEOUT = 240


def pytest_collection_modifyitems(items):
    """A hung end-to-end test fails after E2E_TEST_TIMEOUT seconds instead of the global 600."""
    for item in items:
        if "tests/e2e/" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(E2E_TEST_TIMEOUT))


@pytest.fixture
def site(target):
    """The site through Nginx with a CSRF-ready session."""
    return target.site()


@pytest.fixture
def app_host(target):
    """testinfra host of the container or machine that runs supervisord."""
    return target.app_host()


@pytest.fixture
def app_log(target):
    """The app's log on the target, from the start of the test on (AppLog.lines())."""
    log = AppLog(target)
    log.mark()
    return log


@pytest.fixture
def nginx_log(target):
    """Nginx's access log on the target, from the start of the test on (NginxLog.lines())."""
    log = NginxLog(target)
    log.mark()
    return log


@pytest.fixture
def supervisor(target):
    """supervisorctl on the target; after the test every program is RUNNING and the site healthy again."""
    yield target.supervisor()
    target.restore_programs(RECOVERY_SECONDS)
