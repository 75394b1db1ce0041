"""The refresh job: rebuild the co-interaction neighbours and popularity, then publish them atomically."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol
from uuid import UUID

import numpy as np
import psycopg
import scipy.sparse as sp
from tqdm import tqdm

from database.catalog_repository import CatalogRepository
from database.engagement_repository import EngagementRepository
from database.model_repository import ModelRepository, NewModel, RefreshInProgress, in_memory
from database.pools import Unavailable
from database.records import ModelInfo
from database.user_repository import UserRepository
from services import neighbours, tuning, validation
from services.model_settings import ModelSettings

log = logging.getLogger(__name__)

POSTGRES_EPOCH = datetime(2000, 1, 1)
MICROSECONDS_PER_DAY = 86_400 * 1_000_000


class RefreshFailed(RuntimeError):
    """The refresh did not publish (the serving model is untouched); the message says why in one line."""


class ModelRejected(RefreshFailed):
    """The new model is empty or much smaller than the serving one (see Guard.check)."""


@contextlib.contextmanager
def _step(what: str):
    """Turn a database failure while doing `what` into RefreshFailed saying which step it was."""
    try:
        yield
    except RefreshInProgress as error:
        raise RefreshFailed(str(error)) from None
    except psycopg.errors.UndefinedTable as error:
        missing = error.diag.message_primary
        raise RefreshFailed(f"{what} failed: {missing}; run `python -m ml_service init-db` first") from None
    except psycopg.OperationalError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RefreshFailed(f"{what} failed: {reason}; nothing was published") from error


@dataclass(frozen=True)
class Interactions:
    """Every (user, media) pair with interactions, in dense indices, as the build needs them."""

    user: np.ndarray  # int32 user number
    media: np.ndarray  # int32 model media index
    positive: np.ndarray  # bool: engaged positively (LIKE/WATCH) and never disliked
    liked: np.ndarray  # bool: positive with a LIKE among its interactions
    newest: np.ndarray  # int64 microseconds since 2000-01-01
    users_count: int
    interactions_count: int
    # What the refresh's validation slice needs (services/validation.py): each pair's positive
    # value (0 unless positive) and whether it was disliked, and each user number's id.
    value: np.ndarray | None = None  # float32
    disliked: np.ndarray | None = None  # bool
    user_ids: np.ndarray | None = None  # V16 per user number


@dataclass(frozen=True)
class Guard:
    """What a refresh may publish: MODEL_MAX_SHRINK, unless forced."""

    max_shrink: float = 0.5
    force: bool = False

    def check(self, serving: ModelInfo | None, what: str, new: int) -> None:
        """Raise ModelRejected when the new model has no media, or `what` (media or interactions)
        shrank by more than max_shrink from the serving model's count."""
        if self.force:
            return
        before = None if serving is None else getattr(serving, f"{what}_count")
        if what == "media" and new == 0:
            reason = "the new model would have no media (catalog_db has no live media)"
        elif before and new < before * (1 - self.max_shrink):
            reason = (
                f"the new model would have {new:,} {what}, {1 - new / before:.0%} fewer than the serving "
                f"model (version {serving.version}: {before:,}); MODEL_MAX_SHRINK allows {self.max_shrink:.0%}"
            )
        else:
            return
        raise ModelRejected(f"{reason}; nothing was published (--force publishes it anyway)")


@dataclass(frozen=True)
class Tuning:
    """How a refresh measures, tunes and gates its model (REFRESH_TUNE, REFRESH_TUNE_BUDGET,
    QUALITY_MAX_DROP; services/tuning.py)."""

    start: ModelSettings  # the settings of the environment
    tunable: frozenset[str] = frozenset()  # of model_settings.TUNABLE; empty: measure only
    budget_seconds: float = 270.0
    max_drop: float = 0.05
    dislike: float = 0.0

    def check(self, outcome: tuning.Outcome, serving: ModelInfo | None, guard: Guard) -> None:
        """Raise ModelRejected when the new model's validation NDCG@10 is more than max_drop below
        the serving model's settings' on the same slice (unless the guard is forced)."""
        if guard.force or outcome.serving is None or outcome.serving.ndcg <= 0:
            return
        new, old = outcome.quality.ndcg, outcome.serving.ndcg
        if new < old * (1 - self.max_drop):
            raise ModelRejected(
                f"the new model's validation NDCG@10 is {new:.4f}, {1 - new / old:.1%} below the serving model's "
                f"{old:.4f} (version {serving.version}, its settings rebuilt on the same slice); QUALITY_MAX_DROP "
                f"allows {self.max_drop:.0%}; nothing was published (--force publishes it anyway)"
            )


class Read(Protocol):
    """What an engine read of engagement_db (the counts) and can build from it."""

    interactions_count: int
    users_count: int
    newest: int | None  # the newest interaction with a live media, microseconds since 2000-01-01

    def popularity(self, half_life_days: float) -> np.ndarray:
        """`popularity_scores`: float32 per media index."""

    def sums(self, settings: neighbours.NeighbourSettings) -> neighbours.Sums:
        """The sums the neighbour table is built from (neighbours.assemble)."""


class Engine(Protocol):
    """How a refresh reads the interactions and computes the sums that grow with them: in this
    process (`NumpyEngine`) or on a Spark cluster (services/spark_engine.py). Both give the same
    model for the same data and settings; the rest of the refresh is the same code."""

    def read(self, media_ids: np.ndarray, progress: bool) -> Read:
        """Read the interactions with the live media `media_ids` (sorted; model index = position)."""


class NumpyEngine:
    """Every (user, media) pair read into this process's memory (`read_interactions`)."""

    def __init__(self, engagement: EngagementRepository) -> None:
        self._engagement = engagement

    def read(self, media_ids: np.ndarray, progress: bool) -> Read:
        return NumpyRead(read_interactions(self._engagement, media_ids, progress), len(media_ids))


class NumpyRead:
    """services.refresh.Read of the interactions in memory (`read_interactions`)."""

    def __init__(self, interactions: Interactions, media_count: int) -> None:
        self.interactions = interactions
        self.media_count = media_count
        self.interactions_count = interactions.interactions_count
        self.users_count = interactions.users_count
        self.newest = int(interactions.newest.max()) if len(interactions.newest) else None

    def popularity(self, half_life_days: float) -> np.ndarray:
        return popularity_scores(self.interactions, self.media_count, half_life_days)

    def sums(self, settings: neighbours.NeighbourSettings) -> neighbours.Sums:
        interactions = self.interactions
        return neighbours.MatrixSums(
            pairs(interactions, interactions.positive, self.media_count, settings.user_cap),
            pairs(interactions, interactions.liked, self.media_count, settings.user_cap),
            settings,
        )


def refresh(
    catalog: CatalogRepository,
    engagement: EngagementRepository | None,
    models: ModelRepository,
    neighbour_settings: neighbours.NeighbourSettings,
    half_life_days: float,
    progress: bool = True,
    guard: Guard = Guard(),
    keep: int = 3,
    engine: Engine | None = None,
    publish: bool = True,
    users: UserRepository | None = None,
    tune: Tuning | None = None,
) -> int:
    """Build a model from the current databases and publish it; returns its version.
    Without `publish` the new version is only kept (for an experiment's variant, or a later
    `python -m ml_service publish VERSION`).

    The refresh lock is taken first, so a second refresh fails at once (RefreshFailed naming
    the running one) instead of after its build. The new model is checked against the serving
    one by `guard` as soon as its media, then its interactions, are counted (ModelRejected),
    before the expensive part. A database failing on the way raises RefreshFailed. Either way
    the serving model stays as it was: the new one is made serving by one statement at the end,
    and the last `keep` models are kept for a rollback.

    `neighbour_settings` say how the neighbour table is built (services/neighbours.py);
    `engine` how the interactions are read and summed (default: NumpyEngine(engagement)).
    With `tune` (and `users`, for the validation users' genres) the model is measured on a
    validation slice, its settings tuned there, and it is refused when it ranks worse than the
    serving model's settings by more than tune.max_drop (services/tuning.py); the settings and
    the figures are recorded with the version.
    """
    started = time.perf_counter()
    engine = NumpyEngine(engagement) if engine is None else engine
    with _step("taking the refresh lock on the model database"), models.refresh_lock() as writer:
        with _step("reading the serving model"):
            serving = writer.serving()
        with _step("reading media from catalog_db"):
            live = catalog.live_media()
        media_ids = live.ids
        guard.check(serving, "media", len(media_ids))
        with _step("reading interactions from engagement_db"):
            read = engine.read(media_ids, progress)
        guard.check(serving, "interactions", read.interactions_count)
        chosen, measured = (None, None) if tune is None else (tune.start, None)
        if tune is not None:
            outcome = _tune(read, live, media_ids, serving, tune, neighbour_settings, half_life_days, users, progress)
            if outcome is not None:
                tune.check(outcome, serving, guard)
                chosen, measured = outcome.settings, outcome.record()
        if chosen is not None:
            neighbour_settings = replace(neighbour_settings, k=chosen.neighbours_k, ease_lambda=chosen.ease_lambda)
        popularity = read.popularity(half_life_days)
        nb_media, nb_idx, nb_sim = neighbours.assemble(read.sums(neighbour_settings), neighbour_settings, progress)
        model = NewModel(
            media_ids=media_ids,
            popularity=popularity,
            media_genres=[live.genres.get(raw, ()) for raw in media_ids.tolist()],
            media_types=live.media_types,
            release_years=live.release_years,
            neighbour_media=nb_media,
            neighbour_idx=nb_idx,
            neighbour_similarity=nb_sim,
            interactions_count=read.interactions_count,
            users_count=read.users_count,
            newest_interaction=None if read.newest is None else POSTGRES_EPOCH + timedelta(microseconds=read.newest),
            build_seconds=time.perf_counter() - started,
            settings=None if chosen is None else chosen.as_dict(),
            validation=measured,
        )
        with _step("publishing to the model database"):
            version = writer.publish(model, keep, serve=publish)
    log.info(
        "model %s " + ("published" if publish else "kept, not serving") + ": %s media, %s neighbour pairs, %s interactions, %.1f s",
        version, len(media_ids), len(nb_idx), read.interactions_count, model.build_seconds,
    )
    return version


def _tune(read: Read, live, media_ids: np.ndarray, serving: ModelInfo | None, tune: Tuning,
          base: neighbours.NeighbourSettings, half_life_days: float, users: UserRepository | None,
          progress: bool) -> tuning.Outcome | None:
    """The validation slice of the interactions, and the search on it (services/tuning.py);
    None when there is no slice (too little data, or an engine that keeps no pairs here)."""
    if not isinstance(read, NumpyRead):
        log.warning("this engine keeps no interactions in the refresh's process: no validation, tuning or quality gate")
        return None
    started = time.perf_counter()
    i = read.interactions
    slice_ = validation.cut(i.user, i.media, i.positive, i.value, i.disliked, i.newest, i.liked)
    if slice_ is None:
        log.info("fewer than %s users with %s positive interactions: no validation slice, the settings are "
                 "not tuned", validation.MIN_USERS, validation.MIN_POSITIVE)
        return None
    tunable = tune.tunable
    if users is not None:
        ids = [UUID(bytes=i.user_ids[u].tobytes()) for u in slice_.users.tolist()]
        try:
            profiles = users.profiles_by_ids(ids)
        except (psycopg.Error, Unavailable) as error:
            # The refresh did without user_db before it measured: it still does, measuring less.
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            log.warning("cannot read the validation users' preferred genres from user_db (%s): measuring without "
                        "them, the blend is not tuned (see docs/source-databases.md: ml_refresh reads user_db)", reason)
            profiles, tunable = {}, tunable - {"blend"}
        slice_ = slice_.with_genres({u: profiles[uid].genres for u, uid in zip(slice_.users.tolist(), ids)
                                     if uid in profiles})
    train = Interactions(
        i.user[slice_.train], i.media[slice_.train], i.positive[slice_.train], i.liked[slice_.train],
        i.newest[slice_.train], i.users_count, i.interactions_count,
    )
    serving_settings = None if serving is None or not serving.settings else ModelSettings.of(serving.settings)
    popularity = popularity_scores(train, len(media_ids), half_life_days)
    ks = tuning.K_VALUES + (tune.start.neighbours_k,) + (() if serving_settings is None else (serving_settings.neighbours_k,))
    widest = replace(base, k=max(ks))  # every table of the search is cut from these sums
    sums = neighbours.MatrixSums(pairs(train, train.positive, len(media_ids), base.user_cap),
                                 pairs(train, train.liked, len(media_ids), base.user_cap), widest)
    del train
    tables = tuning.Tables(sums, base, progress)
    del sums
    info = ModelInfo(0, datetime.now(), 0, 0, len(media_ids), 0, None, 0.0)
    genres = [live.genres.get(raw, ()) for raw in media_ids.tolist()]

    def model_of(table: neighbours.Table):
        return in_memory(NewModel(media_ids, popularity, genres, live.media_types, live.release_years, *table,
                                  0, 0, None, 0.0), info)

    prepared = time.perf_counter() - started
    if serving is not None and serving_settings is None:
        log.info("the serving model (version %s) has no recorded settings: the quality gate applies from the next "
                 "refresh", serving.version)
    outcome = tuning.search(tables, model_of, slice_, tune.start, tunable, tune.dislike,
                            started + tune.budget_seconds, serving_settings)
    tables.release()
    outcome.seconds = {"validation slice and shared sums": prepared, **outcome.seconds}
    log.info(
        "validation on %s users: NDCG@10 %.4f, recall@10 %.4f, coverage %.3f with %s (serving model's settings: %s); "
        "%s trials, %s", slice_.users.size, outcome.quality.ndcg, outcome.quality.recall, outcome.quality.user_coverage,
        {k: v for k, v in outcome.settings.as_dict().items() if k != "tuned"},
        "none" if outcome.serving is None else f"{outcome.serving.ndcg:.4f}", len(outcome.trials),
        ", ".join(f"{step} {s:.1f} s" for step, s in outcome.seconds.items()),
    )
    return outcome


def read_interactions(engagement: EngagementRepository, media_ids: np.ndarray, progress: bool = True) -> Interactions:
    """Stream every (user, media) pair from engagement_db into dense arrays.

    Pairs arrive ordered by user, so users are numbered by counting changes of user id;
    media unknown to the catalog (or deleted) are dropped.
    """
    users, media, positive, liked, newest, value, disliked, user_ids = [], [], [], [], [], [], [], []
    users_count = 0
    interactions_count = 0
    previous_user = None
    bar = tqdm(desc="reading interactions", unit=" pairs", unit_scale=True, disable=not progress)
    for rows in engagement.user_media_pairs():
        bar.update(len(rows))
        interactions_count += int(rows["interactions"].sum())
        user_raw = rows["user"]
        changes = np.empty(len(rows), dtype=bool)
        changes[0] = previous_user is None or user_raw[0] != previous_user
        changes[1:] = user_raw[1:] != user_raw[:-1]
        user_numbers = users_count - 1 + np.cumsum(changes)
        user_ids.append(user_raw[changes])
        users_count = int(user_numbers[-1]) + 1
        previous_user = user_raw[-1]
        if len(media_ids) == 0:
            continue
        idx = np.minimum(np.searchsorted(media_ids, rows["media"]), len(media_ids) - 1)
        known = media_ids[idx] == rows["media"]
        users.append(user_numbers[known].astype(np.int32))
        media.append(idx[known].astype(np.int32))
        is_positive = ~rows["disliked"] & (rows["positive_value"] > 0)
        positive.append(is_positive[known])
        liked.append((is_positive & rows["liked"])[known])
        newest.append(rows["newest"][known].astype(np.int64))
        value.append(np.where(is_positive, rows["positive_value"], 0.0)[known].astype(np.float32))
        disliked.append(rows["disliked"][known])
    bar.close()

    def joined(parts: list[np.ndarray], dtype: str) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    return Interactions(
        user=joined(users, "int32"),
        media=joined(media, "int32"),
        positive=joined(positive, "bool"),
        liked=joined(liked, "bool"),
        newest=joined(newest, "int64"),
        users_count=users_count,
        interactions_count=interactions_count,
        value=joined(value, "float32"),
        disliked=joined(disliked, "bool"),
        user_ids=joined(user_ids, "V16"),
    )


def popularity_scores(interactions: Interactions, media_count: int, half_life_days: float) -> np.ndarray:
    """Time-decayed count of positive engagements per media (the newest one counts 1)."""
    positive = interactions.positive
    if not positive.any():
        return np.zeros(media_count, dtype=np.float32)
    newest = interactions.newest[positive]
    age_days = (newest.max() - newest) / MICROSECONDS_PER_DAY
    decay = np.power(0.5, age_days / half_life_days)
    return np.bincount(interactions.media[positive], weights=decay, minlength=media_count).astype(np.float32)


def pairs(interactions: Interactions, which: np.ndarray, media_count: int, user_cap: int = 0) -> sp.csr_matrix:
    """The binary users × media matrix of the pairs where `which` (positive, liked) is True,
    each user's `user_cap` most recent of them only (neighbours.most_recent; 0: all)."""
    user, media = interactions.user[which], interactions.media[which]
    if user_cap:
        recent = neighbours.most_recent(user, media, interactions.newest[which], user_cap)
        user, media = user[recent], media[recent]
    return neighbours.binary_matrix(user, media, interactions.users_count, media_count)
