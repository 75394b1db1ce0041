"""Settings: one frozen dataclass built from the environment.

A top-level module, so that every layer (database, services, the web app, the jobs) imports it
without importing the layers above it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from typing import Mapping

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


class ConfigError(ValueError):
    """A setting is missing or malformed; raised at start-up with a message naming it."""


@dataclass(frozen=True)
class DatabaseUrls:
    """Connection strings of the three source databases and of the model tables."""

    user: str
    catalog: str
    engagement: str
    # The derived tables (schema `ml`) live in engagement_db unless MODEL_DB_URL says otherwise.
    model: str


@dataclass(frozen=True)
class Settings:
    """Everything the service, the refresh job and the importer read from the environment."""

    databases: DatabaseUrls
    # Pool sizing is per Gunicorn worker: each worker runs `threads` requests at once, and a
    # request holds one connection at a time, so threads + 1 never makes a request wait.
    pool_min_size: int = 1
    pool_max_size: int = 4
    # Every request's database work ends within this (milliseconds), whatever a database does:
    # an optional database that misses its share is left out (degraded answer), catalog_db
    # answers 503. It is also the server-side statement_timeout of request-path queries.
    request_deadline_ms: int = 1000
    # Seconds between reconnection probes of a database found unavailable; requests skip it
    # (degraded answers) until a probe succeeds.
    db_probe_interval: float = 0.5
    # The hybrid blend (chosen on a validation split: see docs/evaluation.md).
    content_weight: float = 0.1
    collaborative_weight: float = 0.9
    # Neighbours kept per media by the refresh job.
    neighbours_k: int = 100
    # The neighbour table is EASE's item-item weights for the EASE_MEDIA media with the most
    # positive users (regularisation EASE_LAMBDA; a dense EASE_MEDIA² matrix of float64 in
    # the refresh) and damped cosine similarity for the other media; EASE_MEDIA=0: cosine only.
    ease_lambda: float = 200.0
    ease_media: int = 10_000
    # Cosine similarity: each user's co-interactions count 1 / ln(1 + their positive media)
    # to this power (0: every user counts 1), and the cosine denominator gets this shrinkage
    # added, so pairs seen together by few users rank below well-supported ones.
    neighbours_user_damping: float = 1.0
    neighbours_shrinkage: float = 2.0
    # Each user's most recent positive media (and liked media) counted in the neighbour sums,
    # at most this many (0: all of them): the build's work grows as the sum over users of
    # their media squared, and a few very active users (or bots) can dominate it.
    neighbours_user_cap: int = 0
    # How a user's interaction values weigh their positive media: "centred" on the user's
    # own mean and spread, or "raw".
    history_weighting: str = "centred"
    # Each LIKE's and WATCH's value is multiplied by its type's weight (0: that type is no
    # positive signal, in the refresh as in requests). DISLIKE_WEIGHT > 0 makes a disliked
    # media lower its neighbours' collaborative scores (0: a dislike only excludes the media).
    like_weight: float = 1.0
    watch_weight: float = 1.0
    dislike_weight: float = 0.0
    # Seconds between a worker's looks for media added to catalog_db since its model was
    # built: they become recommendable by genre match without a refresh.
    catalog_sync_interval: float = 60.0
    # Popularity counts a positive interaction with weight 0.5 ** (age / half-life), the age
    # measured from the newest interaction in the data, not from the wall clock.
    popularity_half_life_days: float = 365.0
    # Seconds between a worker's checks of which model serves (ml.serving): a refresh or a
    # rollback reaches every worker within this, with or without traffic.
    model_reload_interval: float = 10.0
    # A refresh refuses to publish a model that has lost more than this share of the serving
    # model's media or interactions (or has none), unless run with --force.
    model_max_shrink: float = 0.5
    # A refresh measures its model on a validation slice of the data (some users' newest positive
    # interactions held out) and tunes EASE_LAMBDA, NEIGHBOURS_K, the blend and HISTORY_WEIGHTING
    # there (those not given in the environment), within REFRESH_TUNE_BUDGET seconds; false: it
    # measures the given settings only (services/tuning.py).
    refresh_tune: bool = True
    refresh_tune_budget: float = 270.0
    # A refresh refuses to publish a model whose validation NDCG@10 is below the serving model's
    # settings' on the same slice by more than this share, unless run with --force.
    quality_max_drop: float = 0.05
    # Published models kept in the model database for `rollback` (the serving one is always kept).
    model_keep: int = 3
    # A loaded model built longer ago than this (hours) is reported as degraded "model_stale"
    # (the refresh job is not running); 0 turns the check off.
    model_max_age_hours: float = 0.0
    # Comma-separated API keys; when set, every /api/ call needs one in X-API-Key.
    api_keys: str = ""
    # Key required in X-API-Key for /metrics; empty leaves /metrics open (e.g. to the cluster).
    metrics_api_key: str = ""
    # flask-limiter limit per API key (or client address without one), e.g. "100/second;2000/minute";
    # empty turns rate limiting off.
    rate_limit: str = ""
    # Where the limiter keeps its counters: memory:// (per worker) or redis://host:port/db.
    rate_limit_storage_url: str = ""
    # Comma-separated origins allowed by CORS (e.g. https://app.example.com); empty: no CORS headers.
    cors_origins: str = ""
    # Answered pages (impressions, for experiments' reports) are kept this many days in the model
    # database, in daily partitions dropped whole; 0 records none.
    impression_retention_days: int = 30
    # Impressions a worker holds for its writer while the model database is slow or down: beyond
    # this, the oldest are dropped (and counted in ml_impressions_dropped_total).
    impression_queue_size: int = 100_000
    log_level: str = "INFO"
    # How the offline commands (refresh, import, ...) log: "text" lines or "json" objects as
    # the service writes them. Gunicorn always logs JSON.
    log_format: str = "text"
    # The settings given explicitly (from the environment: their field names), which a refresh
    # does not tune (services/model_settings.py); not part of what the settings are.
    explicit: frozenset[str] = field(default=frozenset(), compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """Read the environment; raise ConfigError naming any missing or malformed variable."""
        env = os.environ if env is None else env
        missing = [name for name in ("USER_DB_URL", "CATALOG_DB_URL", "ENGAGEMENT_DB_URL") if not env.get(name)]
        if missing:
            raise ConfigError(f"missing required environment variable(s): {', '.join(missing)}")
        for name in ("USER_DB_URL", "CATALOG_DB_URL", "ENGAGEMENT_DB_URL", "MODEL_DB_URL"):
            if env.get(name):
                _check_url(name, env[name])
        databases = DatabaseUrls(
            user=env["USER_DB_URL"],
            catalog=env["CATALOG_DB_URL"],
            engagement=env["ENGAGEMENT_DB_URL"],
            model=env.get("MODEL_DB_URL") or env["ENGAGEMENT_DB_URL"],
        )
        values: dict[str, object] = {}
        for f in fields(cls):
            if f.name in ("databases", "explicit"):
                continue
            name = f.name.upper()
            if name in env and env[name] != "":
                values[f.name] = _parse(name, env[name], type(f.default))
        settings = cls(databases=databases, explicit=frozenset(values), **values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Reject values that would make the service misbehave later rather than at start-up."""
        if not 1 <= self.pool_min_size <= self.pool_max_size:
            raise ConfigError("need 1 <= POOL_MIN_SIZE <= POOL_MAX_SIZE")
        if self.content_weight < 0 or self.collaborative_weight < 0:
            raise ConfigError("CONTENT_WEIGHT and COLLABORATIVE_WEIGHT must be >= 0")
        if self.neighbours_k < 1:
            raise ConfigError("NEIGHBOURS_K must be >= 1")
        if self.ease_lambda <= 0 or self.ease_media < 0:
            raise ConfigError("need EASE_LAMBDA > 0 and EASE_MEDIA >= 0")
        if self.neighbours_user_damping < 0 or self.neighbours_shrinkage < 0:
            raise ConfigError("NEIGHBOURS_USER_DAMPING and NEIGHBOURS_SHRINKAGE must be >= 0")
        if self.neighbours_user_cap < 0:
            raise ConfigError("NEIGHBOURS_USER_CAP must be >= 0 (0: no cap)")
        if min(self.like_weight, self.watch_weight, self.dislike_weight) < 0:
            raise ConfigError("LIKE_WEIGHT, WATCH_WEIGHT and DISLIKE_WEIGHT must be >= 0")
        if self.catalog_sync_interval <= 0:
            raise ConfigError("CATALOG_SYNC_INTERVAL must be > 0")
        if self.history_weighting not in ("centred", "raw"):
            raise ConfigError("HISTORY_WEIGHTING must be centred or raw")
        if self.popularity_half_life_days <= 0:
            raise ConfigError("POPULARITY_HALF_LIFE_DAYS must be > 0")
        logging_options({"LOG_LEVEL": self.log_level, "LOG_FORMAT": self.log_format})
        if not 0 <= self.model_max_shrink <= 1 or self.model_keep < 1:
            raise ConfigError("need 0 <= MODEL_MAX_SHRINK <= 1 and MODEL_KEEP >= 1")
        if self.refresh_tune_budget < 0 or not 0 <= self.quality_max_drop <= 1:
            raise ConfigError("need REFRESH_TUNE_BUDGET >= 0 and 0 <= QUALITY_MAX_DROP <= 1")
        if self.impression_retention_days < 0 or self.impression_queue_size < 1:
            raise ConfigError("need IMPRESSION_RETENTION_DAYS >= 0 and IMPRESSION_QUEUE_SIZE >= 1")
        if self.model_reload_interval <= 0:
            raise ConfigError("MODEL_RELOAD_INTERVAL must be > 0")
        if self.request_deadline_ms < 100:
            raise ConfigError("REQUEST_DEADLINE_MS must be >= 100")
        if self.db_probe_interval <= 0 or self.model_max_age_hours < 0:
            raise ConfigError("need DB_PROBE_INTERVAL > 0 and MODEL_MAX_AGE_HOURS >= 0")
        if self.rate_limit:
            from limits import parse_many

            try:
                parse_many(self.rate_limit)
            except ValueError:
                raise ConfigError(f"RATE_LIMIT={self.rate_limit!r} is not a rate limit like '100/second'") from None

    @property
    def api_key_list(self) -> tuple[str, ...]:
        """The accepted API keys (empty: /api/ is open)."""
        return _split(self.api_keys)

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        """The origins CORS allows."""
        return _split(self.cors_origins)


def logging_options(env: Mapping[str, str]) -> tuple[str, str]:
    """(level, format) from LOG_LEVEL and LOG_FORMAT in `env`, checked: what a command needs to
    log before (or without) the rest of the settings."""
    level = (env.get("LOG_LEVEL") or Settings.log_level).upper()
    log_format = env.get("LOG_FORMAT") or Settings.log_format
    if level not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL={level!r} is not one of {', '.join(LOG_LEVELS)}")
    if log_format not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT={log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    return level, log_format


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _check_url(name: str, url: str) -> None:
    """ConfigError naming `name` unless `url` is a libpq connection string (URI or key=value).
    The message never repeats the value: it may hold a password."""
    from psycopg.conninfo import conninfo_to_dict

    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", url)
    scheme = scheme and scheme.group(1)
    if scheme and scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"{name} is not a PostgreSQL URL: its scheme is {scheme}://, not postgresql://")
    try:
        port = conninfo_to_dict(url).get("port")
    except Exception:  # psycopg.ProgrammingError: libpq could not parse it
        raise ConfigError(
            f"{name} is not a PostgreSQL connection string: give postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
            "or libpq's key=value pairs (host=... dbname=...)"
        ) from None
    if port is not None and not all(part.isdigit() for part in str(port).split(",")):
        raise ConfigError(f"{name} has a port that is not a number")


def _parse(name: str, raw: str, kind: type) -> object:
    if kind is bool:
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r} is not true or false")
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


# Names of the environment variables Settings reads, for docs and checks.
SETTING_NAMES = ["USER_DB_URL", "CATALOG_DB_URL", "ENGAGEMENT_DB_URL", "MODEL_DB_URL"] + [
    f.name.upper() for f in fields(Settings) if f.name not in ("databases", "explicit")
]
