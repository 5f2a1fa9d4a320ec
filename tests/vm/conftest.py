"""Fixtures of the VM tier. `make test-vm` creates and provisions the test host first; by hand:
`make vm`, then `.venv/bin/python -m pytest -p no:django tests/vm` (the host is changed by the tests:
a new release is deployed, processes are killed, the host is rebooted)."""

import pytest
import testinfra

from .vmhost import VM_CONTAINER


@pytest.fixture(scope="session")
def host():
    """testinfra host of the test host container (commands run as root, like Ansible's)."""
    return testinfra.get_host(f"docker://{VM_CONTAINER}")
