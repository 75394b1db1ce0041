"""Command line: python -m ml_service {init-db, import-movielens, generate-synthetic, refresh, demo, evaluate}."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ml_service.config import ConfigError, Settings


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m ml_service", description="ml-service commands")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init-db", help="create the tables and indexes that are missing (idempotent)")
    importer = commands.add_parser("import-movielens", help="load a MovieLens directory (ratings.csv, movies.csv)")
    importer.add_argument("directory", type=Path)
    synthetic = commands.add_parser("generate-synthetic", help="write a synthetic data set (MovieLens-25M size by default)")
    synthetic.add_argument("--users", type=int, default=162_000)
    synthetic.add_argument("--media", type=int, default=59_000)
    synthetic.add_argument("--interactions", type=int, default=25_000_000)
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--replace", action="store_true", help="empty the tables first instead of refusing")
    commands.add_parser("refresh", help="rebuild the neighbour table and popularity, publish them atomically")
    demo = commands.add_parser("demo", help="embedded PostgreSQL + bundled MovieLens + Gunicorn on :5000")
    demo.add_argument("--data", type=Path, default=Path("data/ml-latest-small"))
    demo.add_argument("--pgdata", type=Path, default=Path(".demo/pgdata"))
    demo.add_argument("--bind", default="127.0.0.1:5000")
    evaluate = commands.add_parser(
        "evaluate", help="offline evaluation of the service against baselines on a temporal split (requirements-eval.txt)"
    )
    evaluate.add_argument("--data", type=Path, default=Path("data/ml-latest-small"), help="a MovieLens directory")
    evaluate.add_argument("--k", type=int, default=10, help="list length the metrics are computed at")
    evaluate.add_argument("--out", type=Path, help="directory for metrics.json, report.md and ndcg.png")
    evaluate.add_argument("--pgdata", type=Path, default=Path(".eval/pgdata"), help="embedded server directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    if args.command == "demo":
        from ml_service.demo import run_demo

        return run_demo(args.data, args.pgdata, args.bind)
    if args.command == "evaluate":
        if args.k < 1:
            parser.error("--k must be at least 1")
        from services.evaluation.run import evaluate as run_evaluation

        run_evaluation(args.data, args.k, args.out, args.pgdata)
        return 0
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    if args.command == "init-db":
        from database.schema import apply_schema

        for filename in apply_schema(settings.databases):
            print(f"applied {filename}")
    elif args.command == "import-movielens":
        from services.movielens_import import import_movielens

        summary = import_movielens(args.directory, settings.databases)
        print(f"imported {summary.media} media, {summary.users} users, {summary.interactions} interactions")
    elif args.command == "generate-synthetic":
        from services.synthetic import generate_synthetic

        try:
            summary = generate_synthetic(
                settings.databases, args.users, args.media, args.interactions, args.seed, replace=args.replace
            )
        except ValueError as error:
            print(f"generate-synthetic: {error}", file=sys.stderr)
            return 2
        print(
            f"generated {summary.media} media, {summary.users} users, {summary.interactions} interactions "
            f"({summary.pairs} user-media pairs)"
        )
    elif args.command == "refresh":
        from services.refresh import RefreshFailed

        try:
            version = run_refresh(settings)
        except RefreshFailed as error:
            print(f"refresh: {error}", file=sys.stderr)
            return 1
        print(f"published model version {version}")
    return 0


def run_refresh(settings: Settings, progress: bool = True) -> int:
    """Build and publish a model with the databases in `settings`; returns its version."""
    from database.catalog_repository import CatalogRepository
    from database.engagement_repository import EngagementRepository
    from database.model_repository import ModelRepository
    from database.pools import open_databases
    from services.refresh import refresh

    # Offline work: no statement timeout (it reads every interaction).
    databases = open_databases(settings, statement_timeout_ms=0, pool_timeout=60.0)
    try:
        return refresh(
            CatalogRepository(databases.catalog),
            EngagementRepository(databases.engagement),
            ModelRepository(databases.model),
            neighbours_k=settings.neighbours_k,
            user_damping=settings.neighbours_user_damping,
            shrinkage=settings.neighbours_shrinkage,
            half_life_days=settings.popularity_half_life_days,
            progress=progress,
        )
    finally:
        databases.close()


if __name__ == "__main__":
    sys.exit(main())
