"""Per-user scoring cost with raw vs centred history weighting, measured in one run.

Builds the model of ml-latest-small in memory (the refresh job's functions) and times
services.scoring.user_signals + rank_for_user for every user, alternating the two settings
in rounds so that machine noise hits both alike. Usage: python bench/scoring_latency.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eval_quick import build_model, histories  # noqa: E402

from services import scoring  # noqa: E402
from services.movielens_import import preferred_genres, read_movies, read_ratings  # noqa: E402
from settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/ml-latest-small")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    movies = read_movies(Path(args.data) / "movies.csv")
    ratings = read_ratings(Path(args.data) / "ratings.csv")
    settings = Settings.from_env({"USER_DB_URL": "x", "CATALOG_DB_URL": "x", "ENGAGEMENT_DB_URL": "x"})
    model, _ = build_model(movies, ratings, settings)
    genres = preferred_genres(movies, ratings)
    hist = histories(ratings)
    users = sorted(hist)
    weights = scoring.Weights(settings.content_weight, settings.collaborative_weight)
    timings: dict[str, list[float]] = {"raw": [], "centred": []}
    for _ in range(args.rounds):
        for mode in timings:
            started = time.perf_counter()
            for user in users:
                signals = scoring.user_signals(model, genres.get(user, ()), hist[user], mode)
                scoring.rank_for_user(model, signals, weights, 30)
            timings[mode].append((time.perf_counter() - started) / len(users) * 1e3)
    sizes = [len(hist[u].media_ids) for u in users]
    print(f"{len(users)} users, history {min(sizes)}-{max(sizes)} interactions (median {statistics.median(sizes)})")
    for mode, values in timings.items():
        print(f"{mode:8s} median {statistics.median(values):.3f} ms/user over {args.rounds} rounds (min {min(values):.3f})")
    ratio = statistics.median(timings["centred"]) / statistics.median(timings["raw"])
    print(f"centred / raw: {ratio:.3f}")


if __name__ == "__main__":
    main()
