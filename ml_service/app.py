"""The application factory: the one place that wires settings, pools, repositories and services."""

from __future__ import annotations

import os
from dataclasses import dataclass

from flask import Flask

from database.catalog_repository import CatalogRepository
from database.engagement_repository import EngagementRepository
from database.experiment_repository import ExperimentRepository
from database.model_repository import ModelRepository
from database.pools import Databases, open_databases
from database.records import InteractionWeights
from database.user_repository import UserRepository
from ml_service.errors import register_error_handlers
from ml_service.liveness import register_liveness
from ml_service.metrics import register_metrics
from ml_service.openapi import register_api
from ml_service.request_log import current_request_id, register_request_logging
from ml_service.security import register_security
from services import model_settings
from services.catalog_sync import CatalogSync
from services.fallback_model import FallbackModels
from services.impressions import ImpressionLog, RecordingRecommender
from services.model_store import ModelStore
from services.recommendation_service import RecommendationService
from services.model_settings import ModelSettings
from services.shared_models import SharedModels
from settings import Settings

MAX_BODY_BYTES = 64 * 1024
# Seconds a new worker waits for its first model load before it serves (from a stand-in
# until the load ends); under Gunicorn's worker timeout, which applies while a worker boots.
MODEL_BOOT_WAIT = 20.0


@dataclass(frozen=True)
class Runtime:
    """What the views reach through `current_app.extensions["ml_service"]`."""

    settings: Settings
    databases: Databases
    models: ModelStore
    recommender: RecommendationService
    impressions: ImpressionLog

    def close(self) -> None:
        """Stop the model loader, write the impressions still queued, stop the probes and release
        the database connections."""
        self.models.close()
        self.impressions.close()
        self.databases.close()


def build_runtime(settings: Settings, databases: Databases | None = None) -> Runtime:
    """Build the service on `databases` (opened from `settings` by default); also used offline.

    Starts the model loader and returns once it loaded a model or failed a first time (at most
    MODEL_BOOT_WAIT seconds). With MODEL_SHARE_DIR in the environment (Gunicorn's workers: see
    ml_service/gunicorn.conf.py), the model is mapped from a file all the workers share.
    """
    databases = databases or open_databases(settings)
    catalog = CatalogRepository(databases.catalog)
    experiments = ExperimentRepository(databases.model)
    models = ModelStore(
        ModelRepository(databases.model),
        settings.model_reload_interval,
        max_age_hours=settings.model_max_age_hours,
        catalog_sync=CatalogSync(catalog),
        sync_interval=settings.catalog_sync_interval,
        experiments=experiments,
        shared=SharedModels(os.environ["MODEL_SHARE_DIR"]) if os.environ.get("MODEL_SHARE_DIR") else None,
    )
    engagement = EngagementRepository(databases.engagement, InteractionWeights.of(settings))
    recommender = RecommendationService(
        users=UserRepository(databases.user),
        catalog=catalog,
        engagement=engagement,
        models=models,
        configured=ModelSettings.configured(settings),
        given=model_settings.given(settings.explicit),
        dislike_weight=settings.dislike_weight,
        fallback=FallbackModels(engagement, catalog),
        deadline_seconds=settings.request_deadline_ms / 1000,
    )
    impressions = ImpressionLog(experiments, settings.impression_queue_size, settings.impression_retention_days)
    models.start(wait=MODEL_BOOT_WAIT)
    impressions.start()
    recorded = RecordingRecommender(recommender, impressions, current_request_id)
    return Runtime(settings, databases, models, recorded, impressions)


class ServiceFlask(Flask):
    """Flask, asking whether a view or hook is a coroutine function once per function.

    Flask asks it of every hook and view on every request (`ensure_sync`: `inspect` work, 16
    times per request here); the answer never changes for a function.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._synced: dict = {}

    def ensure_sync(self, func):
        try:
            return self._synced[func]
        except KeyError:
            synced = self._synced[func] = super().ensure_sync(func)
            return synced


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app. Call it in the process that serves (after Gunicorn's fork)."""
    settings = settings or Settings.from_env()
    app = ServiceFlask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    app.extensions["ml_service"] = build_runtime(settings)
    register_liveness(app, settings.request_deadline_ms / 1000)
    register_api(app)  # the routes, /openapi.json and /docs
    register_error_handlers(app)
    register_metrics(app)
    register_request_logging(app)
    register_security(app, settings)
    return app
