"""`python -m ml_service evaluate`: our service against the baselines on one temporal split.

Our model runs through production code only: the importer writes the train ratings into
fresh databases, and `served` (ml_service/jobs.py: the refresh job, then build_runtime) gives
the RecommendationService whose recommend_many ranks, exactly as the API does.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable, ContextManager, Protocol, Sequence
from uuid import UUID

from tqdm import tqdm

from services.evaluation import baselines, metrics, report
from services.evaluation.databases import EvalDatabases
from services.evaluation.split import Split, describe, temporal_split
from services.movielens_import import Movie, import_data, media_uuid, preferred_genres, read_movies, read_ratings
from settings import DatabaseUrls

log = logging.getLogger(__name__)

# The batch endpoint's limit: the evaluation asks the service the way a client would.
BATCH_USERS = 50
MODEL_NAMES = ("hybrid", "popularity", "seed_hybrid", "implicit_itemknn", "implicit_als")


class Recommender(Protocol):
    """What the evaluation asks of the service (services.recommendation_service.RecommendationService)."""

    def recommend_many(self, user_ids: Sequence[UUID], limit: int = 10) -> dict: ...


# Given the URLs of databases holding the train data: the refreshed service, for a `with` block.
Served = Callable[[DatabaseUrls], ContextManager[Recommender]]


def evaluate(data_dir: Path, k: int, out_dir: Path | None, pgdata: Path, served: Served, progress: bool = True) -> dict:
    """Run every model on `data_dir`'s split; print the table, write the report; returns metrics.json's content."""
    data_dir = Path(data_dir)
    movies = read_movies(data_dir / "movies.csv")
    split = temporal_split(read_ratings(data_dir / "ratings.csv"))
    users = split.users
    print(f"{data_dir.name}: {len(split.train)} train / {len(split.test)} test ratings, {len(users)} users evaluated")
    recommendations: dict[str, dict[int, list[int]]] = {}
    seconds: dict[str, float] = {}

    def timed(name: str, run: Callable[[], dict[int, list[int]]]) -> None:
        started = time.perf_counter()
        recommendations[name] = run()
        seconds[name] = time.perf_counter() - started

    timed("hybrid", lambda: service_recommendations(movies, split, users, k, pgdata, served, progress))
    train = baselines.TrainMatrix.from_ratings(split.train, [m.movie_id for m in movies])
    genres = preferred_genres(movies, split.train)
    timed("popularity", lambda: baselines.popularity(train, users, k))
    timed("seed_hybrid", lambda: baselines.seed_hybrid(train, genres, movies, users, k, progress))
    timed("implicit_itemknn", lambda: baselines.implicit_itemknn(train, users, k, progress))
    timed("implicit_als", lambda: baselines.implicit_als(train, users, k, progress))

    cold = split.cold_users
    result = {"dataset": data_dir.name, "k": k, "protocol": describe(), "models": {}}
    for name in MODEL_NAMES:
        summary = metrics.summarise(recommendations[name], split.relevant, users, k)
        summary["cold"] = metrics.summarise(recommendations[name], split.relevant, cold, k)
        summary["seconds"] = round(seconds[name], 2)
        result["models"][name] = summary
    print(report.table(result))
    if out_dir is not None:
        for path in report.write(result, Path(out_dir)):
            print(f"wrote {path}")
    return result


def service_recommendations(
    movies: list[Movie], split: Split, users: list[int], k: int, pgdata: Path, served: Served, progress: bool
) -> dict[int, list[int]]:
    """Import the train ratings, refresh, and ask the service for k recommendations per user."""
    from database.schema import apply_schema
    from services.movielens_import import user_uuid

    databases = EvalDatabases(pgdata)
    try:
        urls = databases.recreate()
        print(f"our model: importing the train ratings into fresh databases on {databases.where}")
        apply_schema(urls, sources=True)
        import_data(movies, split.train, urls, progress)
        movie_of: dict[UUID, int] = {media_uuid(m.movie_id): m.movie_id for m in movies}
        with served(urls) as recommender:
            result = {}
            batches = range(0, len(users), BATCH_USERS)
            for start in tqdm(batches, desc="recommending", unit=" batches", disable=not progress):
                batch = users[start : start + BATCH_USERS]
                pages = recommender.recommend_many([user_uuid(u) for u in batch], limit=k)
                for user in batch:
                    result[user] = [movie_of[item.media.id] for item in pages[user_uuid(user)].items]
            return result
    finally:
        databases.close()
