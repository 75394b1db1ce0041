"""In-memory twin of the evaluation for quick model experiments (no database).

Builds the model with the refresh job's functions and ranks with services.scoring, from
the train ratings directly; the real evaluation (python -m ml_service evaluate) goes through
PostgreSQL. Usage: python bench/eval_quick.py [DATA_DIR] [--users odd|even|all] [--share 0.2]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from database.records import History, ModelData, ModelInfo  # noqa: E402
from ml_service.jobs import neighbour_settings  # noqa: E402
from services import neighbours  # noqa: E402
from services import refresh as refresh_job  # noqa: E402
from services import scoring  # noqa: E402
from services.evaluation import baselines, metrics  # noqa: E402
from services.evaluation.split import temporal_split  # noqa: E402
from services.movielens_import import (  # noqa: E402
    DISLIKE_AT_MOST,
    LIKE_AT_LEAST,
    UNIX_TO_POSTGRES_EPOCH,
    media_uuid,
    preferred_genres,
    read_movies,
    read_ratings,
)
from settings import Settings  # noqa: E402


def build_model(movies, train, settings: Settings):
    ids = sorted(media_uuid(m.movie_id).bytes for m in movies)
    media_ids = np.frombuffer(b"".join(ids), dtype="V16")
    index_of = {uuid.UUID(bytes=b): i for i, b in enumerate(ids)}
    movie_idx = {m.movie_id: index_of[media_uuid(m.movie_id)] for m in movies}
    order = np.lexsort((train.movie, train.user))
    users, user_num = np.unique(train.user[order], return_inverse=True)
    media = np.array([movie_idx[m] for m in train.movie[order].tolist()], dtype=np.int32)
    rating = train.rating[order]
    newest = (train.timestamp[order] - UNIX_TO_POSTGRES_EPOCH) * 1_000_000
    inter = refresh_job.Interactions(
        user=user_num.astype(np.int32), media=media, positive=rating > DISLIKE_AT_MOST, liked=rating >= LIKE_AT_LEAST,
        newest=newest.astype(np.int64),
        users_count=len(users), interactions_count=len(train),
    )
    pop = refresh_job.popularity_scores(inter, len(media_ids), settings.popularity_half_life_days)
    build = neighbour_settings(settings)
    sums = refresh_job.NumpyRead(inter, len(media_ids)).sums(build)
    nb_media, nb_idx, nb_sim = neighbours.assemble(sums, build, progress=False)
    order = np.lexsort((nb_idx, -nb_sim, nb_media))
    nb_media, nb_idx, nb_sim = nb_media[order], nb_idx[order], nb_sim[order]
    indptr = np.zeros(len(media_ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(nb_media, minlength=len(media_ids)), out=indptr[1:])
    genre_names = sorted({g for m in movies for g in m.genres})
    media_genres = [np.array(sorted(movie_idx[m.movie_id] for m in movies if g in m.genres), dtype=np.int32) for g in genre_names]
    info = ModelInfo(1, datetime.now(), len(train), len(users), len(media_ids), len(nb_idx), None, 0.0)
    model = ModelData(info, media_ids, pop, tuple(genre_names), media_genres, indptr, nb_idx, nb_sim)
    return model, {i: m for m, i in movie_idx.items()}


def histories(train):
    """Each user's History as the importer stores ratings: a WATCH, plus a LIKE or a DISLIKE."""
    values: dict[int, dict[int, float]] = {}
    for u, m, r in zip(train.user.tolist(), train.movie.tolist(), train.rating.tolist()):
        values.setdefault(u, {})[m] = 0.0 if r <= DISLIKE_AT_MOST else max(r, 0.0)
    return {
        u: History(
            np.frombuffer(b"".join(media_uuid(m).bytes for m in v), dtype="V16"),
            np.array(list(v.values())),
            np.array(list(v.values())) == 0,
        )
        for u, v in values.items()
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data", nargs="?", default="data/ml-latest-small")
    p.add_argument("--users", default="all")
    p.add_argument("--share", type=float, default=0.2)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--baselines", action="store_true")
    p.add_argument("--validation", action="store_true", help="evaluate on a validation split cut from train (test unseen)")
    a = p.parse_args()
    movies = read_movies(Path(a.data) / "movies.csv")
    ratings = read_ratings(Path(a.data) / "ratings.csv")
    if a.users != "all":
        ratings = ratings.subset(ratings.user % 2 == (1 if a.users == "odd" else 0))
    split = temporal_split(ratings, a.share)
    if a.validation:
        split = temporal_split(split.train, a.share)
    settings = Settings.from_env({"USER_DB_URL": "x", "CATALOG_DB_URL": "x", "ENGAGEMENT_DB_URL": "x", **__import__("os").environ})
    t = time.perf_counter()
    model, movie_of = build_model(movies, split.train, settings)
    genres = preferred_genres(movies, split.train)
    hist = histories(split.train)
    weights = scoring.Weights(settings.content_weight, settings.collaborative_weight)
    recs = {}
    for u in split.users:
        sig = scoring.user_signals(model, genres.get(u, ()), hist.get(u), settings.history_weighting)
        rk = scoring.rank_for_user(model, sig, weights, a.k)
        recs[u] = [movie_of[int(i)] for i in rk.media_idx]
    res = {"hybrid": metrics.summarise(recs, split.relevant, split.users, a.k)}
    dt = time.perf_counter() - t
    if a.baselines:
        tm = baselines.TrainMatrix.from_ratings(split.train, [m.movie_id for m in movies])
        res["popularity"] = metrics.summarise(baselines.popularity(tm, split.users, a.k), split.relevant, split.users, a.k)
        res["seed_hybrid"] = metrics.summarise(baselines.seed_hybrid(tm, genres, movies, split.users, a.k), split.relevant, split.users, a.k)
        res["itemknn"] = metrics.summarise(baselines.implicit_itemknn(tm, split.users, a.k), split.relevant, split.users, a.k)
        res["als"] = metrics.summarise(baselines.implicit_als(tm, split.users, a.k), split.relevant, split.users, a.k)
        ease_lambda, _ = baselines.choose_ease_lambda(split.train, tm.movie_ids, a.k)
        res[f"ease({ease_lambda:g})"] = metrics.summarise(
            baselines.ease(tm, split.users, a.k, ease_lambda), split.relevant, split.users, a.k
        )
    for name, r in res.items():
        print(f"{name:12s} ndcg {r['ndcg']:.4f} prec {r['precision']:.4f} rec {r['recall']:.4f} map {r['map']:.4f} cov {r['catalog_coverage']} ucov {r['user_coverage']:.3f} n={r['users']}")
    print(f"hybrid time {dt:.1f}s")


if __name__ == "__main__":
    main()
