"""Ranking metrics against small examples computed by hand."""

import math

import pytest

from services.evaluation.metrics import (
    average_precision_at_k,
    genre_distance,
    intra_list_diversity,
    mean_intra_list_diversity,
    ndcg_at_k,
    paired_difference,
    precision_at_k,
    recall_at_k,
    summarise,
)

# Relevant items 1, 2 and 3; the list hits at ranks 1 and 3 (items 1 and 3).
RECOMMENDED = [1, 9, 3, 8]
RELEVANT = frozenset({1, 2, 3})


def test_precision_divides_hits_by_k_even_for_a_short_list():
    assert precision_at_k(RECOMMENDED, RELEVANT, 4) == pytest.approx(2 / 4)
    assert precision_at_k([1], RELEVANT, 4) == pytest.approx(1 / 4)


def test_recall_divides_hits_by_all_relevant_items():
    assert recall_at_k(RECOMMENDED, RELEVANT, 4) == pytest.approx(2 / 3)
    assert recall_at_k(RECOMMENDED, RELEVANT, 2) == pytest.approx(1 / 3)


def test_ndcg_uses_log2_discount_and_the_ideal_ordering():
    dcg = 1 / math.log2(2) + 1 / math.log2(4)  # hits at ranks 1 and 3
    ideal = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)  # three relevant in the first three
    assert ndcg_at_k(RECOMMENDED, RELEVANT, 4) == pytest.approx(dcg / ideal)
    assert ndcg_at_k([1, 2, 3], RELEVANT, 3) == pytest.approx(1.0)
    assert ndcg_at_k([7, 8], RELEVANT, 2) == 0.0


def test_ndcg_ideal_is_capped_at_k():
    # Only 1 slot: a hit at rank 1 is perfect, although 3 items are relevant.
    assert ndcg_at_k([2], RELEVANT, 1) == pytest.approx(1.0)


def test_average_precision_averages_precision_at_each_hit_over_min_relevant_k():
    # precision@1 = 1, precision@3 = 2/3; min(|relevant| = 3, k = 4) = 3
    assert average_precision_at_k(RECOMMENDED, RELEVANT, 4) == pytest.approx((1 + 2 / 3) / 3)
    # k = 2: one hit at rank 1, min(3, 2) = 2
    assert average_precision_at_k(RECOMMENDED, RELEVANT, 2) == pytest.approx(1 / 2)


def test_summary_means_over_users_and_counts_coverage():
    recommendations = {10: [1, 9], 11: [5]}  # user 12 got nothing
    relevant = {10: frozenset({1}), 11: frozenset({6}), 12: frozenset({1})}
    summary = summarise(recommendations, relevant, [10, 11, 12], 2)
    assert summary["users"] == 3
    assert summary["precision"] == pytest.approx((1 / 2) / 3)
    assert summary["recall"] == pytest.approx(1 / 3)
    assert summary["ndcg"] == pytest.approx(1 / 3)
    assert summary["map"] == pytest.approx(1 / 3)
    assert summary["catalog_coverage"] == 3  # items 1, 9, 5
    assert summary["user_coverage"] == pytest.approx(1 / 3)  # only user 10 got 2 items


def test_summary_of_an_empty_slice_has_no_means():
    summary = summarise({}, {}, [], 10)
    assert summary["users"] == 0
    assert summary["ndcg"] is None and summary["user_coverage"] is None
    assert summary["catalog_coverage"] == 0


# Movies 1 and 3 share their genres, 2 shares one of three with them, 4 and 5 have none.
GENRES = {1: frozenset({"A", "B"}), 2: frozenset({"B", "C"}), 3: frozenset({"A", "B"}), 4: frozenset(), 5: frozenset()}


def test_genre_distance_is_one_minus_jaccard():
    assert genre_distance(GENRES[1], GENRES[2]) == pytest.approx(1 - 1 / 3)  # {B} of {A, B, C}
    assert genre_distance(GENRES[1], GENRES[3]) == 0.0
    assert genre_distance(frozenset({"A"}), frozenset({"C"})) == 1.0
    # Without genres: Jaccard 0, as the re-ranker (scoring.diversify) counts it.
    assert genre_distance(GENRES[1], GENRES[4]) == 1.0
    assert genre_distance(GENRES[4], GENRES[5]) == 1.0


def test_intra_list_diversity_averages_the_distance_over_the_pairs_of_the_first_k():
    # pairs (1, 2) = 2/3, (1, 3) = 0, (2, 3) = 2/3
    assert intra_list_diversity([1, 2, 3], GENRES, 3) == pytest.approx(4 / 9)
    assert intra_list_diversity([1, 2, 3], GENRES, 2) == pytest.approx(2 / 3)  # only (1, 2)
    assert intra_list_diversity([1, 3, 4], GENRES, 3) == pytest.approx(2 / 3)  # 0, 1, 1
    assert intra_list_diversity([1], GENRES, 3) is None
    assert intra_list_diversity([], GENRES, 3) is None


def test_mean_intra_list_diversity_leaves_out_users_without_a_pair():
    recommendations = {10: [1, 2, 3, 4], 11: [1, 3], 12: [2]}  # 13 got nothing
    # k = 3: user 10 -> 4/9, user 11 -> 0; users 12 and 13 have no pair
    assert mean_intra_list_diversity(recommendations, GENRES, [10, 11, 12, 13], 3) == pytest.approx(2 / 9)
    assert mean_intra_list_diversity(recommendations, GENRES, [12, 13], 3) is None
    assert mean_intra_list_diversity({}, GENRES, [], 3) is None


def test_paired_difference_is_the_mean_per_user_gap_with_its_interval():
    relevant = {1: frozenset({1}), 2: frozenset({2}), 3: frozenset({3})}
    a = {1: [1], 2: [2], 3: [9]}  # finds users 1 and 2's item
    b = {1: [9], 2: [2], 3: [9]}  # finds user 2's only
    d = paired_difference(a, b, relevant, [1, 2, 3], 1, recall_at_k)
    # Differences 1, 0, 0: mean 1/3, standard error sqrt(1/3 / 3).
    assert d["mean"] == pytest.approx(1 / 3)
    assert d["high"] - d["mean"] == pytest.approx(1.96 * math.sqrt(1 / 9)) == d["mean"] - d["low"]
    assert d["low"] < 0 < d["high"]  # three users cannot tell these apart
    assert paired_difference(a, b, relevant, [1], 1, recall_at_k) is None
