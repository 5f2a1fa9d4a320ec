"""`python -m harness KIND up|down` (with tests/ on PYTHONPATH): brings a target up or removes it by
hand, with the same code as the test fixtures (`make vm`, `make vm-destroy`). Names and ports come
from the environment (harness.kinds)."""

from __future__ import annotations

import argparse
import sys

from .deploy import REPO
from .kinds import KINDS, make_target
from .tls import CA_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness", description=__doc__)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)
    target = make_target(args.kind)
    if args.action == "down":
        target.down()
        print(f"{args.kind}: removed")
        return 0
    try:
        target.provision()
    except RuntimeError as exc:
        print(f"{args.kind}: {exc}", file=sys.stderr)
        return 1
    for step, seconds in target.timings().items():
        print(f"{args.kind}: {step} took {seconds:.0f} s")
    trust = f" (trust {CA_FILE.relative_to(REPO)}; plain HTTP at {target.http_url}/)" if target.tls else ""
    print(f"{args.kind}: up at {target.public_url}/{trust}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
