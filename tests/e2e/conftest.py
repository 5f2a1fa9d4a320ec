"""Fixtures of the end-to-end suite. Run it with `pytest -p no:django tests/e2e --target compose`
(or `--target vm`, or both); `make test-compose` brings a stack up for it and removes it after."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import testinfra

from .stack import AppLog, NginxLog, Site, Supervisor, wait_until
from .targets import REPO, daphne_ports, deploy_vars, gunicorn_port, make_target, programs

ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR", REPO / "artifacts"))
# Every program RUNNING and both tiers healthy through Nginx again, after a test stopped or killed some.
RECOVERY_SECONDS = 40
# Per test, setup and teardown included; the slowest (a restart of the whole stack) takes about 40 s.
E2E_TEST_TIMEOUT = 240


def pytest_addoption(parser):
    parser.addoption(
        "--target",
        action="append",
        default=[],
        metavar="NAME",
        help="stack to test: compose (docker-compose.yml) or vm; repeat for several",
    )


def pytest_collection_modifyitems(items):
    """A hung end-to-end test fails after E2E_TEST_TIMEOUT seconds instead of the global 600."""
    for item in items:
        if "tests/e2e/" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(E2E_TEST_TIMEOUT))


# Arguments a test may take to run once per program or per app server port of each target; their
# values come from the target's deploy variables, so a stack with three Daphne processes gets three.
PER_TARGET = {
    "deployed_program": programs,
    "app_port": lambda variables: (gunicorn_port(variables), *daphne_ports(variables)),
    "daphne_port": daphne_ports,
}


def pytest_generate_tests(metafunc):
    if "target" in metafunc.fixturenames:
        names = metafunc.config.getoption("--target")
        if not names:
            raise pytest.UsageError("tests/e2e needs --target compose and/or --target vm")
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


@pytest.fixture(scope="session")
def target(request):
    """The stack under test (a tests/e2e/targets.py Target), made once per --target."""
    return make_target(request.param)


@pytest.fixture
def site(target):
    """The site through Nginx with a CSRF-ready session."""
    return Site(target)


@pytest.fixture
def app_host(target):
    """testinfra host of the container or machine that runs supervisord."""
    return testinfra.get_host(target.host_spec())


@pytest.fixture
def app_log(target, app_host):
    """The app's log on the target, from the start of the test on (AppLog.lines())."""
    log = AppLog(target, app_host)
    log.mark()
    return log


@pytest.fixture
def nginx_log(target):
    """Nginx's access log on the target, from the start of the test on (NginxLog.lines())."""
    log = NginxLog(target)
    log.mark()
    return log


@pytest.fixture
def supervisor(target, app_host):
    """supervisorctl on the target; after the test every program is RUNNING and the site healthy again."""
    supervisor = Supervisor(target, app_host)
    yield supervisor
    status = supervisor.status()
    stopped = [name for name in target.programs if name not in status or status[name].state != "RUNNING"]
    if stopped:
        supervisor.start(*stopped)
    wait_until(supervisor.all_running, RECOVERY_SECONDS, "every program RUNNING after the test")
    wait_until(Site(target).healthy, RECOVERY_SECONDS, "site healthy through Nginx after the test")


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
