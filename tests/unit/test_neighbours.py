"""The refresh job's neighbour table (services/neighbours.py), on interactions built in memory."""

import numpy as np
import pytest

from services.neighbours import NeighbourSettings, binary_matrix, build, cosine_neighbours, ease_neighbours, most_recent


def interactions(pairs, users, media=4):
    user, item = (np.array(c, dtype=np.int32) for c in zip(*pairs))
    return binary_matrix(user, item, users, media)


# user 0: media 0, 1; user 1: media 0, 1, 2, 3 (more active); user 2: media 2
PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3), (2, 2)]


def similarities(**options):
    media, neighbour, similarity = cosine_neighbours(interactions(PAIRS, 3), 3, progress=False, **options)
    return {(int(m), int(n)): float(s) for m, n, s in zip(media, neighbour, similarity)}


def test_plain_cosine_without_damping_or_shrinkage():
    sims = similarities()
    assert sims[(0, 1)] == pytest.approx(2 / np.sqrt(2 * 2))
    assert sims[(0, 2)] == pytest.approx(1 / np.sqrt(2 * 2))
    assert sims[(2, 3)] == pytest.approx(1 / np.sqrt(2 * 1))


def test_active_users_count_less_with_user_damping():
    sims = similarities(user_damping=1.0)
    w0, w1 = 1 / np.log(1 + 2), 1 / np.log(1 + 4)
    assert sims[(0, 1)] == pytest.approx((w0 + w1) / 2)
    assert sims[(0, 2)] == pytest.approx(w1 / 2)  # only the active user 1 links 0 and 2


def test_shrinkage_lowers_similarities_with_little_support_the_most():
    plain, shrunk = similarities(), similarities(shrinkage=2.0)
    assert shrunk[(0, 1)] == pytest.approx(2 / (2 + 2))
    assert shrunk[(2, 3)] == pytest.approx(1 / (np.sqrt(2) + 2))
    # the pair seen by one user (over a small denominator) loses more than the pair seen by two
    assert shrunk[(2, 3)] / plain[(2, 3)] < shrunk[(0, 1)] / plain[(0, 1)]


def table(result):
    return {(int(m), int(n)): float(w) for m, n, w in zip(*result)}


def random_matrix(users=60, media=25, seed=0):
    """Users who each like a few media, more often the low-numbered ones."""
    rng = np.random.default_rng(seed)
    pairs = {(u, int(m)) for u in range(users) for m in rng.choice(media, size=int(rng.integers(2, 8)), replace=False,
                                                                    p=np.linspace(2, 1, media) / np.linspace(2, 1, media).sum())}
    return interactions(sorted(pairs), users, media)


def exact_ease(matrix, ease_lambda):
    """EASE's closed form, as the paper writes it."""
    dense = matrix.toarray().astype(np.float64)
    inverse = np.linalg.inv(dense.T @ dense + ease_lambda * np.eye(dense.shape[1]))
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


def test_ease_neighbours_are_each_rows_weights_of_the_closed_form_largest_in_magnitude():
    matrix = random_matrix()
    exact = exact_ease(matrix, 5.0)
    every = np.arange(matrix.shape[1])
    found = table(ease_neighbours(matrix, every, 4, 5.0, progress=False))
    assert min(found.values()) < 0 < max(found.values())  # "fans of i do not go on to j" is kept too
    for media in every.tolist():
        expected = {int(j): exact[media, j] for j in np.argsort(-np.abs(exact[media]))[:4] if exact[media, j] != 0}
        got = {j: w for (m, j), w in found.items() if m == media}
        assert got.keys() == expected.keys(), media
        assert list(got.values()) == pytest.approx(list(expected[j] for j in got), rel=1e-5)


def test_ease_on_a_subset_of_media_is_ease_of_those_columns_alone():
    matrix = random_matrix()
    subset = np.array([0, 2, 3, 7, 11, 19])
    exact = exact_ease(matrix[:, subset], 5.0)
    found = table(ease_neighbours(matrix, subset, 10, 5.0, progress=False))
    expected = {(int(subset[i]), int(subset[j])): exact[i, j] for i in range(6) for j in range(6) if i != j}
    assert found.keys() == expected.keys()
    assert [found[key] for key in expected] == pytest.approx(list(expected.values()), rel=1e-5)


def settings(**changes):
    values = {"k": 5, "ease_lambda": 5.0, "ease_media": 10, "user_damping": 1.0, "shrinkage": 2.0, **changes}
    return NeighbourSettings(**values)


def liked_part(matrix, seed=1):
    """About two thirds of the pairs of `matrix`: the liked ones."""
    coo = matrix.tocoo()
    keep = np.random.default_rng(seed).random(coo.nnz) < 0.67
    return binary_matrix(coo.row[keep], coo.col[keep], *matrix.shape)


def test_build_uses_ease_of_likes_for_the_most_liked_media_and_scaled_cosine_for_the_rest():
    positive = random_matrix()
    liked = liked_part(positive)
    likes = np.asarray(liked.sum(axis=0)).ravel()
    head = np.sort(np.argsort(-likes, kind="stable")[:10])
    found = table(build(positive, liked, settings(), progress=False))
    ease = table(ease_neighbours(liked, head, 5, 5.0, progress=False))
    cosine = table(cosine_neighbours(positive, 5, progress=False, user_damping=1.0, shrinkage=2.0))
    assert {key: w for key, w in found.items() if key[0] in head} == ease  # EASE rows reach only EASE media
    tail = {key: w for key, w in found.items() if key[0] not in head}
    assert tail.keys() == {key for key in cosine if key[0] not in head} and tail
    ratios = [tail[key] / cosine[key] for key in tail]
    assert ratios == pytest.approx([ratios[0]] * len(ratios), rel=1e-5)  # one factor puts them on EASE's scale
    assert ratios[0] != pytest.approx(1.0)


def test_build_without_ease_is_the_cosine_table_and_without_likes_ease_learns_from_every_positive_pair():
    positive = random_matrix()
    cosine = table(cosine_neighbours(positive, 5, progress=False, user_damping=1.0, shrinkage=2.0))
    assert table(build(positive, liked_part(positive), settings(ease_media=0), progress=False)) == cosine
    no_likes = binary_matrix(np.zeros(0, np.int32), np.zeros(0, np.int32), *positive.shape)
    ease = table(ease_neighbours(positive, np.arange(positive.shape[1]), 5, 5.0, progress=False))
    assert table(build(positive, no_likes, settings(ease_media=1000), progress=False)) == ease


def test_media_without_positive_users_get_no_neighbours_and_no_one_is_their_own():
    positive = interactions([(0, 0), (0, 1), (1, 1), (1, 2)], users=2, media=5)  # media 3 and 4: nobody
    liked = interactions([(0, 0), (0, 1), (1, 1)], users=2, media=5)
    for ease_media in (0, 2, 10):
        found = table(build(positive, liked, settings(ease_media=ease_media), progress=False))
        assert found and all(m not in (3, 4) and m != n for m, n in found), ease_media


def test_a_user_cap_keeps_each_users_most_recent_pairs_ties_to_the_lower_media():
    user = np.array([0, 0, 0, 0, 1, 1, 2])
    media = np.array([5, 3, 9, 1, 4, 2, 7])
    newest = np.array([10, 30, 20, 30, 5, 5, 1])
    # user 0: media 1 and 3 tie as newest (30), then 9 (20), then 5; user 1: 2 and 4 tie
    assert most_recent(user, media, newest, 3).tolist() == [False, True, True, True, True, True, True]
    assert most_recent(user, media, newest, 1).tolist() == [False, False, False, True, False, True, True]
    assert most_recent(user, media, newest, 0).all()  # 0: no cap
    assert most_recent(user[:0], media[:0], newest[:0], 2).tolist() == []
