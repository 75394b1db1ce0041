"""The baselines on tiny train sets whose answers are known by hand."""

import numpy as np

from services.evaluation import baselines
from services.movielens_import import Movie, Ratings


def train_matrix(pairs, movies=range(1, 9)):
    user, movie = (np.array(c, dtype=np.int64) for c in zip(*pairs))
    ratings = Ratings(user, movie, np.full(len(user), 4.0), np.arange(len(user), dtype=np.int64))
    return baselines.TrainMatrix.from_ratings(ratings, list(movies))


# Users 1..4; movie 6 is the most rated, then 5, then 4.
PAIRS = [(1, 1), (1, 2), (2, 1), (2, 3), (2, 6), (3, 4), (3, 5), (3, 6), (4, 4), (4, 5), (4, 6)]


def test_popularity_ranks_by_train_ratings_and_skips_what_the_user_rated():
    recs = baselines.popularity(train_matrix(PAIRS), [1, 3], 3)
    assert recs[1] == [6, 4, 5]
    assert recs[3][0] == 1  # 4, 5, 6 rated; 1 (2 ratings) comes before the singles
    assert not {4, 5, 6} & set(recs[3])


def test_seed_hybrid_counts_co_users_interactions_and_blends_genre_match():
    movies = [Movie(m, f"m{m}", None, ("Drama",) if m in (7, 8) else ("Comedy",)) for m in range(1, 9)]
    train = train_matrix(PAIRS)
    # user 1's only co-user is 2 (movie 1): movies 3 and 6 each count 1 -> collaborative 1.0
    recs = baselines.seed_hybrid(train, {1: ["Comedy"]}, movies, [1], 4)
    assert recs[1][:2] == [6, 3]  # 0.4 + 0.6 each, tie broken by popularity
    assert recs[1][2:] == [4, 5]  # genre match only (0.4), by popularity; Drama movies 7, 8 last
    # with a Drama preference the unrated Drama movies outrank Comedy movies without co-users
    recs = baselines.seed_hybrid(train, {1: ["Drama"]}, movies, [1], 4)
    assert recs[1][:2] == [6, 3] and set(recs[1][2:]) == {7, 8}


def test_implicit_models_return_k_unrated_movies_per_user():
    rng = np.random.default_rng(1)
    pairs = sorted({(int(u), int(m)) for u, m in zip(rng.integers(1, 40, 400), rng.integers(1, 60, 400))})
    train = train_matrix(pairs, range(1, 60))
    users = [1, 2, 3]
    rated = {u: {m for v, m in pairs if v == u} for u in users}
    for recommend in (baselines.implicit_itemknn, baselines.implicit_als):
        recs = recommend(train, users, 5)
        for user in users:
            assert len(recs[user]) == 5 and len(set(recs[user])) == 5
            assert not rated[user] & set(recs[user])


def test_users_without_train_ratings_still_get_popular_movies():
    recs = baselines.popularity(train_matrix(PAIRS), [99], 2)
    assert recs[99] == [6, 1]  # 1, 4 and 5 tie at 2 ratings: lowest id first


def test_ease_ranks_unrated_movies_by_the_closed_form_from_liked_ratings_only():
    rng = np.random.default_rng(2)
    pairs = sorted({(int(u), int(m)) for u, m in zip(rng.integers(1, 30, 200), rng.integers(1, 20, 200))})
    user, movie = (np.array(c, dtype=np.int64) for c in zip(*pairs))
    rating = rng.choice([2.0, 3.0, 4.0, 5.0], len(user))
    train = baselines.TrainMatrix.from_ratings(Ratings(user, movie, rating, np.arange(len(user))), list(range(1, 21)))
    liked = np.zeros((len(train.user_ids), 20))
    for u, m, r in zip(user.tolist(), movie.tolist(), rating.tolist()):
        if r >= 4:
            liked[train.rows_of([u])[0], m - 1] = 1.0
    inverse = np.linalg.inv(liked.T @ liked + 10.0 * np.eye(20))
    weights = -inverse / np.diag(inverse)[None, :]
    np.fill_diagonal(weights, 0.0)
    recs = baselines.ease(train, train.user_ids.tolist(), 5, 10.0)
    for row, u in enumerate(train.user_ids.tolist()):
        scores = liked[row] @ weights
        rated = set(movie[user == u].tolist())
        assert not rated & set(recs[u])
        expected = sorted((m for m in range(1, 21) if m not in rated), key=lambda m: -scores[m - 1])[:5]
        assert [round(scores[m - 1], 9) for m in recs[u]] == [round(scores[m - 1], 9) for m in expected], u


def test_ease_lambda_is_chosen_on_a_validation_split_of_the_train_ratings():
    rng = np.random.default_rng(3)
    n = 3000
    user, movie = rng.integers(1, 80, n), rng.integers(1, 60, n)
    ratings = Ratings(user, movie, rng.choice([3.0, 4.0, 5.0], n), rng.permutation(n).astype(np.int64))
    chosen, ndcg = baselines.choose_ease_lambda(ratings, list(range(1, 60)), 10)
    assert set(ndcg) == set(baselines.EASE_LAMBDAS) and all(0 <= v <= 1 for v in ndcg.values())
    assert ndcg[chosen] == max(ndcg.values())
