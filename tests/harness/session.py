"""The targets of one test session: brought up afresh together (concurrently: the VM's playbook runs
while compose builds and starts) and removed at the end with their logs saved, or the running ones
used as they are (a developer's `make up` / `make vm`)."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import deploy
from .kinds import make_target
from .target import Target

ARTIFACTS = deploy.repo_path(os.environ.get("ARTIFACTS_DIR", "artifacts"))


class Stacks:
    """Targets by kind for a session. fresh: up() every requested kind at the first get(), close()
    saves their logs under artifacts and removes them; else get() attaches to running stacks."""

    def __init__(self, kinds: list[str], fresh: bool, artifacts: Path = ARTIFACTS, log=print):
        self.kinds = list(dict.fromkeys(kinds))
        self.fresh = fresh
        self.artifacts = artifacts
        self.log = log
        self.targets: dict[str, Target] = {}
        self.failures: dict[str, BaseException] = {}
        self.lock = threading.Lock()

    def get(self, kind: str) -> Target:
        """The target of kind `kind`, up; the error of its bring-up when that failed."""
        with self.lock:
            if kind not in self.kinds:
                self.kinds.append(kind)
            missing = [k for k in self.kinds if k not in self.targets and k not in self.failures]
            if missing:
                self._start(missing)
        if kind in self.failures:
            raise RuntimeError(f"target {kind} did not come up: {self.failures[kind]}") from self.failures[kind]
        return self.targets[kind]

    def _start(self, kinds: list[str]) -> None:
        if not self.fresh:
            for kind in kinds:
                target = make_target(kind)
                target.attach()
                self.targets[kind] = target
            return
        self.log(f"harness: bringing up {', '.join(kinds)} afresh (concurrently)")
        with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
            futures = {kind: pool.submit(self._up, kind) for kind in kinds}
        for kind, future in futures.items():
            error = future.exception()
            if error is not None:
                self.failures[kind] = error

    def _up(self, kind: str) -> None:
        target = make_target(kind)
        # Registered first, so close() removes a half-made stack too.
        self.targets[kind] = target
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

    def timing_lines(self) -> list[str]:
        """Every line of the fresh targets' timing files, for the end of the session."""
        lines = []
        for kind in self.targets:
            path = self.artifacts / f"{kind}-timings.txt"
            if self.fresh and path.exists():
                lines += path.read_text().splitlines()
        return lines

    def close(self) -> None:
        """fresh: saves each target's logs under artifacts and removes it (errors reported, not raised)."""
        if not self.fresh:
            return
        for kind, target in self.targets.items():
            for step in (lambda t=target: t.save_logs(self.artifacts), target.down):
                try:
                    saved = step()
                except Exception as exc:  # noqa: BLE001 (the other targets are removed all the same)
                    self.log(f"harness: {kind}: {exc}")
                else:
                    if saved:
                        self.log(f"harness: {kind}: logs saved to {', '.join(map(str, saved))}")
            self.log(f"harness: {kind}: removed")
