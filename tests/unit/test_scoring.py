"""Scoring: genre match, co-interaction, the blend, exclusions and the popular fill."""

from datetime import datetime

import numpy as np
import pytest

from database.records import Interaction
from services.scoring import Weights, centred_weights, rank_for_user, user_signals
from tests.unit.model_factory import make_model, media_uuid

T = datetime(2024, 1, 1)


def watch(i: int, value: float | None = 4.0) -> Interaction:
    return Interaction(media_uuid(i), "WATCH", value, T)


def dislike(i: int) -> Interaction:
    return Interaction(media_uuid(i), "DISLIKE", 1.0, T)


def rank(model, genres=(), history=(), count=10, weights=Weights(), history_weighting="centred"):
    return rank_for_user(model, user_signals(model, genres, history, history_weighting), weights, count)


def test_content_score_is_matching_genres_over_all_user_genres():
    model = make_model([["Drama", "Comedy"], ["Drama"], ["Horror"]], [1, 1, 1])
    # "Western" is a preferred genre no media has: it still counts in the denominator.
    ranking = rank(model, genres={"Drama", "Comedy", "Western"})
    content = dict(zip(ranking.media_idx.tolist(), ranking.content.tolist()))
    assert content == pytest.approx({0: 2 / 3, 1: 1 / 3, 2: 0.0})


def test_collaborative_score_sums_weighted_similarities_scaled_to_one():
    model = make_model(
        [[], [], [], []],
        [0, 0, 0, 0],
        neighbours={0: [(2, 0.5), (3, 0.1)], 1: [(2, 0.2), (3, 0.6)]},
    )
    ranking = rank(model, history=[watch(0, 2.0), watch(1, 1.0)], history_weighting="raw")
    collab = dict(zip(ranking.media_idx.tolist(), ranking.collaborative.tolist()))
    # media 2: 2*0.5 + 1*0.2 = 1.2 (the top, scaled to 1); media 3: 2*0.1 + 1*0.6 = 0.8
    assert collab == pytest.approx({2: 1.0, 3: 0.8 / 1.2})


def test_centred_weights_measure_each_value_against_the_users_own_mean_and_spread():
    # mean 3, standard deviation sqrt(0.5); z shrunk by n / (n + 10) = 4 / 14
    z = np.array([1.0, 0.0, 0.0, -1.0]) / np.sqrt(0.5) * 4 / 14
    assert centred_weights(np.array([4.0, 3.0, 3.0, 2.0])).tolist() == pytest.approx(np.maximum(z + 0.5, 0) + 0.05)
    # 10 values, mean 3, standard deviation 1: z = ±1, shrunk by 10 / 20
    assert centred_weights(np.array([4.0, 2.0] * 5)).tolist() == pytest.approx([1.05, 0.05] * 5)
    # the scale of the values does not matter, only their place in the user's own range
    assert centred_weights(np.array([40.0, 20.0] * 5)).tolist() == pytest.approx([1.05, 0.05] * 5)
    # a long history is trusted more: the same spread moves the weights further
    long = centred_weights(np.array([4.0, 2.0] * 50))
    assert long[0] > 1.05 and long[1] == pytest.approx(0.05)
    # all equal: every media weighs the same
    assert centred_weights(np.array([5.0, 5.0])).tolist() == pytest.approx([0.55, 0.55])
    assert len(centred_weights(np.zeros(0))) == 0


def test_centred_weighting_lets_what_the_user_liked_most_lead():
    # the user rated media 0 above their average and media 1 below it
    model = make_model([[], [], [], []], [0, 0, 0, 0], neighbours={0: [(2, 0.5)], 1: [(3, 0.9)]})
    history = [watch(0, 5.0), watch(1, 3.0)]
    assert rank(model, history=history, history_weighting="raw").media_idx[0] == 3  # 3*0.9 > 5*0.5
    centred = rank(model, history=history)
    assert centred.media_idx[0] == 2  # z = ±1 shrunk by 2 / 12: weights 0.7167 vs 0.3833
    high, low = 0.5 + 1 / 6 + 0.05, 0.5 - 1 / 6 + 0.05
    assert centred.collaborative.tolist() == pytest.approx([1.0, low * 0.9 / (high * 0.5)])


def test_hybrid_blends_content_and_collaborative_with_the_weights():
    model = make_model([["Drama"], ["Drama"], []], [0, 0, 0], neighbours={0: [(2, 1.0)]})
    ranking = rank(model, genres={"Drama"}, history=[watch(0)], weights=Weights(content=0.4, collaborative=0.6))
    scores = dict(zip(ranking.media_idx.tolist(), ranking.score.tolist()))
    assert scores == pytest.approx({1: 0.4, 2: 0.6})
    assert ranking.media_idx.tolist() == [2, 1]


def test_never_recommends_interacted_or_disliked_media():
    model = make_model([["Drama"]] * 5, [5, 4, 3, 2, 1], neighbours={0: [(1, 0.9), (2, 0.8)]})
    ranking = rank(model, genres={"Drama"}, history=[watch(0), dislike(1), Interaction(media_uuid(3), "LIKE", 5.0, T)])
    assert sorted(ranking.media_idx.tolist()) == [2, 4]


def test_disliked_media_carries_no_positive_weight():
    model = make_model([[], [], []], [0, 0, 0], neighbours={0: [(2, 1.0)]})
    ranking = rank(model, history=[watch(0), dislike(0)])
    assert ranking.collaborative.tolist() == [0.0, 0.0]
    assert not ranking.is_hybrid.any()


def test_user_without_history_or_genres_gets_popular_media_in_popularity_order():
    model = make_model([["Drama"], ["Comedy"], ["Horror"], []], [2, 9, 5, 0])
    ranking = rank(model, count=4)
    assert ranking.media_idx.tolist() == [1, 2, 0, 3]
    assert not ranking.is_hybrid.any()
    assert ranking.score.tolist() == [0, 0, 0, 0]


def test_popular_media_fill_the_places_hybrid_cannot():
    model = make_model([["Drama"], [], [], []], [0, 3, 1, 2])
    ranking = rank(model, genres={"Drama"}, count=3)
    assert ranking.media_idx.tolist() == [0, 1, 3]
    assert ranking.is_hybrid.tolist() == [True, False, False]


def test_equal_hybrid_scores_are_ordered_by_popularity():
    model = make_model([["Drama"], ["Drama"], ["Drama"]], [1, 3, 2])
    ranking = rank(model, genres={"Drama"}, count=3)
    assert ranking.media_idx.tolist() == [1, 2, 0]


def test_interactions_with_media_unknown_to_the_model_are_ignored():
    model = make_model([[], []], [1, 2], neighbours={0: [(1, 1.0)]})
    ranking = rank(model, history=[watch(0), Interaction(media_uuid(99), "WATCH", 5.0, None)])
    assert ranking.media_idx.tolist() == [1]


def test_missing_interaction_value_counts_as_one():
    model = make_model([[], [], []], [0, 0, 0], neighbours={0: [(2, 0.5)], 1: [(2, 0.5)]})
    with_value = user_signals(model, (), [watch(0, None), watch(1, 3.0)], history_weighting="raw")
    assert sorted(with_value.positive_weight.tolist()) == [1.0, 3.0]


def test_count_is_capped_by_the_media_the_user_has_not_seen():
    model = make_model([[], [], []], [1, 2, 3])
    ranking = rank(model, history=[watch(0)], count=10)
    assert len(ranking.media_idx) == 2


def test_empty_model_ranks_nothing():
    model = make_model([], [])
    assert len(rank(model, genres={"Drama"}).media_idx) == 0


def test_scores_are_within_zero_and_one():
    rng = np.random.default_rng(0)
    genres = [list(rng.choice(["A", "B", "C", "D"], size=rng.integers(0, 3), replace=False)) for _ in range(50)]
    neighbours = {i: [(int(j), float(rng.random())) for j in rng.choice(50, 5, replace=False) if j != i] for i in range(50)}
    model = make_model(genres, rng.random(50).tolist(), neighbours)
    ranking = rank(model, genres={"A", "B"}, history=[watch(i, float(rng.integers(1, 6))) for i in range(10)], count=40)
    assert (ranking.score >= 0).all() and (ranking.score <= 1 + 1e-9).all()
    assert (np.diff(ranking.score) <= 1e-12).all()  # best first
