"""One model of a deployed stack for every test tier (issue 10, item 2).

A Target (target.py) is one deployed stack: its bring-up and removal, its logs, what runs on it
(programs from the deploy variables, PIDs, config values, testinfra hosts) and the faults the faults
suite does to it. One subclass per kind: ComposeTarget (compose.py), VmTarget (vm.py); a third kind
(the cluster of issue 11) is one more subclass and one entry in KINDS (kinds.py). The pytest
fixtures that bring them up live in tests/conftest.py; `python -m harness` does the same by hand
(`make vm`, `make vm-destroy`).
"""
