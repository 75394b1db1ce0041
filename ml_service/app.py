"""The application factory: the one place that wires settings, pools, repositories and services."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from database.catalog_repository import CatalogRepository
from database.engagement_repository import EngagementRepository
from database.model_repository import ModelRepository
from database.pools import Pools, open_pools
from database.user_repository import UserRepository
from ml_service.api import health, recommendations
from ml_service.config import Settings
from ml_service.errors import register_error_handlers
from ml_service.metrics import register_metrics
from ml_service.openapi import register_openapi
from ml_service.request_log import register_request_logging
from services.model_store import ModelStore
from services.recommendation_service import RecommendationService
from services.scoring import Weights

MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Runtime:
    """What the views reach through `current_app.extensions["ml_service"]`."""

    settings: Settings
    pools: Pools
    models: ModelStore
    recommender: RecommendationService

    def close(self) -> None:
        """Release the database connections."""
        self.pools.close()


def build_runtime(settings: Settings, pools: Pools | None = None) -> Runtime:
    """Build the service on `pools` (opened from `settings` by default); also used offline."""
    pools = pools or open_pools(settings)
    models = ModelStore(ModelRepository(pools.model), settings.model_reload_interval)
    recommender = RecommendationService(
        users=UserRepository(pools.user),
        catalog=CatalogRepository(pools.catalog),
        engagement=EngagementRepository(pools.engagement),
        models=models,
        weights=Weights(content=settings.content_weight, collaborative=settings.collaborative_weight),
        history_weighting=settings.history_weighting,
    )
    return Runtime(settings, pools, models, recommender)


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app. Call it in the process that serves (after Gunicorn's fork)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    app.extensions["ml_service"] = build_runtime(settings)
    app.register_blueprint(health.bp)
    app.register_blueprint(recommendations.bp)
    register_error_handlers(app)
    register_openapi(app)
    register_metrics(app)
    register_request_logging(app)
    return app
