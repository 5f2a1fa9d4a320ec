"""Fixtures of the end-to-end suite. Run it with `pytest -p no:django tests/e2e --target compose`
(or `--target vm`, or both; add --fresh to bring the stacks up and remove them after, as
`make test-compose` does). --target and the target fixture are tests/conftest.py's."""

from __future__ import annotations

import pytest

from .stack import AppLog, NginxLog

# Every program RUNNING and both tiers healthy through Nginx again, after a test stopped or killed some.
RECOVERY_SECONDS = 40


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
