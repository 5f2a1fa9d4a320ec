"""The faults table's records: each pytest session saves its rows and the table shows every session's
(make test runs the compose and VM sessions at the same time)."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from faults.report import FaultRecord, load_records, markdown_table, save_records  # noqa: E402


def test_rows_saved_by_two_sessions_make_one_table_with_both_targets(tmp_path):
    """Tests that the records two sessions save come back whole, and the table has a row from each."""
    compose = FaultRecord(nodeid="a[compose]", fault="4 Redis down", target="compose", recovery=3.5, outcome="passed")
    compose.posted, compose.delivered, compose.refused = 40, 40, 2
    vm = FaultRecord(nodeid="a[vm]", fault="4 Redis down", target="vm", outcome="failed", details=["took 9 s"])
    save_records([compose], tmp_path / "t.compose.json")
    save_records([vm], tmp_path / "t.vm.json")

    records = load_records(sorted(tmp_path.glob("t.*.json")))

    assert records == [compose, vm]
    table = markdown_table(records)
    assert "| 4 Redis down | compose | passed | 3.5 s | 40 | 40 | 0 | 2 |" in table
    assert "| 4 Redis down | vm | failed |" in table
    assert "4 Redis down (vm): took 9 s" in table


def test_a_file_that_is_not_records_is_named_in_the_error(tmp_path):
    """Tests that a stray or damaged records file stops the table with its path, not a bare traceback."""
    bad = tmp_path / "t.vm.json"
    bad.write_text('[{"colour": "red"}]')
    with pytest.raises(ValueError, match="t.vm.json: not a list of fault records"):
        load_records([bad])
