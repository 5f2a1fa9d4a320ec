"""Fixtures of the example tier: the stack's checks that do not depend on the board, run against
the chat example (examples/chat) deployed through its variables alone. `make test-example` runs it
with --target compose --target vm --fresh, EXTRA_VARS and VM_VARS naming examples/chat/deploy-vars.yml;
--target, --fresh and the target fixture are tests/conftest.py's."""

from __future__ import annotations

import pytest

# Every program RUNNING and both tiers healthy through Nginx again, after a test stopped or killed some.
RECOVERY_SECONDS = 60


@pytest.fixture
def site(target):
    """The chat site through Nginx (GET / sets the CSRF cookie Site wants)."""
    return target.site()


@pytest.fixture
def app_host(target):
    """testinfra host of the container or machine that runs supervisord."""
    return target.app_host()


@pytest.fixture
def supervisor(target):
    """supervisorctl on the target; after the test every program is RUNNING and the site healthy again."""
    yield target.supervisor()
    target.restore_programs(RECOVERY_SECONDS)
