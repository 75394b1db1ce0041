"""Two models compared, as the refresh engines must agree: the same media, counts and popularity
(1e-6 relative), and per media the same neighbours, ties at the k-th weight aside, with weights
within a tolerance. The Spark engine's tests hold it (tests/model_equality.py); the refresh
bench reports it at sizes no test reaches (bench/refresh_engines.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from database.records import ModelData

COUNTS = ("interactions_count", "users_count", "media_count", "neighbours_count", "newest_interaction")
# Problems listed at most (the rest counted).
LISTED = 20


@dataclass
class Comparison:
    compared: int = 0  # neighbour weights in both
    largest_difference: float = 0.0  # among those
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0  # beyond the LISTED ones

    def problem(self, text: str) -> None:
        if len(self.problems) < LISTED:
            self.problems.append(text)
        else:
            self.more_problems += 1

    @property
    def equal(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        found = f"{self.compared:,} neighbour weights in both, largest difference {self.largest_difference:.2e}"
        if self.equal:
            return found
        more = f" and {self.more_problems:,} more" if self.more_problems else ""
        return f"{found}; differ: {'; '.join(self.problems)}{more}"


def by_row(media, idx, weight) -> dict[int, dict[int, float]]:
    """{media index: {neighbour index: weight}} of a neighbour table."""
    rows: dict[int, dict[int, float]] = {}
    for m, j, w in zip(media.tolist(), idx.tolist(), weight.tolist()):
        rows.setdefault(m, {})[j] = w
    return rows


def model_rows(model: ModelData) -> dict[int, dict[int, float]]:
    counts = np.diff(model.neighbour_indptr)
    return by_row(np.repeat(np.arange(len(counts)), counts), model.neighbour_idx, model.neighbour_similarity)


def compare_models(expected: ModelData, got: ModelData, k: int, tolerance: float = 1e-9) -> Comparison:
    """`got` against `expected`: their media, counts and popularity, then `compare_neighbours`."""
    if not np.array_equal(got.media_ids, expected.media_ids):
        comparison = Comparison()
        comparison.problem(f"media: {len(expected.media_ids):,} against {len(got.media_ids):,}, or in another order")
        return comparison
    comparison = compare_neighbours(model_rows(expected), model_rows(got), k, tolerance)
    for count in COUNTS:
        want, have = getattr(expected.info, count), getattr(got.info, count)
        if want != have:
            comparison.problem(f"{count}: {want} against {have}")
    worst = np.max(np.abs(got.popularity - expected.popularity) / np.maximum(np.abs(expected.popularity), 1e-30),
                   initial=0.0)
    if worst > 1e-6:
        comparison.problem(f"popularity: largest relative difference {worst:.2e}")
    return comparison


def compare_neighbours(expected: dict, got: dict, k: int, tolerance: float = 1e-9) -> Comparison:
    """Per media (`by_row`) the same number of neighbours, every one above the k-th weight in
    both, the others tied at the k-th, and the weights of the neighbours in both within `tolerance`."""
    comparison = Comparison()
    if expected.keys() != got.keys():
        comparison.problem(f"media with neighbours: {len(expected):,} against {len(got):,} "
                           f"({len(expected.keys() ^ got.keys()):,} in one only)")
    for media in expected.keys() & got.keys():
        want, have = expected[media], got[media]
        if len(have) != len(want):
            comparison.problem(f"media {media}: {len(want)} neighbours against {len(have)}")
        elif len(want) < k:  # every neighbour with a weight: no tie left any out
            if have.keys() != want.keys():
                comparison.problem(f"media {media}: other neighbours")
        else:  # ties at the k-th weight may keep either
            kth = min(abs(w) for w in want.values())
            if abs(kth - min(abs(w) for w in have.values())) > tolerance:
                comparison.problem(f"media {media}: k-th weight {kth} against {min(abs(w) for w in have.values())}")
            for j in want.keys() - have.keys():
                if abs(abs(want[j]) - kth) > tolerance:
                    comparison.problem(f"media {media}: neighbour {j} ({want[j]}) missing, not tied at the k-th")
        for j in want.keys() & have.keys():
            comparison.largest_difference = max(comparison.largest_difference, abs(want[j] - have[j]))
            comparison.compared += 1
    if comparison.largest_difference > tolerance:
        comparison.problem(f"largest weight difference {comparison.largest_difference:.2e} over {tolerance:g}")
    return comparison
