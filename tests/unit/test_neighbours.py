"""The refresh job's neighbour similarity, on interactions built in memory."""

import numpy as np
import pytest

from services.refresh import Interactions, cosine_neighbours


def interactions(pairs, users):
    user, media = (np.array(c, dtype=np.int32) for c in zip(*pairs))
    return Interactions(
        user=user, media=media, positive=np.ones(len(user), bool), newest=np.zeros(len(user), np.int64),
        users_count=users, interactions_count=len(user),
    )


# user 0: media 0, 1; user 1: media 0, 1, 2, 3 (more active); user 2: media 2
PAIRS = [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3), (2, 2)]


def similarities(**options):
    media, neighbour, similarity = cosine_neighbours(interactions(PAIRS, 3), 4, 3, progress=False, **options)
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
