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
from ml_service.security import register_security
from services.availability import Availability, Breaker
from services.fallback_model import FallbackModels
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
    availability: Availability

    def close(self) -> None:
        """Stop the availability probes and release the database connections."""
        self.availability.close()
        self.pools.close()


def build_runtime(settings: Settings, pools: Pools | None = None) -> Runtime:
    """Build the service on `pools` (opened from `settings` by default); also used offline."""
    pools = pools or open_pools(settings)
    availability = availability_of(pools, settings.db_probe_interval)
    models = ModelStore(
        ModelRepository(pools.model),
        settings.model_reload_interval,
        breaker=availability["model_db"],
        max_age_hours=settings.model_max_age_hours,
    )
    catalog = CatalogRepository(pools.catalog)
    engagement = EngagementRepository(pools.engagement)
    recommender = RecommendationService(
        users=UserRepository(pools.user),
        catalog=catalog,
        engagement=engagement,
        models=models,
        weights=Weights(content=settings.content_weight, collaborative=settings.collaborative_weight),
        history_weighting=settings.history_weighting,
        availability=availability,
        fallback=FallbackModels(engagement, catalog, availability),
    )
    return Runtime(settings, pools, models, recommender, availability)


def availability_of(pools: Pools, probe_interval: float) -> Availability:
    """One breaker per distinct pool; model_db shares engagement_db's when they are one pool."""
    by_pool: dict[int, Breaker] = {}
    breakers = {}
    for name, pool in pools.by_name().items():
        breakers[name] = by_pool.setdefault(id(pool), Breaker.for_pool(name, pool, probe_interval))
    return Availability(breakers)


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
    register_security(app, settings)
    return app
