"""The offline jobs, wired to their settings in one place (as app.py wires the web service).

The command line (ml_service/__main__.py), the demo, the evaluation and the tests call these.
Each opens the databases it needs for the one job and closes them at its end; connections
are named after the job and the machine (`application_name`), so that a DBA, or a second
refresh refused by the refresh lock, can tell who is running.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from pathlib import Path
from typing import Iterator

from database.catalog_repository import CatalogRepository
from database.engagement_repository import EngagementRepository
from database.experiment_repository import ExperimentRepository
from database.model_repository import ModelRepository
from database.pools import Databases, open_databases
from database.records import Experiment, InteractionWeights, ModelInfo
from database.schema import apply_schema
from database.user_repository import UserRepository
from services import model_settings, neighbours
from services import refresh as refresh_job
from services.model_settings import ModelSettings
from settings import DatabaseUrls, Settings

# Seconds an offline job waits for a database connection (it fails at once when the server
# refuses connections; this bounds a server that does not answer at all).
OFFLINE_CONNECT_WAIT = 10.0


@contextlib.contextmanager
def offline_databases(settings: Settings, job: str) -> Iterator[Databases]:
    """Pools for one offline job: no statement timeout (a refresh reads every interaction), and
    no connection opened before the job asks for one (`models` never connects to catalog_db)."""
    databases = open_databases(
        dataclasses.replace(settings, pool_min_size=0),
        statement_timeout_ms=0,
        pool_timeout=OFFLINE_CONNECT_WAIT,
        application_name=f"ml-service {job} ({socket.gethostname()}, pid {os.getpid()})",
    )
    try:
        yield databases
    finally:
        databases.close()


def init_db(urls: DatabaseUrls, sources: bool = False) -> list[str]:
    """Create the model schema (and with `sources` the source tables too); the files applied."""
    return apply_schema(urls, sources=sources)


def run_refresh(settings: Settings, progress: bool = False, force: bool = False,
                engine: refresh_job.Engine | None = None, publish: bool = True) -> int:
    """Build and publish a model with the databases in `settings`; returns its version.

    `engine` reads and sums the interactions (default: in this process; `spark_engine`).
    Raises services.refresh.RefreshFailed (or its ModelRejected) when nothing was published.
    """
    with offline_databases(settings, "refresh") as databases:
        return refresh_job.refresh(
            CatalogRepository(databases.catalog),
            EngagementRepository(databases.engagement, InteractionWeights.of(settings)),
            ModelRepository(databases.model),
            neighbour_settings=neighbour_settings(settings),
            half_life_days=settings.popularity_half_life_days,
            progress=progress,
            guard=refresh_job.Guard(max_shrink=settings.model_max_shrink, force=force),
            keep=settings.model_keep,
            engine=engine,
            publish=publish,
            users=UserRepository(databases.user),
            tune=tuning_of(settings),
        )


def tuning_of(settings: Settings) -> refresh_job.Tuning:
    """What a refresh with `settings` tunes (REFRESH_TUNE: the tunable settings not given
    explicitly) and how it gates (services/tuning.py, services/model_settings.py)."""
    tunable = frozenset()
    if settings.refresh_tune:
        tunable = frozenset(model_settings.TUNABLE) - model_settings.given(settings.explicit)
    return refresh_job.Tuning(ModelSettings.configured(settings), tunable, settings.refresh_tune_budget,
                              settings.quality_max_drop, settings.dislike_weight)


@contextlib.contextmanager
def spark_engine(settings: Settings, master: str | None = None, parquet: str | None = None,
                 conf: dict[str, str] | None = None, spark=None):
    """The refresh's Spark engine (services/spark_engine.py): the interactions of ENGAGEMENT_DB_URL
    over JDBC, or of the Parquet snapshot `parquet`; a SparkSession on `master` (default:
    spark-submit's, or local[*]) with the Spark settings `conf`, started before the refresh takes
    its lock and stopped at the end, unless `spark` gives one.

    Raises RefreshFailed when pyspark or the JDBC driver is missing or Spark does not start.
    """
    from services import spark_engine as engines

    if parquet:
        source = engines.ParquetSource(parquet)
    else:
        engines.jdbc_options(settings.databases.engagement)  # a URL JDBC cannot use fails before Spark starts
        source = engines.JdbcSource(settings.databases.engagement)
    session = spark if spark is not None else engines.start_session(master, conf)
    try:
        yield engines.SparkEngine(session, source, InteractionWeights.of(settings))
    finally:
        if spark is None:
            session.stop()


def neighbour_settings(settings: Settings) -> neighbours.NeighbourSettings:
    """How the refresh builds the neighbour table, from NEIGHBOURS_K, EASE_* and NEIGHBOURS_*."""
    return neighbours.NeighbourSettings(
        k=settings.neighbours_k,
        ease_lambda=settings.ease_lambda,
        ease_media=settings.ease_media,
        user_damping=settings.neighbours_user_damping,
        shrinkage=settings.neighbours_shrinkage,
        user_cap=settings.neighbours_user_cap,
    )


def model_history(settings: Settings) -> tuple[list[ModelInfo], int | None]:
    """The kept models, newest first, and the serving version."""
    with offline_databases(settings, "models") as databases:
        return ModelRepository(databases.model).builds()


def rollback(settings: Settings, version: int | None = None) -> tuple[int, int]:
    """Serve an earlier kept model (default: the one before the serving one); (from, to).

    Raises RefreshInProgress while a refresh runs, NoSuchModel for a version that is not kept.
    """
    with offline_databases(settings, "rollback") as databases:
        with ModelRepository(databases.model).refresh_lock() as writer:
            return writer.rollback(version)


def publish(settings: Settings, version: int) -> tuple[int | None, int]:
    """Serve the kept model `version` (built by `refresh --no-publish`, or any kept one); (from, to).

    Raises RefreshInProgress while a refresh runs, NoSuchModel for a version that is not kept.
    """
    with offline_databases(settings, "publish") as databases:
        with ModelRepository(databases.model).refresh_lock() as writer:
            return writer.rollback(version, allow_first=True)


def start_experiment(settings: Settings, name: str, variants: list[str], split: list[float] | None = None,
                     salt: str | None = None) -> Experiment:
    """Define and start an experiment (services/experiments/assignment.py: define); the workers
    serve it within MODEL_RELOAD_INTERVAL. Raises ExperimentError for a malformed definition or
    a variant's model that is not kept, ExperimentExists when one runs or the name is taken."""
    from services.experiments.assignment import ExperimentError, define

    experiment = define(name, variants, split, salt)
    with offline_databases(settings, "experiments") as databases:
        if experiment.model_versions:
            builds, _ = ModelRepository(databases.model).builds()
            kept = [info.version for info in builds]
            for version in experiment.model_versions:
                if version not in kept:
                    raise ExperimentError(
                        f"model version {version} is not kept (kept: {', '.join(map(str, kept)) or 'none'}); "
                        "build one with: python -m ml_service refresh --no-publish"
                    )
        return ExperimentRepository(databases.model).start(experiment)


def list_experiments(settings: Settings) -> list[Experiment]:
    """Every experiment, the most recently started first."""
    with offline_databases(settings, "experiments") as databases:
        return ExperimentRepository(databases.model).all()


def stop_experiment(settings: Settings, name: str) -> Experiment:
    """Stop the running experiment `name` (NoSuchExperiment when it is not running)."""
    with offline_databases(settings, "experiments") as databases:
        return ExperimentRepository(databases.model).stop(name)


def experiment_report(settings: Settings, name: str, window_hours: float) -> dict:
    """The report of experiment `name` (services/experiments/report.py): its impressions from the
    model database, its exposed users' interactions from engagement_db."""
    from datetime import timezone

    from services.experiments import report

    with offline_databases(settings, "experiments report") as databases:
        experiments = ExperimentRepository(databases.model)
        experiment = experiments.get(name)
        shown = report.Shown.of(experiments.shown(experiment, experiment.started_at, None))
        engagement = EngagementRepository(databases.engagement, InteractionWeights.of(settings))
        since = experiment.started_at.astimezone(timezone.utc).replace(tzinfo=None)  # interactions are UTC, naive
        return report.build(experiment, shown, lambda users: engagement.positive_interactions(users, since),
                            window_hours)


def evaluate(data_dir: Path, k: int, out_dir: Path | None, pgdata: Path, progress: bool = False, **split) -> dict:
    """The offline evaluation, our model served through the production path (see services/evaluation/run.py);
    `split` takes services.evaluation.run.evaluate's test_share, user_sample and validation."""
    from ml_service.app import build_runtime
    from services.evaluation.run import evaluate as run_evaluation

    @contextlib.contextmanager
    def served(urls: DatabaseUrls):
        # The service's settings from the environment (tuning knobs included), on the eval databases.
        env = {
            **os.environ,
            "IMPRESSION_RETENTION_DAYS": "0",  # an offline evaluation shows nobody anything
            "USER_DB_URL": urls.user,
            "CATALOG_DB_URL": urls.catalog,
            "ENGAGEMENT_DB_URL": urls.engagement,
            "MODEL_DB_URL": urls.model,
        }
        settings = Settings.from_env(env)
        run_refresh(settings, progress)
        runtime = build_runtime(settings)
        # A worker opens its pools in the background; on a busy machine the first connections
        # can take longer than a request's deadline, and an offline job has no reason to race them.
        for database in runtime.databases.by_name().values():
            database.pool.wait(OFFLINE_CONNECT_WAIT)
        try:
            model = runtime.models.current()
            yield runtime.recommender, {
                "version": model.info.version,
                "settings": runtime.recommender.settings_for(model).as_dict(),
                "validation": model.info.validation,
            }
        finally:
            runtime.close()

    return run_evaluation(data_dir, k, out_dir, pgdata, served, progress, **split)
