"""Prometheus metrics at /metrics: HTTP requests by URL rule, recommendations, pools, model age.

Under Gunicorn every worker writes its samples to files in PROMETHEUS_MULTIPROC_DIR (prepared
and cleaned by gunicorn.conf.py before the workers start) and whichever worker answers
/metrics adds up the files of all workers; gunicorn.conf.py's child_exit hook marks a dead
worker so that its "live" gauges disappear. Without that variable (the Flask test client, a
single process) each app has a registry of its own.

Requests are labelled by URL rule (`/api/recommendations/<user_id:user_id>`), never by path, so user
ids never become label values.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Iterable

from flask import Flask, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_flask_exporter import PrometheusMetrics
from prometheus_flask_exporter.multiprocess import GunicornInternalPrometheusMetrics

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Seconds between a worker's updates of its pool and model gauges while it serves requests.
GAUGE_REFRESH_SECONDS = 1.0


class ServiceMetrics:
    """The service's own metrics (the exporter adds flask_http_request_* itself)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.recommendation_seconds = Histogram(
            "ml_recommendation_duration_seconds",
            "Time spent ranking recommendations (queries + scoring), per endpoint",
            ["endpoint"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.items = Counter(
            "ml_recommended_items_total", "Recommended items served, by source (hybrid or popular)", ["source"], registry=r
        )
        self.pages = Counter(
            "ml_recommendation_pages_total",
            "Pages served per user and endpoint, by how much popular fallback filled them (none, partial, full)",
            ["endpoint", "fallback"], registry=r,
        )
        self.degraded = Counter(
            "ml_degraded_responses",
            "Answers served without some part, by what was missing (user_db, engagement_db, model, model_stale)",
            ["missing"], registry=r,
        )
        self.experiment_answers = Counter(
            "ml_experiment_answers", "Pages answered per user in the running experiment, by experiment and variant",
            ["experiment", "variant"], registry=r,
        )
        self.impressions_written = Counter(
            "ml_impressions_written", "Impressions (answered pages) written to the model database", registry=r
        )
        self.impressions_dropped = Counter(
            "ml_impressions_dropped",
            "Impressions lost: the oldest beyond IMPRESSION_QUEUE_SIZE while the model database was slow or down",
            registry=r,
        )
        pool = ["database"]
        # Gauges: "livesum" adds up the live workers, and forgets a worker once it has exited.
        self.pool_max = Gauge("ml_db_pool_max_connections", "Pool size limit, summed over workers", pool,
                              multiprocess_mode="livesum", registry=r)
        self.pool_size = Gauge("ml_db_pool_connections", "Open connections, summed over workers", pool,
                               multiprocess_mode="livesum", registry=r)
        self.pool_in_use = Gauge("ml_db_pool_connections_in_use", "Connections lent to requests, summed over workers",
                                 pool, multiprocess_mode="livesum", registry=r)
        self.pool_requests = Counter("ml_db_pool_requests", "Connections requested from the pool", pool, registry=r)
        self.pool_waits = Counter("ml_db_pool_waits", "Requests that had to wait for a connection", pool, registry=r)
        self.pool_wait_seconds = Counter("ml_db_pool_wait_seconds", "Time spent waiting for a connection", pool,
                                         registry=r)
        self.pool_timeouts = Counter("ml_db_pool_errors", "Requests that got no connection (timeout, pool closed)",
                                     pool, registry=r)
        self.db_unavailable = Gauge("ml_db_unavailable_workers",
                                    "Live workers that have the database marked down (skipped until a probe succeeds)",
                                    pool, multiprocess_mode="livesum", registry=r)
        self.model_version = Gauge("ml_model_version", "Lowest model version any live worker serves",
                                   multiprocess_mode="livemin", registry=r)
        # Equal to ml_model_version once every worker serves the same model (after a refresh or
        # a rollback: within MODEL_RELOAD_INTERVAL).
        self.model_version_max = Gauge("ml_model_version_max", "Highest model version any live worker serves",
                                       multiprocess_mode="livemax", registry=r)
        self.model_built = Gauge("ml_model_built_timestamp_seconds",
                                 "Build time (Unix seconds) of the oldest model any live worker serves",
                                 multiprocess_mode="livemin", registry=r)
        self.model_age = Gauge("ml_model_age_seconds",
                               "Age of the oldest model any live worker serves, as of that worker's last update "
                               "(at most a second old while it serves requests)",
                               multiprocess_mode="livemax", registry=r)
        # The served model's quality on its refresh's validation slice (NaN: not measured). Every
        # worker reports its own about once a second; they agree once all serve the same version.
        self.model_validation = {
            key: Gauge(f"ml_model_validation_{key}", f"{what} of the served model on its refresh's validation slice "
                       "(as the worker that reported last serves it)", multiprocess_mode="livemostrecent", registry=r)
            for key, what in (("ndcg", "NDCG@10"), ("recall", "Recall@10"), ("user_coverage", "User coverage"))
        }
        self._pool_cache: dict = {}
        self.workers_without_model = Gauge("ml_workers_without_model", "Live workers that have no model loaded",
                                           multiprocess_mode="livesum", registry=r)

    def observe_degraded(self, degraded: Iterable[str]) -> None:
        """Count one degraded answer under each part it lacked."""
        for missing in degraded:
            self.degraded.labels(missing).inc()

    def observe_pages(self, endpoint: str, pages: Iterable[Any]) -> None:
        """Count the items of each page by source, and each page by how much fallback it needed."""
        items = {"hybrid": 0, "popular": 0}
        fallbacks = {"none": 0, "partial": 0, "full": 0}
        variants: dict[tuple[str, str], int] = {}
        for page in pages:
            if page.experiment is not None:
                key = (page.experiment.name, page.experiment.variant)
                variants[key] = variants.get(key, 0) + 1
            popular = sum(item.source == "popular" for item in page.items)
            hybrid = len(page.items) - popular
            items["hybrid"] += hybrid
            items["popular"] += popular
            fallbacks["none" if popular == 0 else ("full" if hybrid == 0 else "partial")] += 1
        # One update per label, not per page: each is a write to this worker's metrics file.
        for source, count in items.items():
            if count:
                self.items.labels(source).inc(count)
        for fallback, count in fallbacks.items():
            if count:
                self.pages.labels(endpoint, fallback).inc(count)
        for (experiment, variant), count in variants.items():
            self.experiment_answers.labels(experiment, variant).inc(count)

    def update_pools(self, databases) -> None:
        """Move the pools' counters (reset by pop_stats) into ours and set the gauges (see GAUGE_REFRESH_SECONDS)."""
        for name, db in databases.by_name().items():
            stats = db.pool.pop_stats()
            gauges, counters = self._pool_children(name)
            size = stats.get("pool_size", 0)
            values = (stats.get("pool_max", 0), size, size - stats.get("pool_available", 0), 0 if db.available else 1)
            for gauge, value in zip(gauges, values):
                gauge.set(value)
            for counter, key, scale in counters:
                if stats.get(key):
                    counter.inc(stats[key] * scale)

    def _pool_children(self, name: str):
        # Labelled children looked up once per database: this runs about once a second.
        children = self._pool_cache.get(name)
        if children is None:
            gauges = (
                self.pool_max.labels(name), self.pool_size.labels(name), self.pool_in_use.labels(name),
                self.db_unavailable.labels(name),
            )
            counters = (
                (self.pool_requests.labels(name), "requests_num", 1),
                (self.pool_waits.labels(name), "requests_queued", 1),
                (self.pool_wait_seconds.labels(name), "requests_wait_ms", 0.001),
                (self.pool_timeouts.labels(name), "requests_errors", 1),
            )
            children = self._pool_cache[name] = (gauges, counters)
        return children

    def update_model(self, model) -> None:
        """Report the model this worker has in memory (None: none loaded yet)."""
        if model is None:
            self.workers_without_model.set(1)
            return
        self.workers_without_model.set(0)
        built = model.info.built_at.timestamp()
        self.model_version.set(model.info.version)
        self.model_version_max.set(model.info.version)
        self.model_built.set(built)
        self.model_age.set(max(0.0, time.time() - built))
        validation = model.info.validation or {}
        for key, gauge in self.model_validation.items():
            gauge.set(validation.get(key, math.nan))


class InstrumentedRecommender:
    """Wraps the recommendation service: times each call and counts what it served."""

    def __init__(self, inner, metrics: ServiceMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def recommend(self, *args, **kwargs):
        """RecommendationService.recommend, measured as endpoint "single"."""
        with self._metrics.recommendation_seconds.labels("single").time():
            page = self._inner.recommend(*args, **kwargs)
        self._metrics.observe_pages("single", [page])
        self._metrics.observe_degraded(page.degraded)
        return page

    def recommend_many(self, *args, **kwargs):
        """RecommendationService.recommend_many, measured as endpoint "batch"."""
        with self._metrics.recommendation_seconds.labels("batch").time():
            pages = self._inner.recommend_many(*args, **kwargs)
        self._metrics.observe_pages("batch", pages.values())
        # One answer for the batch: every page of it lacks the same parts.
        self._metrics.observe_degraded(next(iter(pages.values())).degraded if pages else ())
        return pages

    def similar(self, *args, **kwargs):
        """RecommendationService.similar, counted in its experiment (when ordered for a user)."""
        page = self._inner.similar(*args, **kwargs)
        if page.experiment is not None:
            self._metrics.experiment_answers.labels(page.experiment.name, page.experiment.variant).inc()
        return page

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


def register_metrics(app: Flask) -> ServiceMetrics:
    """Serve /metrics and instrument requests, the recommender, the pools and the model."""
    registry = CollectorRegistry()
    options = dict(group_by="url_rule", registry=registry, buckets=LATENCY_BUCKETS)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        exporter = GunicornInternalPrometheusMetrics(app, **options)
    else:
        exporter = PrometheusMetrics(app, **options)
    metrics = ServiceMetrics(exporter.registry)
    runtime = app.extensions["ml_service"]
    runtime = dataclasses.replace(runtime, recommender=InstrumentedRecommender(runtime.recommender, metrics))
    app.extensions["ml_service"] = runtime
    app.extensions["ml_service.metrics"] = metrics
    metrics.update_pools(runtime.databases)
    metrics.update_model(runtime.models.loaded)
    runtime.impressions.observe(dropped=metrics.impressions_dropped.inc, written=metrics.impressions_written.inc)
    # Each worker reports a model as soon as its loader swaps it in, requests or not.
    runtime.models.on_load(metrics.update_model)

    last_refresh = [time.monotonic()]

    def refresh_gauges() -> None:
        current = app.extensions["ml_service"]
        metrics.update_pools(current.databases)
        metrics.update_model(current.models.loaded)
        last_refresh[0] = time.monotonic()

    @app.before_request
    def before_scrape():
        # The worker that answers a scrape reports its own state as of now.
        if request.url_rule is not None and request.url_rule.rule == "/metrics":
            refresh_gauges()

    @app.after_request
    def after_request(response):
        # The other workers report theirs at most GAUGE_REFRESH_SECONDS late: refreshing after
        # every request cost more than a /health answer itself (counters lose nothing meanwhile).
        if time.monotonic() - last_refresh[0] >= GAUGE_REFRESH_SECONDS:
            refresh_gauges()
        return response

    return metrics
