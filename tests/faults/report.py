"""The table the faults suite prints at the end of a run and saves for the README's "What survives
what": one row per fault and target, with the recovery time and what the users saw."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class FaultRecord:
    """One fault injected into one target, filled in by the test as it measures."""

    nodeid: str
    fault: str = ""
    target: str = ""
    # Seconds from the fault (or from its cause going away) until the stack was whole again.
    recovery: float | None = None
    # What "whole again" meant for this fault.
    recovered_when: str = ""
    posted: int | None = None  # messages answered 201
    delivered: int | None = None  # of those, shown exactly once, in order, by every client
    refused: int | None = None  # posts not answered 201 (never promised to anyone)
    outcome: str = "not run"
    # Other measurements worth a line under the table ("stop took 13.2 s").
    details: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int | None:
        if self.posted is None or self.delivered is None:
            return None
        return self.posted - self.delivered

    def took(self, delivery) -> None:
        """Copy the counts of a traffic.Delivery."""
        self.posted, self.delivered, self.refused = delivery.posted, delivery.delivered, delivery.refused


COLUMNS = ("Fault", "Target", "Result", "Recovery", "Posted (201)", "Delivered", "Lost", "Refused", "Recovered when")


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f} s"
    return str(value)


def rows(records: list[FaultRecord]) -> list[tuple[str, ...]]:
    return [
        (
            r.fault,
            r.target,
            r.outcome,
            cell(r.recovery),
            cell(r.posted),
            cell(r.delivered),
            cell(r.lost),
            cell(r.refused),
            r.recovered_when or "-",
        )
        for r in records
    ]


def markdown_table(records: list[FaultRecord]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows(records)]
    return "\n".join(lines) + "\n" + details(records, "- ")


def details(records: list[FaultRecord], bullet: str) -> str:
    lines = [f"{bullet}{r.fault} ({r.target}): {'; '.join(r.details)}" for r in records if r.details]
    return ("\n" + "\n".join(lines) + "\n") if lines else ""


def text_table(records: list[FaultRecord]) -> str:
    table = [COLUMNS, *rows(records)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines) + "\n" + details(records, "  ")


def save_records(records: list[FaultRecord], path: Path) -> None:
    """Writes one session's records to `path` (JSON list of FaultRecord fields)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(record) for record in records], indent=1))


def load_records(paths: list[Path]) -> list[FaultRecord]:
    """The records of every file `save_records` wrote, in the order given; ValueError names a file
    that is not such a list."""
    records = []
    for path in paths:
        try:
            records += [FaultRecord(**fields) for fields in json.loads(path.read_text())]
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: not a list of fault records ({error})") from error
    return records
