"""The targets of one test session: brought up afresh together (concurrently: the VM's playbook runs
while compose builds and starts) and removed at the end with their logs saved, or the running ones
used as they are (a developer's `make up` / `make vm`)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import deploy
from .kinds import make_target
from .target import Target

ARTIFACTS = deploy.repo_path(os.environ.get("ARTIFACTS_DIR", "artifacts"))


class Stacks:
    """Targets by kind for a session. fresh: start() brings every requested kind up, close() saves
    their logs under artifacts and removes them; else start() attaches to the running stacks."""

    def __init__(self, kinds: list[str], fresh: bool, artifacts: Path = ARTIFACTS, log=print):
        self.kinds = list(dict.fromkeys(kinds))
        self.fresh = fresh
        self.artifacts = artifacts
        self.log = log
        # Targets that are up, by kind; every target made afresh (up or not), for close().
        self.targets: dict[str, Target] = {}
        self.made: list[Target] = []
        self.failures: dict[str, BaseException] = {}

    def start(self, kinds: list[str] | None = None) -> None:
        """Brings up (fresh) or attaches to (running) every kind in self.kinds plus `kinds` not yet
        started, concurrently; a failure is kept and raised by get(). tests/conftest.py calls it once
        the tests are collected, before the first one runs: a bring-up is not part of any test (nor
        of its timeout)."""
        for kind in kinds or []:
            if kind not in self.kinds:
                self.kinds.append(kind)
        missing = [k for k in self.kinds if k not in self.targets and k not in self.failures]
        if not missing:
            return
        if not self.fresh:
            for kind in missing:
                try:
                    target = make_target(kind)
                    target.attach()
                except RuntimeError as exc:
                    self.failures[kind] = exc
                else:
                    self.targets[kind] = target
            return
        self.log(f"harness: bringing up {', '.join(missing)} afresh (concurrently)")
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            futures = {kind: pool.submit(self._up, kind) for kind in missing}
            for kind, future in futures.items():
                error = future.exception()
                if error is None:
                    self.targets[kind] = future.result()
                else:
                    self.failures[kind] = error
                    self.log(f"harness: {kind} did not come up: {error}")

    def get(self, kind: str) -> Target:
        """The target of kind `kind`, up; RuntimeError with the cause when it did not come up."""
        self.start([kind])
        if kind in self.failures:
            raise RuntimeError(f"target {kind} did not come up: {self.failures[kind]}") from self.failures[kind]
        return self.targets[kind]

    def _up(self, kind: str) -> Target:
        target = make_target(kind)
        self.made.append(target)
        started = time.monotonic()
        try:
            target.up()
        finally:
            timings = {**target.timings(), "bring-up in all": time.monotonic() - started}
            self.artifacts.mkdir(parents=True, exist_ok=True)
            # A fresh file per bring-up; the tests may append more (tests/vm: the playbook's later runs).
            with (self.artifacts / f"{kind}-timings.txt").open("w") as file:
                for step, seconds in timings.items():
                    line = f"{kind}: {step} took {seconds:.0f} s"
                    file.write(line + "\n")
                    self.log(f"harness: {line}")
        return target

    def timing_lines(self) -> list[str]:
        """Every line of the fresh targets' timing files, for the end of the session."""
        lines = []
        for target in self.made:
            path = self.artifacts / f"{target.kind}-timings.txt"
            if path.exists():
                lines += path.read_text().splitlines()
        return lines

    def close(self) -> None:
        """fresh: saves each target's logs under artifacts and removes it (errors reported, not raised)."""
        if not self.fresh:
            return
        for target in self.made:
            kind = target.kind
            for step in (lambda t=target: t.save_logs(self.artifacts), target.down):
                try:
                    saved = step()
                except Exception as exc:  # noqa: BLE001 (the other targets are removed all the same)
                    self.log(f"harness: {kind}: {exc}")
                else:
                    if saved:
                        self.log(f"harness: {kind}: logs saved to {', '.join(map(str, saved))}")
            self.log(f"harness: {kind}: removed")
