"""The models ours is compared with, all fitted on the same train ratings.

- popularity: movies by number of train ratings;
- seed_hybrid: the original design's hybrid, kept as a reference: collaborative score = raw
  count of the user's co-users' interactions with each movie (co-users: anyone who rated a
  movie the user rated), no normalisation beyond scaling to [0, 1] per user, blended 40/60
  with the same genre match as ours, popular movies filling the rest;
- implicit_itemknn / implicit_als: the `implicit` library on the binary user x movie matrix;
- ease: EASE (Steck, WWW 2019), full and exact, on the binary matrix of liked ratings (those
  the importer stores as a LIKE), its regularisation chosen from EASE_LAMBDAS by NDCG on a
  validation split cut from the train ratings (`choose_ease_lambda`), never on test.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from tqdm import tqdm

from services.evaluation import metrics
from services.evaluation.split import temporal_split
from services.movielens_import import LIKE_AT_LEAST, Movie, Ratings
from services.neighbours import ease_weights

ITEMKNN_K = 100
ALS = {"factors": 64, "regularization": 0.05, "iterations": 15, "random_state": 0}
SEED_WEIGHTS = (0.4, 0.6)
USER_BLOCK = 256
EASE_LAMBDAS = (50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)


@dataclass(frozen=True)
class TrainMatrix:
    """The binary user x movie matrix of the train ratings, with the id maps."""

    matrix: sp.csr_matrix  # float32, users x movies, 1 where the user rated the movie
    liked: sp.csr_matrix  # the same, 1 only where the rating is LIKE_AT_LEAST or more
    user_ids: np.ndarray  # MovieLens user id per row
    movie_ids: np.ndarray  # MovieLens movie id per column

    @classmethod
    def from_ratings(cls, train: Ratings, movie_ids: Sequence[int]) -> "TrainMatrix":
        """Rows: users with train ratings; columns: `movie_ids` (sorted, a superset of the train movies)."""
        users, rows = np.unique(train.user, return_inverse=True)
        movies = np.asarray(sorted(movie_ids), dtype=np.int64)
        cols = np.searchsorted(movies, train.movie)

        def binary(keep: np.ndarray) -> sp.csr_matrix:
            matrix = sp.csr_matrix(
                (np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])), shape=(len(users), len(movies))
            )
            matrix.sum_duplicates()
            matrix.data[:] = 1.0
            return matrix

        return cls(binary(np.ones(len(train), bool)), binary(train.rating >= LIKE_AT_LEAST), users, movies)

    def rows_of(self, users: Sequence[int]) -> np.ndarray:
        """Row index of each user, -1 for users without train ratings."""
        users = np.asarray(users, dtype=np.int64)
        idx = np.minimum(np.searchsorted(self.user_ids, users), max(len(self.user_ids) - 1, 0))
        found = (self.user_ids[idx] == users) if len(self.user_ids) else np.zeros(len(users), bool)
        return np.where(found, idx, -1)


def popularity(train: TrainMatrix, users: Sequence[int], k: int) -> dict[int, list[int]]:
    """The k movies with the most train ratings that the user has not rated."""
    counts = np.asarray(train.matrix.sum(axis=0)).ravel()
    result: dict[int, list[int]] = {}
    users = list(users)
    for start in range(0, len(users), USER_BLOCK):
        block = users[start : start + USER_BLOCK]
        result.update(_top_k_per_user(train, block, k, lambda rows: np.zeros((len(rows), len(counts))), counts))
    return result


def seed_hybrid(
    train: TrainMatrix,
    genres: dict[int, list[str]],
    movies: list[Movie],
    users: Sequence[int],
    k: int,
    progress: bool = False,
) -> dict[int, list[int]]:
    """The original design's 40/60 hybrid of genre match and raw co-user interaction counts."""
    matrix = train.matrix
    counts = np.asarray(matrix.sum(axis=0)).ravel()
    movie_genres = {m.movie_id: m.genres for m in movies}
    genre_names = sorted({g for m in movies for g in m.genres})
    genre_col = {g: i for i, g in enumerate(genre_names)}
    # movie x genre incidence, to score genre matches for a block of users at once
    rows, cols = [], []
    for j, movie in enumerate(train.movie_ids.tolist()):
        for g in movie_genres.get(movie, ()):
            rows.append(j)
            cols.append(genre_col[g])
    has_genre = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(train.movie_ids), len(genre_names)))
    content_weight, collaborative_weight = SEED_WEIGHTS

    def scores(row_idx: np.ndarray, block_users: list[int]) -> np.ndarray:
        valid = row_idx >= 0
        user_rows = matrix[np.where(valid, row_idx, 0)]
        co_users = (user_rows @ matrix.T).tocsr()
        co_users.data[:] = 1.0
        # Every user with ratings is their own co-user: take their own row back out.
        collaborative = (co_users @ matrix).toarray() - user_rows.toarray()
        collaborative[~valid] = 0
        top = collaborative.max(axis=1, keepdims=True)
        collaborative = np.divide(collaborative, top, out=np.zeros_like(collaborative), where=top > 0)
        prefs = np.zeros((len(row_idx), len(genre_names)), np.float32)
        for r, user in enumerate(block_users):
            for g in genres.get(int(user), ()):
                prefs[r, genre_col[g]] = 1.0
        n_prefs = prefs.sum(axis=1, keepdims=True)
        content = np.asarray((has_genre @ prefs.T).T)
        content = np.divide(content, n_prefs, out=np.zeros_like(content), where=n_prefs > 0)
        return content_weight * content + collaborative_weight * collaborative

    result: dict[int, list[int]] = {}
    users = list(users)
    for start in tqdm(range(0, len(users), USER_BLOCK), desc="seed_hybrid", unit=" blocks", disable=not progress):
        block = users[start : start + USER_BLOCK]
        result.update(_top_k_per_user(train, block, k, lambda rows: scores(rows, block), counts))
    return result


def implicit_itemknn(train: TrainMatrix, users: Sequence[int], k: int, progress: bool = False) -> dict[int, list[int]]:
    """implicit's CosineRecommender(K=100) fitted on the binary matrix."""
    from implicit.nearest_neighbours import CosineRecommender
    from implicit.utils import ParameterWarning

    model = CosineRecommender(K=ITEMKNN_K)
    with warnings.catch_warnings():
        # CosineRecommender.fit normalises into a COO matrix and then warns about its own
        # conversion back to CSR (implicit 0.7.3); nothing we pass triggers it.
        warnings.filterwarnings("ignore", message="Method expects CSR input", category=ParameterWarning)
        model.fit(train.matrix, show_progress=progress)
    return _implicit_recommend(model, train, users, k)


def implicit_als(train: TrainMatrix, users: Sequence[int], k: int, progress: bool = False) -> dict[int, list[int]]:
    """implicit's AlternatingLeastSquares(factors=64, regularization=0.05, iterations=15, random_state=0)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    # implicit parallelises itself; a multi-threaded BLAS underneath only oversubscribes (and warns).
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(**ALS)
        model.fit(train.matrix, show_progress=progress)
        return _implicit_recommend(model, train, users, k)


def ease(train: TrainMatrix, users: Sequence[int], k: int, ease_lambda: float) -> dict[int, list[int]]:
    """Full EASE with regularisation `ease_lambda`: score = the user's liked row @ B, with
    B = I - P · diag(1 / diag(P)), P = (XᵀX + λI)⁻¹, diagonal 0 (X: train.liked)."""
    liked = train.liked
    weights = ease_weights((liked.T @ liked).toarray().astype(np.float64), ease_lambda)
    counts = np.asarray(train.matrix.sum(axis=0)).ravel()

    def scores(rows: np.ndarray) -> np.ndarray:
        known = rows >= 0
        return np.where(known[:, None], liked[np.where(known, rows, 0)] @ weights, 0.0)

    result: dict[int, list[int]] = {}
    users = list(users)
    for start in range(0, len(users), USER_BLOCK):
        result.update(_top_k_per_user(train, users[start : start + USER_BLOCK], k, scores, counts))
    return result


def choose_ease_lambda(train: Ratings, movie_ids: Sequence[int], k: int, progress: bool = False) -> tuple[float, dict[float, float]]:
    """EASE's regularisation with the best NDCG@k on a validation split of `train` (the same
    temporal split, applied to the train ratings); returns it and every value's NDCG."""
    validation = temporal_split(train)
    matrix = TrainMatrix.from_ratings(validation.train, movie_ids)
    ndcg = {}
    for ease_lambda in tqdm(EASE_LAMBDAS, desc="EASE: lambda on validation", disable=not progress):
        recommendations = ease(matrix, validation.users, k, ease_lambda)
        ndcg[ease_lambda] = metrics.summarise(recommendations, validation.relevant, validation.users, k)["ndcg"]
    best = max(EASE_LAMBDAS, key=lambda value: (ndcg[value], -value))  # ties: the smaller lambda
    return best, ndcg


def _implicit_recommend(model, train: TrainMatrix, users: Sequence[int], k: int) -> dict[int, list[int]]:
    rows = train.rows_of(users)
    known = rows >= 0
    result: dict[int, list[int]] = {u: [] for u in users}
    known_rows = rows[known]
    if len(known_rows):
        ids, _ = model.recommend(known_rows, train.matrix[known_rows], N=k, filter_already_liked_items=True)
        for user, items in zip(np.asarray(users)[known].tolist(), ids):
            result[user] = train.movie_ids[items[items >= 0]].tolist()
    return result


def _top_k_per_user(train: TrainMatrix, users: Sequence[int], k: int, score_rows, counts: np.ndarray) -> dict[int, list[int]]:
    """Per user, the k best unrated movies by score, ties (and zero scores) by train popularity, then id."""
    rows = train.rows_of(users)
    scores = np.array(score_rows(rows), dtype=np.float64, copy=True)
    tiebreak = 1e-9 * counts / max(float(counts.max()), 1.0)
    scores += tiebreak
    for r, row in enumerate(rows):
        if row >= 0:
            rated = train.matrix.indices[train.matrix.indptr[row] : train.matrix.indptr[row + 1]]
            scores[r, rated] = -np.inf
    # A full stable sort: equal scores keep movie id order, so results never depend on chance.
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    result = {}
    for r, user in enumerate(users):
        order = top[r][np.isfinite(scores[r, top[r]])]
        result[int(user)] = train.movie_ids[order].tolist()
    return result
