"""Fixtures of the cluster tier (`make test-cluster`): the cluster as a harness ClusterTarget
(tests/harness/cluster.py), brought up by tests/conftest.py's --fresh like every target. The table of
faults (fault, recovery, posted, delivered, lost) is the faults suite's own: its fixtures and hooks
are reused here, and FAULTS_TABLE says where the table goes (artifacts/cluster/cluster-table.md).
"""

import pytest

# The faults suite's report: one row per test (fault_record), printed and saved at the end.
from faults.conftest import (  # noqa: F401 (pytest finds fixtures and hooks by name in this module)
    fault_record,
    pytest_configure,
    pytest_runtest_makereport,
    pytest_terminal_summary,
)


@pytest.fixture
def cluster(target):
    """The cluster (harness ClusterTarget); every host running and the site whole again after the test."""
    if target.kind != "cluster":
        pytest.skip("the cluster tier runs on --target cluster")
    yield target
    target.restore()
