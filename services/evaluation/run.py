"""`python -m ml_service evaluate`: our service against the baselines on one temporal split.

Our model runs through production code only: the importer writes the train ratings into
fresh databases, and `served` (ml_service/jobs.py: the refresh job, then build_runtime) gives
the RecommendationService whose recommend_many ranks, exactly as the API does. The same served
model ranks once more per diversity value in DIVERSITIES (recommend_many's `diversity`, as the
API's parameter), each pass a row of its own: "hybrid" is diversity 0, today's ranking.
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
from services.evaluation.split import TEST_SHARE, Split, describe, temporal_split
from services.movielens_import import Movie, import_data, media_uuid, preferred_genres, read_movies, read_ratings
from settings import DatabaseUrls

log = logging.getLogger(__name__)

# The batch endpoint's limit: the evaluation asks the service the way a client would.
BATCH_USERS = 50
# The hybrid's genre-diversity settings evaluated, 0 (the default ranking) first.
DIVERSITIES = (0.0, 0.25, 0.5, 1.0)
BASELINE_NAMES = ("popularity", "seed_hybrid", "implicit_itemknn", "implicit_als", "ease")
# --users: every user, or only those with an odd or an even MovieLens id (a second sample).
USER_SAMPLES = ("all", "odd", "even")


def hybrid_name(diversity: float) -> str:
    """The row of our model at `diversity`: "hybrid" for 0, else e.g. "hybrid (diversity 0.5)"."""
    return "hybrid" if diversity == 0 else f"hybrid (diversity {diversity:g})"


MODEL_NAMES = tuple(hybrid_name(d) for d in DIVERSITIES) + BASELINE_NAMES


class Recommender(Protocol):
    """What the evaluation asks of the service (services.recommendation_service.RecommendationService)."""

    def recommend_many(self, user_ids: Sequence[UUID], limit: int = 10, *, diversity: float = 0.0) -> dict: ...


# Given the URLs of databases holding the train data: the refreshed service, and what its model is
# (version, the settings it serves it with, its validation: GET /api/model's), for a `with` block.
Served = Callable[[DatabaseUrls], ContextManager[tuple[Recommender, dict]]]


def evaluate(
    data_dir: Path,
    k: int,
    out_dir: Path | None,
    pgdata: Path,
    served: Served,
    progress: bool = True,
    *,
    test_share: float = TEST_SHARE,
    user_sample: str = "all",
    validation: bool = False,
) -> dict:
    """Run every model on `data_dir`'s split; print the table, write the report; returns metrics.json's content.

    `test_share` of each user's newest ratings are held out; `user_sample` keeps every user or
    only those with an odd or even id. With `validation` the test ratings are left out
    altogether and the same split is cut again from the train ratings: the models are trained
    on its train part and scored on its held-out part, so settings can be chosen without ever
    looking at the test set.
    """
    data_dir = Path(data_dir)
    movies = read_movies(data_dir / "movies.csv")
    ratings = read_ratings(data_dir / "ratings.csv")
    if user_sample != "all":
        ratings = ratings.subset(ratings.user % 2 == (1 if user_sample == "odd" else 0))
    split = temporal_split(ratings, test_share)
    if validation:
        split = temporal_split(split.train, test_share)
    users = split.users
    scored_on = "validation" if validation else "test"
    print(f"{data_dir.name}: {len(split.train)} train / {len(split.test)} {scored_on} ratings, {len(users)} users evaluated")
    recommendations: dict[str, dict[int, list[int]]] = {}
    seconds: dict[str, float] = {}

    def timed(name: str, run: Callable[[], dict[int, list[int]]]) -> None:
        started = time.perf_counter()
        recommendations[name] = run()
        seconds[name] = time.perf_counter() - started

    served_lists, served_seconds, model = service_recommendations(movies, split, users, k, pgdata, served, progress)
    for diversity in DIVERSITIES:
        recommendations[hybrid_name(diversity)] = served_lists[diversity]
        seconds[hybrid_name(diversity)] = served_seconds[diversity]
    train = baselines.TrainMatrix.from_ratings(split.train, [m.movie_id for m in movies])
    genres = preferred_genres(movies, split.train)
    timed("popularity", lambda: baselines.popularity(train, users, k))
    timed("seed_hybrid", lambda: baselines.seed_hybrid(train, genres, movies, users, k, progress))
    timed("implicit_itemknn", lambda: baselines.implicit_itemknn(train, users, k, progress))
    timed("implicit_als", lambda: baselines.implicit_als(train, users, k, progress))
    ease_lambda, ease_validation = baselines.choose_ease_lambda(split.train, train.movie_ids, k, progress)
    timed("ease", lambda: baselines.ease(train, users, k, ease_lambda))

    cold = split.cold_users
    movie_genres = {m.movie_id: frozenset(m.genres) for m in movies}

    def summarise(name: str, slice_users: list[int]) -> dict:
        summary = metrics.summarise(recommendations[name], split.relevant, slice_users, k)
        summary["ild"] = metrics.mean_intra_list_diversity(recommendations[name], movie_genres, slice_users, k)
        return summary

    result = {
        "dataset": data_dir.name,
        "k": k,
        "protocol": describe(test_share, user_sample, validation),
        "ease_lambda": {"chosen": ease_lambda, "validation_ndcg": {f"{v:g}": round(n, 4) for v, n in ease_validation.items()}},
        # What the refresh chose on its own validation slice of the train ratings.
        "refresh": model,
        "models": {},
    }
    for name in MODEL_NAMES:
        summary = summarise(name, users)
        summary["cold"] = summarise(name, cold)
        summary["seconds"] = round(seconds[name], 2)
        result["models"][name] = summary
    # The served model against the strongest baseline, user by user: is a gap more than noise?
    result["hybrid_minus_ease"] = {
        name: metrics.paired_difference(recommendations["hybrid"], recommendations["ease"], split.relevant, users, k, metric)
        for name, metric in (("ndcg", metrics.ndcg_at_k), ("recall", metrics.recall_at_k))
    }
    for diversity in DIVERSITIES:
        result["models"][hybrid_name(diversity)]["diversity"] = diversity
    print(report.refresh_line(result))
    print(report.table(result))
    print(report.comparison_line(result))
    if out_dir is not None:
        for path in report.write(result, Path(out_dir)):
            print(f"wrote {path}")
    return result


def service_recommendations(
    movies: list[Movie], split: Split, users: list[int], k: int, pgdata: Path, served: Served, progress: bool
) -> tuple[dict[float, dict[int, list[int]]], dict[float, float], dict]:
    """Import the train ratings, refresh, and ask the service for k recommendations per user,
    once per value in DIVERSITIES, all from the one served model.

    Returns the lists per diversity, the seconds each took (for diversity 0 from the import on:
    import, refresh, loading and its ranking pass; for the others their ranking pass only) and
    what the served model is (Served).
    """
    from database.schema import apply_schema
    from services.movielens_import import user_uuid

    started = time.perf_counter()
    databases = EvalDatabases(pgdata)
    try:
        urls = databases.recreate()
        print(f"our model: importing the train ratings into fresh databases on {databases.where}")
        apply_schema(urls, sources=True)
        import_data(movies, split.train, urls, progress)
        movie_of: dict[UUID, int] = {media_uuid(m.movie_id): m.movie_id for m in movies}
        lists: dict[float, dict[int, list[int]]] = {}
        seconds: dict[float, float] = {}
        with served(urls) as (recommender, model):
            for diversity in DIVERSITIES:
                pass_started = time.perf_counter()
                result = lists[diversity] = {}
                batches = range(0, len(users), BATCH_USERS)
                desc = f"recommending ({hybrid_name(diversity)})"
                for start in tqdm(batches, desc=desc, unit=" batches", disable=not progress):
                    batch = users[start : start + BATCH_USERS]
                    pages = recommender.recommend_many([user_uuid(u) for u in batch], limit=k, diversity=diversity)
                    for user in batch:
                        result[user] = [movie_of[item.media.id] for item in pages[user_uuid(user)].items]
                seconds[diversity] = time.perf_counter() - (started if diversity == 0 else pass_started)
        return lists, seconds, model
    finally:
        databases.close()
