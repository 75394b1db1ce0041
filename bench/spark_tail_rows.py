"""How many rows each formulation of the refresh's tail cosine step would emit into a Spark
shuffle (issue 26), on the synthetic data of `generate-synthetic` at a given size, in memory.

    python -m bench.spark_tail_rows 25000000

The tail is every engaged media outside the EASE head (the 10,000 most liked). Every pair is
counted as positive (an upper bound). Rows: one per (user, tail media, other media) as the
Spark engine emits them today; the distinct (tail, other) pairs; and the block products of
1, 2, 8 and 32 user partitions (each partition's distinct pairs, summed).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import scipy.sparse as sp

from services.synthetic import generate

EASE_HEAD = 10_000
BLOCK = 2_000  # tail media per sparse product


def main(interactions: int) -> None:
    started = time.perf_counter()
    data = generate(int(interactions * 162_000 / 25e6), int(interactions * 59_000 / 25e6), interactions, seed=0)
    users, media = int(data.pair_user.max()) + 1, len(data.media_ids)
    matrix = sp.csr_matrix((np.ones(len(data.pair_user)), (data.pair_user, data.pair_media)), shape=(users, media))
    matrix.data[:] = 1
    likes = np.asarray(matrix.sum(axis=0)).ravel()
    head = np.argsort(-likes, kind="stable")[:EASE_HEAD]
    tail = np.setdiff1d(np.flatnonzero(likes > 0), head)
    print(f"{interactions:,} pairs, {users:,} users, {media:,} media, tail {len(tail):,} media "
          f"(generated in {time.perf_counter() - started:.0f} s)")
    per_user = np.diff(matrix.indptr).astype(np.int64)
    tail_per_user = np.diff(matrix[:, tail].tocsr().indptr).astype(np.int64)
    print(f"per (user, tail media, other media): {int((tail_per_user * per_user).sum()):,} rows")
    for parts in (1, 2, 8, 32):
        started = time.perf_counter()
        bounds = np.linspace(0, users, parts + 1).astype(int)
        rows = 0
        for p in range(parts):
            part = matrix[bounds[p]:bounds[p + 1]]
            by_tail = part[:, tail].T.tocsr()
            rows += sum((by_tail[s:s + BLOCK] @ part).nnz for s in range(0, len(tail), BLOCK))
        print(f"{parts:>3} user partition(s): {rows:,} distinct (tail, other) rows "
              f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 25_000_000)
