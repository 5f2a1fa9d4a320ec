"""Fixtures of the VM tier: the test host as a harness VmTarget (tests/harness/vm.py). `make test-vm`
brings a fresh one up (--fresh); by hand: `make vm`, then `PYTHONPATH=tests .venv/bin/python -m pytest
-p no:django tests/vm` (the host is changed by the tests: a new release is deployed, supervisord is
killed). The deploy variables the tests are parametrized by are harness.deploy.vm_vars() (VM_VARS)."""

import pytest


@pytest.fixture(scope="session")
def vm(stacks):
    """The test host (harness VmTarget), up."""
    return stacks.get("vm")


@pytest.fixture(scope="session")
def host(vm):
    """testinfra host of the test host container (commands run as root, like Ansible's)."""
    return vm.app_host()
