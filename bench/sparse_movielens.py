"""A second, differently shaped data set for `evaluate`: ml-latest-small thinned to its sparsest users.

    python -m bench.sparse_movielens --out .bench/ml-sparse
    python -m ml_service evaluate --data .bench/ml-sparse

Keeps the users with at most the median number of ratings (every rating of theirs) and the
movies file as it is: a platform of light users, where each user's history is short and the
co-interaction data thin. Settings that only fit ml-latest-small's heavy raters show here.
The MovieLens licence (README.txt) is copied with the data.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
from collections import Counter
from pathlib import Path

DEFAULT_MOVIELENS = Path("data/ml-latest-small")


def thin(source: Path, out: Path) -> tuple[int, int]:
    """Write the sparsest half of `source`'s users to `out`; returns (users, ratings) kept."""
    with open(source / "ratings.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, ratings = rows[0], rows[1:]
    counts = Counter(row[0] for row in ratings)
    median = statistics.median(counts.values())
    kept = [row for row in ratings if counts[row[0]] <= median]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "ratings.csv", "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *kept])
    for name in ("movies.csv", "README.txt"):
        shutil.copyfile(source / name, out / name)
    return len({row[0] for row in kept}), len(kept)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sparse_movielens", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_MOVIELENS, help="the MovieLens directory to thin")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    users, ratings = thin(args.data, args.out)
    print(f"wrote {args.out}: {users} users, {ratings} ratings")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
