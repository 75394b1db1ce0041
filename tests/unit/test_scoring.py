"""Scoring: genre match, co-interaction, the blend, exclusions and the popular fill."""

import uuid

import numpy as np
import pytest

from services.scoring import (
    MIN_HYBRID_SCORE,
    POPULARITY_TIEBREAK,
    Pool,
    Weights,
    because,
    centred_weights,
    diversify,
    media_indices,
    rank_for_user,
    seed_genres,
    similar_media,
    user_signals,
)
from tests.unit.model_factory import make_history, make_media, make_model, media_uuid


def rank(model, genres=(), history=None, count=10, weights=Weights(0.4, 0.6), history_weighting="centred"):
    """history: media number -> positive value (0: disliked)."""
    signals = user_signals(model, genres, make_history(history or {}), history_weighting)
    return rank_for_user(model, signals, weights, count)


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
    ranking = rank(model, history={0: 2.0, 1: 1.0}, history_weighting="raw")
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
    history = {0: 5.0, 1: 3.0}
    assert rank(model, history=history, history_weighting="raw").media_idx[0] == 3  # 3*0.9 > 5*0.5
    centred = rank(model, history=history)
    assert centred.media_idx[0] == 2  # z = ±1 shrunk by 2 / 12: weights 0.7167 vs 0.3833
    high, low = 0.5 + 1 / 6 + 0.05, 0.5 - 1 / 6 + 0.05
    assert centred.collaborative.tolist() == pytest.approx([1.0, low * 0.9 / (high * 0.5)])


def test_hybrid_blends_content_and_collaborative_with_the_weights():
    model = make_model([["Drama"], ["Drama"], []], [0, 0, 0], neighbours={0: [(2, 1.0)]})
    ranking = rank(model, genres={"Drama"}, history={0: 4.0}, weights=Weights(content=0.4, collaborative=0.6))
    scores = dict(zip(ranking.media_idx.tolist(), ranking.score.tolist()))
    assert scores == pytest.approx({1: 0.4, 2: 0.6})
    assert ranking.media_idx.tolist() == [2, 1]


def test_never_recommends_interacted_or_disliked_media():
    model = make_model([["Drama"]] * 5, [5, 4, 3, 2, 1], neighbours={0: [(1, 0.9), (2, 0.8)]})
    ranking = rank(model, genres={"Drama"}, history={0: 4.0, 1: 0.0, 3: 5.0})
    assert sorted(ranking.media_idx.tolist()) == [2, 4]


def test_disliked_media_carries_no_positive_weight():
    model = make_model([[], [], []], [0, 0, 0], neighbours={0: [(2, 1.0)]})
    ranking = rank(model, history={0: 0.0})
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
    ranking = rank(model, history={0: 4.0, 99: 5.0})
    assert ranking.media_idx.tolist() == [1]


def test_a_value_that_is_not_a_finite_number_counts_as_missing():
    model = make_model([[], [], []], [0, 0, 0], neighbours={0: [(2, 0.5)], 1: [(2, 0.5)]})
    signals = user_signals(model, (), make_history({0: float("nan"), 1: 3.0, 2: float("inf")}), history_weighting="raw")
    assert signals.positive_weight.tolist() == [1.0, 3.0, 1.0]


def test_count_is_capped_by_the_media_the_user_has_not_seen():
    model = make_model([[], [], []], [1, 2, 3])
    ranking = rank(model, history={0: 4.0}, count=10)
    assert len(ranking.media_idx) == 2


def test_empty_model_ranks_nothing():
    model = make_model([], [])
    assert len(rank(model, genres={"Drama"}).media_idx) == 0


def test_scores_are_within_zero_and_one():
    rng = np.random.default_rng(0)
    genres = [list(rng.choice(["A", "B", "C", "D"], size=rng.integers(0, 3), replace=False)) for _ in range(50)]
    neighbours = {i: [(int(j), float(rng.random())) for j in rng.choice(50, 5, replace=False) if j != i] for i in range(50)}
    model = make_model(genres, rng.random(50).tolist(), neighbours)
    ranking = rank(model, genres={"A", "B"}, history={i: float(rng.integers(1, 6)) for i in range(10)}, count=40)
    assert (ranking.score >= 0).all() and (ranking.score <= 1 + 1e-9).all()
    assert (np.diff(ranking.score) <= 1e-12).all()  # best first


def full_sort(model, signals, weights, count, mask=None):
    """The reference ranking: every media (of `mask`) scored with plain loops, sorted by key then index."""
    n = len(model.media_ids)
    content = np.zeros(n)
    for g in signals.genre_idx:
        content[model.media_genres[g]] += 1.0
    content /= max(signals.genre_count, 1)
    collaborative = np.zeros(n)
    seeds = list(zip(signals.positive_idx.tolist(), signals.positive_weight.tolist()))
    if weights.dislike > 0:
        seeds += [(i, -weights.dislike) for i in signals.disliked_idx.tolist()]
    for i, w in seeds:
        for j in range(model.neighbour_indptr[i], model.neighbour_indptr[i + 1]):
            collaborative[model.neighbour_idx[j]] += w * float(model.neighbour_similarity[j])
    if n and collaborative.max() > 0:
        collaborative /= collaborative.max()
    elif n and collaborative.min() < 0:
        collaborative /= -collaborative.min()
    hybrid = weights.content * content + weights.collaborative * collaborative
    hybrid[np.abs(hybrid) < MIN_HYBRID_SCORE] = 0.0
    top = float(model.popularity.max()) if n else 0.0
    key = hybrid + (POPULARITY_TIEBREAK / top if top > 0 else 0.0) * model.popularity
    excluded = set(signals.excluded_idx.tolist())
    shown = [i for i in range(n) if i not in excluded and (mask is None or mask[i])]
    return sorted(shown, key=lambda i: (-key[i], i))[:count], hybrid


@pytest.mark.parametrize("seed", range(12))
def test_ranking_equals_a_full_sort_of_the_whole_catalogue(seed):
    """The fast path scores a few candidates; it must rank exactly as scoring everything would.

    Popularity, similarities and values come from small sets, so equal keys are common and the
    tie rule (popularity, then the lower index) is exercised; some media have many genres,
    some none, and users prefer genres no media has.
    """
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    names = ["A", "B", "C", "D", "E"]
    genres = [list(rng.choice(names, size=rng.integers(0, 4), replace=False)) for _ in range(n)]
    neighbours = {
        i: [(int(j), float(rng.choice([-0.5, -0.1, 0.25, 0.5, 0.75, 1.0]))) for j in rng.choice(n, min(n, 6), replace=False) if j != i]
        for i in range(n)
        if rng.random() < 0.8
    }
    model = make_model(genres, rng.integers(0, 6, n).astype(float).tolist(), neighbours)
    for _ in range(30):
        history = {int(i): float(rng.choice([0.0, 1.0, 2.0, 4.0])) for i in rng.choice(n, rng.integers(0, min(n, 60) + 1), replace=False)}
        user_genres = set(rng.choice(names + ["Unknown"], size=rng.integers(0, 4), replace=False))
        weights = [
            Weights(0.4, 0.6), Weights(0.0, 1.0), Weights(1.0, 0.0), Weights(0.7, 0.3), Weights(2e-6, 1.0),
            Weights(0.4, 0.6, dislike=0.5), Weights(0.7, 0.3, dislike=3.0),
        ][int(rng.integers(0, 7))]
        count = int(rng.choice([1, 10, 30, n]))
        also_excluded = rng.choice(n, rng.integers(0, min(n, 20) + 1), replace=False)
        signals = user_signals(
            model, user_genres, make_history(history), str(rng.choice(["centred", "raw"])), also_excluded
        )
        ranking = rank_for_user(model, signals, weights, count, explain=2)
        assert ranking.because == because(model, signals, ranking.media_idx)  # the ranking's own entries, alike
        expected, hybrid = full_sort(model, signals, weights, count)
        assert ranking.media_idx.tolist() == expected
        assert ranking.score.tolist() == pytest.approx(hybrid[expected].tolist())
        # A filtered row: the same order, restricted to the media that pass.
        mask = rng.random(n) < rng.choice([0.05, 0.3, 0.9])
        filtered = rank_for_user(model, signals, weights, count, Pool.of(model, mask))
        expected, hybrid = full_sort(model, signals, weights, count, mask)
        assert filtered.media_idx.tolist() == expected
        assert filtered.score.tolist() == pytest.approx(hybrid[expected].tolist())


def test_media_indices_find_known_ids_and_only_those():
    rng = np.random.default_rng(3)
    random_ids = [uuid.UUID(bytes=rng.bytes(16)) for _ in range(200)]
    # ids sharing their first 8 bytes (sequential ones, and a run beside random ids)
    shared = [uuid.UUID(int=i) for i in range(1, 30)] + [uuid.UUID(bytes=random_ids[0].bytes[:8] + rng.bytes(8)) for _ in range(5)]
    known = sorted(random_ids + shared, key=lambda u: u.bytes)
    model = make_model([[]] * len(known), [1.0] * len(known), ids=known)
    unknown = [uuid.UUID(bytes=rng.bytes(16)) for _ in range(20)] + [uuid.UUID(int=1000)]
    unknown += [uuid.UUID(bytes=random_ids[1].bytes[:8] + rng.bytes(8))]  # a known prefix, another id
    asked = [known[i] for i in rng.permutation(len(known))] + unknown
    order = rng.permutation(len(asked))
    asked = [asked[i] for i in order]
    idx, found = media_indices(model, np.frombuffer(b"".join(u.bytes for u in asked), dtype="V16"))
    assert found.tolist() == [u not in unknown for u in asked]
    assert [known[i] for i in idx[found].tolist()] == [u for u in asked if u not in unknown]


def test_signatures_group_media_by_their_exact_genres_most_popular_first():
    genres = [["A", "B"], ["B"], [], ["A", "B"], ["B"], ["A", "B"]]
    model = make_model(genres, [1.0, 5.0, 2.0, 3.0, 5.0, 3.0])
    names = list(model.genre_names)
    for media, expected in enumerate(genres):
        signature = model.media_signature[media]
        assert {names[g] for g in np.flatnonzero(model.signature_genres[signature])} == set(expected)
    groups = {
        s: model.signature_media[model.signature_indptr[s]:model.signature_indptr[s + 1]].tolist()
        for s in range(len(model.signature_genres))
    }
    # popularity first, then the lower index
    assert sorted(groups.values()) == sorted([[3, 5, 0], [1, 4], [2]])
    assert model.by_popularity.tolist() == [1, 4, 3, 5, 2, 0]


def test_a_dislike_weight_lowers_the_neighbours_of_disliked_media():
    model = make_model([["Drama"], [], ["Drama"], ["Drama"]], [0, 0, 5, 1], neighbours={1: [(2, 1.0)]})
    # the user disliked media 1, whose neighbour is the popular media 2
    assert rank(model, genres={"Drama"}, history={1: 0.0}).media_idx.tolist() == [2, 3, 0]
    lowered = rank(model, genres={"Drama"}, history={1: 0.0}, weights=Weights(0.4, 0.6, dislike=0.5))
    assert lowered.media_idx.tolist() == [3, 0, 2]
    assert lowered.collaborative.tolist() == [0.0, 0.0, -1.0]  # scaled by the largest magnitude
    assert lowered.score.tolist() == pytest.approx([0.4, 0.4, -0.2])  # below the popular fill


def test_a_disliked_media_is_never_a_reason_even_where_it_raises_a_score():
    # the user liked 0 and disliked 1, whose similarity to 2 is negative: the dislike raises 2
    # (every contribution is positive)
    model = make_model([[]] * 4, [0, 0, 0, 1], neighbours={0: [(2, 0.5)], 1: [(2, -0.5)]})
    signals = user_signals(model, (), make_history({0: 1.0, 1: 0.0}), "raw")
    ranking = rank_for_user(model, signals, Weights(0.4, 0.6, dislike=1.0), 2, explain=2)
    assert ranking.media_idx.tolist() == [2, 3]
    assert ranking.collaborative.tolist() == pytest.approx([1.0, 0.0])  # 0.5 + 0.5; 3 is popular
    assert ranking.because == [[0], []]


def test_because_names_the_users_media_that_add_most_to_each_score():
    model = make_model(
        [[]] * 6, [0] * 6,
        neighbours={0: [(3, 0.9), (4, 0.1)], 1: [(3, 0.5), (4, 0.8)], 2: [(3, 0.7)], 5: [(4, 1.0)]},
    )
    signals = user_signals(model, (), make_history({0: 1.0, 1: 1.0, 2: 1.0, 5: 0.0}), "raw")
    explained = because(model, signals, np.array([4, 3, 1]))
    # media 4: 1 (0.8) before 0 (0.1), and not 5, which was disliked; media 3: 0 (0.9), 2 (0.7), not 1 (0.5)
    assert explained == [[1, 0], [0, 2], []]
    assert because(model, signals, np.array([4, 3]), most=1) == [[1], [0]]
    # the weights count: a strongly liked media leads
    weighted = user_signals(model, (), make_history({0: 1.0, 2: 2.0}), "raw")
    assert because(model, weighted, np.array([3]))[0] == [2, 0]  # 2 × 0.7 > 1 × 0.9


def test_negative_weights_lower_scores_and_are_never_a_reason_or_a_similar_media():
    genres = [["A"], ["A"], ["A"], ["A"], ["A"]]
    # EASE keeps negative weights: fans of 0 go on to 2, not to 3
    model = make_model(genres, [0, 0, 5, 9, 1], neighbours={0: [(2, 0.6), (3, -0.3)], 1: [(3, 0.2)]})
    ranking = rank(model, genres={"A"}, history={0: 1.0, 1: 1.0}, weights=Weights(0.1, 0.9), history_weighting="raw")
    assert ranking.media_idx.tolist() == [2, 4, 3]  # 3's sum is 0.2 - 0.3 < 0: after the genre match of 4
    assert ranking.collaborative.tolist() == pytest.approx([1.0, 0.0, -0.1 / 0.6])
    signals = user_signals(model, {"A"}, make_history({0: 1.0, 1: 1.0}), "raw")
    assert because(model, signals, np.array([2, 3])) == [[0], [1]]  # 0 lowers 3: not a reason for it
    media, is_neighbour = similar_media(model, 0, seed_genres(model, 0), 4, excluded=np.array([], dtype=np.int64))
    assert media.tolist() == [2, 4, 1] and is_neighbour.tolist() == [True, False, False]  # never 3


def test_similar_media_are_the_neighbours_then_popular_media_sharing_most_genres():
    genres = [["A", "B"], ["A", "B"], ["A"], ["C"], ["A", "B"], ["B"], ["A", "B"]]
    model = make_model(genres, [9, 1, 8, 7, 2, 6, 0], neighbours={0: [(3, 0.9), (5, 0.4), (1, 0.2)]})
    media, is_neighbour = similar_media(model, 0, seed_genres(model, 0), 6, excluded=np.array([], dtype=np.int64))
    # neighbours most similar first; then both genres (4 more popular than 6), then one of them
    assert media.tolist() == [3, 5, 1, 4, 6, 2]
    assert is_neighbour.tolist() == [True, True, True, False, False, False]
    media, _ = similar_media(model, 0, seed_genres(model, 0), 3, excluded=np.array([5, 4]))
    assert media.tolist() == [3, 1, 6]
    media, _ = similar_media(model, 0, seed_genres(model, 0), 10, np.array([], dtype=np.int64), Pool.of(model, np.ones(7, dtype=bool)))
    assert media.tolist() == [3, 5, 1, 4, 6, 2]  # never the seed itself
    only_b = Pool.of(model, np.array(["B" in g for g in genres]))
    assert similar_media(model, 0, seed_genres(model, 0), 10, np.array([], dtype=np.int64), only_b)[0].tolist() == [5, 1, 4, 6]
    # a media the model does not know: the genre part alone
    media, is_neighbour = similar_media(model, None, seed_genres(model, None, make_media(["B", "X"])), 3, np.array([1]))
    assert media.tolist() == [0, 5, 4] and not is_neighbour.any()  # media with B (X is new), most popular first


def test_diversify_trades_rank_for_genre_variety():
    genres = [["A"], ["A"], ["A"], ["B"], ["C"], ["A", "B"]]
    model = make_model(genres, [1] * 6)
    ranked = np.arange(6)
    assert diversify(model, ranked, 4, 0.0).tolist() == [0, 1, 2, 3]
    assert diversify(model, ranked, 4, 1.0).tolist() == [0, 3, 4, 5]  # new genres first, then the least similar
    some = diversify(model, ranked, 4, 0.5).tolist()
    assert some[:2] == [0, 3] and len(set(some)) == 4
    assert diversify(model, ranked, 10, 1.0).tolist()[:3] == [0, 3, 4] and len(diversify(model, ranked, 10, 1.0)) == 6


def test_media_appended_by_a_catalog_sync_are_found_and_ranked_by_genre():
    model = make_model([["A"], ["B"], ["A"]], [3, 2, 1], neighbours={0: [(1, 1.0)]})
    new = [make_media(["A", "New"], uuid.UUID(int=0)), make_media(["B"]), make_media(["A"], media_uuid(1))]
    synced = model.with_media(new)
    assert len(synced.media_ids) == 5 and synced.appended == 2  # media_uuid(1) was known already
    assert synced.with_media(new) is synced
    idx, found = media_indices(synced, np.frombuffer(b"".join(m.id.bytes for m in new), dtype="V16"))
    assert found.all() and idx.tolist() == [3, 4, 1]
    assert synced.media_type.tolist()[3:] == [0, 0] and synced.media_type_names == ("movie",)
    assert synced.release_year.tolist()[3:] == [2020, 2020]
    ranking = rank(synced, genres={"New"}, history={0: 1.0})
    assert ranking.media_idx.tolist()[:2] == [1, 3]  # the neighbour (0.6), then the new title by genre (0.4)
    assert ranking.content.tolist()[1] == 1.0 and synced.popularity[3] == 0
