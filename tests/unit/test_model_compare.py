"""services/model_compare.py: what counts as the same neighbour table (the engines' equality rule)."""

import numpy as np

from services.model_compare import by_row, compare_neighbours

TABLE = by_row(np.array([0, 0, 1]), np.array([1, 2, 0]), np.array([0.5, 0.25, 0.5]))


def table(idx, weight):
    return by_row(np.array([0, 0, 1]), np.array(idx), np.array(weight))


def test_the_same_table_is_equal():
    comparison = compare_neighbours(TABLE, TABLE, k=2)
    assert comparison.equal and comparison.compared == 3 and comparison.largest_difference == 0


def test_another_neighbour_tied_at_the_kth_weight_is_allowed():
    comparison = compare_neighbours(TABLE, table([1, 3, 0], [0.5, 0.25, 0.5]), k=2)
    assert comparison.equal and comparison.compared == 2


def test_another_neighbour_below_k_neighbours_is_a_difference():
    comparison = compare_neighbours(TABLE, table([1, 3, 0], [0.5, 0.25, 0.5]), k=3)
    assert comparison.problems == ["media 0: other neighbours"]


def test_a_missing_neighbour_above_the_kth_weight_is_a_difference():
    comparison = compare_neighbours(TABLE, table([3, 2, 0], [0.5, 0.25, 0.5]), k=2)
    assert comparison.problems == ["media 0: neighbour 1 (0.5) missing, not tied at the k-th"]


def test_a_weight_beyond_the_tolerance_is_a_difference():
    comparison = compare_neighbours(TABLE, table([1, 2, 0], [0.5, 0.25 + 1e-8, 0.5]), k=3)
    assert not comparison.equal and "largest weight difference 1.00e-08 over 1e-09" in comparison.describe()
    assert compare_neighbours(TABLE, table([1, 2, 0], [0.5, 0.25 + 1e-10, 0.5]), k=3).equal


def test_media_with_neighbours_in_one_table_only_are_a_difference():
    comparison = compare_neighbours(TABLE, {0: TABLE[0]}, k=2)
    assert comparison.problems == ["media with neighbours: 2 against 1 (1 in one only)"]
