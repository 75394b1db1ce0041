"""The temporal split: newest 20% per user held out, nothing of the test set in train."""

import numpy as np

from services.evaluation.split import temporal_split
from services.movielens_import import Ratings


def ratings(rows):
    """Ratings from (user, movie, rating, timestamp) tuples."""
    user, movie, rating, ts = (np.array(c) for c in zip(*rows))
    return Ratings(user.astype(np.int64), movie.astype(np.int64), rating.astype(float), ts.astype(np.int64))


def test_last_fifth_rounded_up_by_timestamp_is_test():
    # user 1: 6 ratings, given out of time order -> ceil(1.2) = 2 newest are test
    rows = [(1, m, 4.0, ts) for m, ts in [(10, 600), (11, 100), (12, 500), (13, 200), (14, 300), (15, 400)]]
    split = temporal_split(ratings(rows))
    assert sorted(split.test.movie.tolist()) == [10, 12]
    assert sorted(split.train.movie.tolist()) == [11, 13, 14, 15]
    assert split.train_counts == {1: 4}


def test_no_user_has_a_test_item_in_train_and_test_is_newer_than_train():
    rng = np.random.default_rng(0)
    rows = []
    for user in range(1, 40):
        movies = rng.choice(200, size=rng.integers(1, 30), replace=False)
        for movie in movies:
            rows.append((user, int(movie), float(rng.integers(1, 11)) / 2, int(rng.integers(0, 1000))))
    data = ratings(rows)
    split = temporal_split(data)
    assert len(split.train) + len(split.test) == len(data)
    train_pairs = set(zip(split.train.user.tolist(), split.train.movie.tolist()))
    test_pairs = set(zip(split.test.user.tolist(), split.test.movie.tolist()))
    assert not train_pairs & test_pairs
    for user in np.unique(data.user).tolist():
        train_ts = split.train.timestamp[split.train.user == user]
        test_ts = split.test.timestamp[split.test.user == user]
        n = len(train_ts) + len(test_ts)
        assert len(test_ts) == -(-n // 5)  # ceil(n / 5)
        if len(train_ts):
            assert train_ts.max() <= test_ts.min()
    for user, movies in split.relevant.items():
        assert not {(user, m) for m in movies} & train_pairs


def test_only_test_ratings_of_four_or_more_are_relevant_and_users_without_any_are_skipped():
    rows = [(1, 1, 5.0, 1), (1, 2, 3.0, 2), (1, 3, 4.0, 3), (1, 4, 3.5, 4), (1, 5, 4.0, 5)]  # test: 4 (3.5), 5 (4.0)
    rows += [(2, 1, 5.0, 1), (2, 2, 2.0, 2)]  # test: 2 (2.0) -> no relevant item
    split = temporal_split(ratings(rows))
    assert split.relevant == {1: frozenset({5})}
    assert split.users == [1]


def test_cold_users_have_five_or_fewer_train_ratings():
    rows = [(1, m, 4.0, m) for m in range(8)]  # 8 ratings: 6 train, 2 test
    rows += [(2, m, 4.0, m) for m in range(7)]  # 7 ratings: 5 train, 2 test
    split = temporal_split(ratings(rows))
    assert split.train_counts == {1: 6, 2: 5}
    assert split.cold_users == [2]
