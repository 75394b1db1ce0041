"""Run the fault matrix and print its table (docs/failures.md's), e.g.:

    .venv/bin/python -m tests.faults
    .venv/bin/python -m tests.faults --database user_db --fault "frozen 10 s"
    .venv/bin/python -m tests.faults --fault "stopped 15 s" --hold 300   # a 5-minute outage

Needs root (network namespaces); takes about three minutes for the whole matrix.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

from tests.faults.hosts import network_namespaces_work
from tests.faults.scenario import DATABASES, FAULTS, TABLE_HEADER, run_matrix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults", description=__doc__.split("\n")[0])
    parser.add_argument("--database", action="append", choices=DATABASES, help="only these (repeatable)")
    parser.add_argument("--fault", action="append", choices=list(FAULTS), help="only these (repeatable)")
    parser.add_argument("--hold", type=float, help="seconds each fault lasts, instead of the one its name says")
    args = parser.parse_args(argv)
    reason = network_namespaces_work()
    if reason:
        print(f"cannot run the fault matrix here: {reason}", file=sys.stderr)
        return 2
    faults = [FAULTS[name] for name in (args.fault or FAULTS)]
    if args.hold is not None:
        faults = [dataclasses.replace(f, name=f"{f.name}, held {args.hold:g} s", seconds=args.hold) for f in faults]
    with tempfile.TemporaryDirectory(prefix="ml-faults-") as root:
        Path(root).chmod(0o755)
        rows = run_matrix(
            Path(root),
            tuple(args.database or DATABASES),
            tuple(faults),
        )
    print(TABLE_HEADER)
    for row in rows:
        print(row.markdown())
    problems = [f"{row.database} {row.fault}: {problem}" for row in rows for problem in row.problems]
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
