"""Fixtures of the deploy modes tier (issue 14, `make test-modes`): one session per mode, on a compose
stack and a test host brought up together by the harness with docker/modes/<mode>-vars.yml. The mode
under test is the targets' own deploy_mode (harness.Target.mode), read from those variables."""

from __future__ import annotations

import pytest

# The browser tests' Chromium (with the local CA trusted), the e2e tier's own fixtures.
from e2e.test_browser import browser, browser_home  # noqa: F401


@pytest.fixture
def site(target):
    """The site through Nginx with a CSRF-ready session (the page loaded once)."""
    return target.site()
