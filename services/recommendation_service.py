"""Orchestration: read users, histories and media in batched queries, rank with `scoring`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar
from uuid import UUID

import numpy as np

from database.catalog_repository import CatalogRepository
from database.deadline import Deadline
from database.engagement_repository import EngagementRepository
from database.pools import Unavailable
from database.records import Media, ModelData
from database.user_repository import UserRepository
from services import scoring
from services.errors import DatabaseUnavailable, MediaNotFound, ModelUnavailable, NotInHistory
from services.experiments.assignment import Treatment, assign
from services.fallback_model import FallbackModels
from services.filters import MediaFilter
from services.model_settings import ModelSettings, served
from services.model_store import ModelStore

T = TypeVar("T")

# Extra candidates ranked per user beyond offset + limit, to replace media deleted from the
# catalog since the last refresh without a second round of queries (see _rank_live).
DELETED_SLACK = 3
# Share of the request's time left that each optional database (user_db, engagement_db) may use
# in turn (30 %, then 30 % of the remaining 70 %): even when both hang, catalog_db keeps about
# half, so the answer is degraded, not a 503.
OPTIONAL_SHARE = 0.3
# With `diversity`, a page is re-ranked from the best max(DIVERSITY_POOL, 3 × (offset + limit))
# media: the same media for every page within the first DIVERSITY_POOL / 3 items, so those
# pages continue one another.
DIVERSITY_POOL = 60
# "More like this" and "because you watched": the most similar media (for a user: that they
# have not seen), then ordered by score; at least this many, so that the order does not depend
# on the page.
SIMILAR_CANDIDATES = 100
# An item's `because` names at most this many of the user's media.
BECAUSE_MEDIA = 2
# Seconds a client is told to wait when catalog_db (without which no media can be described) is down.
CATALOG_RETRY_AFTER = 1
# Treatments kept per worker (per model version and variant), rebuilt past it.
MAX_TREATMENTS = 64
# What a degraded answer lacks, in the order responses list it.
DEGRADATIONS = ("user_db", "engagement_db", "model", "model_stale")


@dataclass(frozen=True)
class ExperimentTag:
    """The running experiment an answer belongs to, and the user's variant in it."""

    name: str
    variant: str


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended media with the parts of its score and where it came from."""

    media: Media
    score: float
    content_score: float
    collaborative_score: float
    source: str  # "hybrid" or "popular"
    # Up to 2 of the user's own media that add most to the collaborative score (hybrid items).
    because: tuple[Media, ...] = ()


@dataclass(frozen=True)
class Recommendations:
    """A page of recommendations for one user."""

    user_id: UUID
    items: list[Recommendation]
    limit: int
    offset: int
    # What this answer had to do without (see DEGRADATIONS); empty for full service.
    degraded: tuple[str, ...] = ()
    # The published model version that ranked it; None for the stand-in (degraded "model").
    model_version: int | None = None
    # The seed of a "because you watched" row (None otherwise, or when the catalog lost it).
    because: Media | None = None
    # The experiment and variant the user is in; None when no experiment runs.
    experiment: ExperimentTag | None = None
    # The model was chosen by the experiment's variant (`model=VERSION`), not the serving one.
    variant_model: bool = False

    @property
    def count(self) -> int:
        """How many items this page holds."""
        return len(self.items)


@dataclass(frozen=True)
class SimilarMedia:
    """A page of media like one media ("more like this"), for anyone or ordered for one user."""

    media: Media
    user_id: UUID | None
    items: list[Recommendation]
    limit: int
    offset: int
    degraded: tuple[str, ...] = ()
    model_version: int | None = None
    experiment: ExperimentTag | None = None  # with a user: the experiment and variant they are in

    @property
    def count(self) -> int:
        """How many items this page holds."""
        return len(self.items)


@dataclass(frozen=True)
class _Ask:
    """What one user's ranking needs: their model, signals, treatment, pool and list length."""

    model: ModelData
    signals: scoring.UserSignals
    treatment: Treatment
    pool: scoring.Pool | None
    count: int  # media to rank (the page, or the diversity pool)
    diversity: float


class _Described:
    """What the catalog said of the media one request ranked, by model index (None: not live)."""

    __slots__ = ("media", "_matches")

    def __init__(self, media: dict[int, Media | None], filters: MediaFilter) -> None:
        self.media = media
        self._matches = filters.matches if filters else None  # None: every live media passes

    def live(self, idx: int) -> Media | None:
        """The media if live and passing the request's filters as the catalog describes it now."""
        media = self.media[idx]
        return media if media is not None and (self._matches is None or self._matches(media)) else None

    def live_count(self, indices: list[int]) -> int:
        """How many of `indices` are live media passing the filters."""
        if self._matches is None:
            media = self.media
            return sum(media[i] is not None for i in indices)
        return sum(self.live(i) is not None for i in indices)


class RecommendationService:
    """Ranks media for users: 3 queries (user_db, engagement_db, catalog_db) for 1 or 50 users.

    Degrades instead of failing: without user_db no genre match (collaborative + popular),
    without engagement_db no history (genre match + popular), without a model a stand-in
    (services/fallback_model.py: genre match + popular); each answer lists what it lacked.
    Without catalog_db nothing can be described: DatabaseUnavailable (503, Retry-After).
    All database work of one call ends within `deadline_seconds` (see OPTIONAL_SHARE).
    """

    def __init__(
        self,
        users: UserRepository,
        catalog: CatalogRepository,
        engagement: EngagementRepository,
        models: ModelStore,
        configured: ModelSettings,
        fallback: FallbackModels,
        deadline_seconds: float,
        given: frozenset[str] = frozenset(),
        dislike_weight: float = 0.0,
    ) -> None:
        self._users = users
        self._catalog = catalog
        self._engagement = engagement
        self._models = models
        # The environment's settings: a version is served with those recorded with it, except the
        # ones `given` explicitly (services/model_settings.py).
        self._configured = configured
        self._given = given
        self._dislike = dislike_weight
        # The running experiment, and the treatments built for it per (model version, variant)
        # (replaced together, in one assignment).
        self._treatments: tuple[object, dict[tuple, Treatment]] = (None, {})
        self._fallback = fallback
        self._deadline_seconds = deadline_seconds

    def recommend(
        self,
        user_id: UUID,
        limit: int = 10,
        offset: int = 0,
        arrived_at: float | None = None,
        filters: MediaFilter = MediaFilter(),
        exclude: Sequence[UUID] = (),
        diversity: float | None = None,
        because: UUID | None = None,
    ) -> Recommendations:
        """A page of recommendations for one user; with `because` (a media the user liked or
        watched), the media most like that one that the user has not seen (see `similar`)."""
        if because is not None:
            return self._because(user_id, because, limit, offset, arrived_at, filters, exclude, diversity)
        return self.recommend_many([user_id], limit, offset, arrived_at, filters, exclude, diversity)[user_id]

    def recommend_many(
        self,
        user_ids: Sequence[UUID],
        limit: int = 10,
        offset: int = 0,
        arrived_at: float | None = None,
        filters: MediaFilter = MediaFilter(),
        exclude: Sequence[UUID] = (),
        diversity: float | None = None,
    ) -> dict[UUID, Recommendations]:
        """A page of recommendations for each distinct user id, in the order first given.

        Only media that pass `filters` and are not in `exclude` are recommended; a filtered page
        is as full as an unfiltered one while the catalog has media that pass. `diversity`
        (0-1; None: the user's variant's, else 0) re-ranks each page for genre variety
        (scoring.diversify). Each user is ranked as the running experiment's variant they are
        in says (services/experiments/assignment.py), with the same three queries for every
        user. The database work ends `deadline_seconds` after `arrived_at` (time.monotonic();
        now by default).
        """
        deadline = self._deadline(arrived_at)
        lacking: set[str] = set()
        serving = self._model(lacking, deadline)
        user_ids = list(dict.fromkeys(user_ids))
        served = {user_id: self._serve(user_id, serving, lacking) for user_id in user_ids}
        models = {user_id: model for user_id, (_, model) in served.items()}
        prepared: dict[int, tuple[scoring.Pool | None, np.ndarray]] = {}  # per model: pool, excluded media
        for model in models.values():
            if id(model) not in prepared:
                pool = scoring.Pool.of(model, filters.mask(model)) if filters else None
                prepared[id(model)] = (pool, scoring.excluded_indices(model, exclude))
        optional = deadline.share(OPTIONAL_SHARE)
        profiles = self._optional(lambda: self._users.profiles_by_ids(user_ids, optional), {}, lacking)
        histories = self._histories(user_ids, deadline, lacking)
        wanted = offset + limit
        asks = {}
        for user_id in user_ids:
            treatment, model = served[user_id]
            pool, excluded_idx = prepared[id(model)]
            profile = profiles.get(user_id)
            genres = profile.genres if profile and not treatment.popular_only else ()
            signals = scoring.user_signals(
                model, genres, histories.get(user_id), treatment.history_weighting, excluded_idx
            )
            spread = diversity if diversity is not None else (treatment.diversity or 0.0)
            count = max(DIVERSITY_POOL, 3 * wanted) if spread > 0 else wanted
            asks[user_id] = _Ask(model, signals, treatment, pool, count, spread)
        rankings, explained, described = self._rank_live(asks, deadline, filters)
        results = {}
        for user_id, ask in asks.items():
            items = self._items(rankings[user_id], explained[user_id], described[id(ask.model)])
            if ask.diversity > 0:
                order = scoring.diversify(ask.model, np.array([idx for idx, _ in items]), wanted, ask.diversity)
                items = [items[i] for i in order.tolist()]
            page = [item for _, item in items[offset:wanted]]
            results[user_id] = Recommendations(
                user_id, page, limit, offset, *self._provenance(ask.model, lacking),
                experiment=_tag(ask.treatment), variant_model=ask.model is not serving,
            )
        return results

    def similar(
        self,
        media_id: UUID,
        limit: int = 10,
        offset: int = 0,
        user_id: UUID | None = None,
        arrived_at: float | None = None,
    ) -> SimilarMedia:
        """A page of the media most like `media_id` ("more like this"), ordered by score.

        The SIMILAR_CANDIDATES (or offset + limit) media most like it: its neighbours in the
        model, most similar first (media deleted since the refresh skipped), then the most
        popular media sharing most of its genres; for a media the model does not know (newer
        than the model and the last catalog sync), the genre part alone. They are ordered by
        the seed's score (`_similar_rows`); with `user_id`, those the user has not interacted
        with, by the user's hybrid score (by the seed's for a user with no history and no
        genres). MediaNotFound when the catalog has no live media `media_id`. Costs one catalog
        query (two for a media the model does not know); with `user_id`, one query more each to
        user_db and engagement_db.
        """
        deadline = self._deadline(arrived_at)
        lacking: set[str] = set()
        treatment, model = self._serve(user_id, self._model(lacking, deadline), lacking)
        wanted = offset + limit
        user = None
        if user_id is not None:
            optional = deadline.share(OPTIONAL_SHARE)
            profile = self._optional(lambda: self._users.profiles_by_ids([user_id], optional), {}, lacking).get(user_id)
            genres = profile.genres if profile and not treatment.popular_only else ()
            history = self._histories([user_id], deadline, lacking).get(user_id)
            user = scoring.user_signals(model, genres, history, treatment.history_weighting)
        seed, known = scoring.media_indices(model, np.frombuffer(media_id.bytes, dtype="V16"))
        seed_idx, seed_media = int(seed[0]), None
        if not known[0]:  # newer than the model and the last catalog sync: similar by genre only
            seed_idx = None
            seed_media = self._required(lambda: self._catalog.media_by_ids([media_id], deadline)).get(media_id)
            if seed_media is None:
                raise MediaNotFound(f"no media {media_id} in the catalog")
        seed_genres = scoring.seed_genres(model, seed_idx, seed_media)
        excluded = user.excluded_idx if user is not None else np.zeros(0, dtype=np.int64)
        if user is not None and not (len(user.positive_idx) or user.genre_count):
            user = None  # nothing to order by: the seed's score (an unknown user's were all 0)
        items, described = self._similar_rows(
            model, seed_idx, seed_genres, max(wanted, SIMILAR_CANDIDATES), wanted, excluded, deadline,
            treatment.weights, user,
        )
        seed_media = seed_media or described.media.get(seed_idx)
        if seed_media is None:
            raise MediaNotFound(f"no media {media_id} in the catalog")
        page = [item for _, item in items[offset:wanted]]
        return SimilarMedia(
            seed_media, user_id, page, limit, offset, *self._provenance(model, lacking), experiment=_tag(treatment)
        )

    def _because(
        self,
        user_id: UUID,
        seed_id: UUID,
        limit: int,
        offset: int,
        arrived_at: float | None,
        filters: MediaFilter,
        exclude: Sequence[UUID],
        diversity: float | None,
    ) -> Recommendations:
        """The row "because you watched <seed_id>": the SIMILAR_CANDIDATES (or more) media most like
        it (scoring.similar_media) that pass `filters` and the user has not interacted with,
        ordered by the seed's score (`_similar_rows`). NotInHistory when the user's history (if
        engagement_db answers) has no positive interaction with it."""
        deadline = self._deadline(arrived_at)
        lacking: set[str] = set()
        treatment, model = self._serve(user_id, self._model(lacking, deadline), lacking)
        tag = _tag(treatment)
        # The row's candidates are the seed's neighbours whatever the variant: popular_only
        # (which ranks the personalised rows by popularity) leaves it as it is.
        weights = self._defaults(model).weights if treatment.popular_only else treatment.weights
        if diversity is None:
            diversity = treatment.diversity or 0.0
        pool = scoring.Pool.of(model, filters.mask(model)) if filters else None
        history = self._histories([user_id], deadline, lacking).get(user_id)
        signals = scoring.user_signals(
            model, (), history, treatment.history_weighting, scoring.excluded_indices(model, exclude)
        )
        seed, known = scoring.media_indices(model, np.frombuffer(seed_id.bytes, dtype="V16"))
        if "engagement_db" not in lacking and not (known[0] and np.isin(seed, signals.positive_idx)[0]):
            raise NotInHistory(
                f"because: media {seed_id} is not one this user liked or watched",
                details={"because": ["not a media this user liked or watched"]},
            )
        wanted = offset + limit
        if not known[0]:  # engagement_db is down and the model does not know the media: nothing is like it
            return Recommendations(user_id, [], limit, offset, *self._provenance(model, lacking), experiment=tag)
        seed_idx = int(seed[0])
        shown = max(DIVERSITY_POOL, 3 * wanted) if diversity > 0 else wanted  # re-ranked for diversity from these
        items, described = self._similar_rows(
            model, seed_idx, scoring.seed_genres(model, seed_idx), max(SIMILAR_CANDIDATES, shown), shown,
            signals.excluded_idx, deadline, weights, None, pool, filters,
        )
        if diversity > 0:
            order = scoring.diversify(model, np.array([i for i, _ in items], dtype=np.int64), wanted, diversity)
            items = [items[i] for i in order.tolist()]
        page = [item for _, item in items[offset:wanted]]
        seed = described.media.get(seed_idx)
        return Recommendations(
            user_id, page, limit, offset, *self._provenance(model, lacking), because=seed, experiment=tag
        )

    def _similar_rows(
        self,
        model: ModelData,
        seed_idx: int | None,
        seed_genres: np.ndarray,
        candidates: int,
        shown: int,
        excluded: np.ndarray,
        deadline: Deadline,
        weights: scoring.Weights,
        user: scoring.UserSignals | None = None,
        pool: scoring.Pool | None = None,
        filters: MediaFilter = MediaFilter(),
    ) -> tuple[list[tuple[int, Recommendation]], _Described]:
        """At least `shown` items (fewer when the catalog has no more) of the `candidates` media
        most like `seed_idx` (scoring.similar_media), best score first, and the catalog's answer,
        which also describes the seed.

        Without `user`, the seed's score: as if the seed were a user's only liked media and its
        genres their preferences (equal scores as shown: the more similar first); neighbours are
        "hybrid" (because of the seed), the genre fill "popular". With `user`, the user's hybrid
        score (equal scores: the more similar first), each item with the user's own `because`.
        Candidates are ordered from the model's arrays; the catalog is asked only about those the
        page may show, DELETED_SLACK more than `shown`, and again for the next ones when deleted
        media leave it short (one query, rarely two).
        """
        idx, neighbour = scoring.similar_media(model, seed_idx, seed_genres, candidates + DELETED_SLACK, excluded, pool)
        seeds = np.array([] if seed_idx is None else [seed_idx], dtype=np.int64)
        as_seed = scoring.UserSignals(
            positive_idx=seeds, positive_weight=np.ones(len(seeds)), excluded_idx=seeds,
            genre_idx=seed_genres, genre_count=len(seed_genres),
        )
        score, content, collaborative = scoring.hybrid_scores(model, user or as_seed, weights, idx)
        key = (score if user is not None else np.round(score, 6))[:candidates]
        # Stable: ties keep the similarity order. The DELETED_SLACK beyond the candidates stand
        # in for deleted ones only, after them.
        order = np.concatenate((np.lexsort((np.arange(len(key)), -key)), np.arange(len(key), len(idx))))
        idx, neighbour = idx[order], neighbour[order]
        ranking = scoring.Ranking(idx, score[order], content[order], collaborative[order])
        described = _Described({}, filters)
        asked = min(len(idx), shown + DELETED_SLACK)
        while True:
            head = idx[:asked]
            explained = scoring.because(model, user, head, BECAUSE_MEDIA) if user is not None else [[] for _ in head]
            self._describe([(model, [*seeds.tolist(), *head.tolist(), *(i for e in explained for i in e)], described)],
                           deadline)
            live = described.live_count(head.tolist())
            if live >= shown or asked == len(idx):
                break
            asked = min(len(idx), asked * 2)
        head_ranking = scoring.Ranking(
            idx[:asked], ranking.score[:asked], ranking.content[:asked], ranking.collaborative[:asked]
        )
        if user is not None:
            return self._items(head_ranking, explained, described), described
        seed = described.media.get(seed_idx) if seed_idx is not None else None
        items = []
        for i, s, c, co, n in zip(
            head_ranking.media_idx.tolist(),
            np.round(head_ranking.score, 6).tolist(),
            np.round(head_ranking.content, 6).tolist(),
            np.round(head_ranking.collaborative, 6).tolist(),
            neighbour[:asked].tolist(),
        ):
            media = described.live(i)
            if media is not None:
                items.append((i, Recommendation(
                    media, s, c, co, "hybrid" if n else "popular", (seed,) if n and seed is not None else ()
                )))
        return items, described

    def _items(
        self, ranking: scoring.Ranking, explained: list[list[int]], described: _Described
    ) -> list[tuple[int, Recommendation]]:
        """The ranking's live media as (model index, Recommendation), best first."""
        items = []
        live, known = described.live, described.media.get
        for idx, score, content, collaborative, hybrid, sources in zip(
            ranking.media_idx.tolist(),
            np.round(ranking.score, 6).tolist(),
            np.round(ranking.content, 6).tolist(),
            np.round(ranking.collaborative, 6).tolist(),
            ranking.is_hybrid.tolist(),
            explained,
        ):
            media = live(idx)
            if media is None:
                continue
            because = tuple(m for m in map(known, sources) if m is not None) if hybrid and sources else ()
            items.append((idx, Recommendation(
                media, score, content, collaborative, "hybrid" if hybrid else "popular", because
            )))
        return items

    def _rank_live(
        self, asks: dict[UUID, _Ask], deadline: Deadline, filters: MediaFilter
    ) -> tuple[dict[UUID, scoring.Ranking], dict[UUID, list[list[int]]], dict[int, _Described]]:
        """Each user's ranking, long enough to hold their `count` live media, what explains each
        of its media (scoring.because), and the catalog's description of them (per model, by id()).

        Media deleted from the catalog since the last refresh are still in the model, so each
        ranking holds DELETED_SLACK more than wanted; the catalog query (one for every user,
        whichever model ranked them) tells which are live, and describes the media that explain
        them. Only when that is not enough for some users, they are ranked further and the next
        candidates asked for: one more query per round.
        """
        counts = {user_id: ask.count + DELETED_SLACK for user_id, ask in asks.items()}
        rankings: dict[UUID, scoring.Ranking] = {}
        explained: dict[UUID, list[list[int]]] = {}
        described = {id(ask.model): _Described({}, filters) for ask in asks.values()}
        pending = list(asks)
        while pending:
            wanted: dict[int, tuple[ModelData, list[int]]] = {}
            for user_id in pending:
                ask = asks[user_id]
                ranking = scoring.rank_for_user(
                    ask.model, ask.signals, ask.treatment.weights, counts[user_id], ask.pool, explain=BECAUSE_MEDIA
                )
                rankings[user_id] = ranking
                explained[user_id] = ranking.because
                _, media_idx = wanted.setdefault(id(ask.model), (ask.model, []))
                media_idx += ranking.media_idx.tolist()
                media_idx += [i for e in ranking.because for i in e]
            self._describe([(model, idx, described[key]) for key, (model, idx) in wanted.items()], deadline)
            pending = [
                u
                for u in pending
                if len(rankings[u].media_idx) == counts[u]  # the model has more to offer
                and described[id(asks[u].model)].live_count(rankings[u].media_idx.tolist()) < asks[u].count
            ]
            for user_id in pending:
                counts[user_id] *= 2
        return rankings, explained, described

    def _describe(self, asked: list[tuple[ModelData, list[int], _Described]], deadline: Deadline) -> None:
        """Ask the catalog (one query) about the media of each (model, indices, described) it
        was not asked about yet."""
        ids: dict[bytes, list[tuple[_Described, int]]] = {}  # by the media's 16 id bytes
        unknown_per = []
        for model, media_idx, described in asked:
            unknown = [i for i in dict.fromkeys(media_idx) if i not in described.media]
            for i, raw in zip(unknown, model.media_ids[np.array(unknown, dtype=np.int64)].tolist()):
                ids.setdefault(raw, []).append((described, i))
            unknown_per.append((described, unknown))
        if not ids:
            return
        raw_ids = np.frombuffer(b"".join(ids), dtype="V16")
        found = self._required(lambda: self._catalog.media_by_ids(raw_ids, deadline))
        for described, unknown in unknown_per:
            described.media.update(dict.fromkeys(unknown))
        for media_id, media in found.items():
            for described, i in ids[media_id.bytes]:
                described.media[i] = media

    def _serve(self, user_id: UUID | None, serving: ModelData, lacking: set[str]) -> tuple[Treatment, ModelData]:
        """How `user_id` is served and by which model: the running experiment's variant they are
        in (None: no user, the defaults), on its kept model when it names one that this worker has
        loaded (until then, and without a model, on `serving`), with that model's settings."""
        experiment = self._models.experiment
        variant = None if experiment is None or user_id is None else assign(experiment, user_id)
        model = serving
        version = None if variant is None else variant.overrides.get("model")
        if version is not None and "model" not in lacking:
            model = self._models.variant_model(version) or serving
        cached, treatments = self._treatments
        if cached is not experiment:  # a new experiment (or none any more): built anew
            treatments = {}
            self._treatments = (experiment, treatments)
        key = (model.info.version, None if variant is None else variant.name)
        treatment = treatments.get(key)
        if treatment is None:
            if len(treatments) >= MAX_TREATMENTS:  # versions come and go in a long-lived worker
                treatments.clear()
            treatment = treatments[key] = self._defaults(model).of(experiment, variant)
        return treatment, model

    def settings_for(self, model: ModelData) -> ModelSettings:
        """The settings `model`'s version is served with outside an experiment: those recorded with
        it, except the ones the environment gives explicitly (services/model_settings.py)."""
        return served(model.info.settings, self._configured, self._given)

    def _defaults(self, model: ModelData) -> Treatment:
        """The treatment outside an experiment for `model`."""
        settings = self.settings_for(model)
        return Treatment(settings.weights(self._dislike), settings.history_weighting)

    def _histories(self, user_ids: list[UUID], deadline: Deadline, lacking: set[str]) -> dict:
        optional = deadline.share(OPTIONAL_SHARE)
        return self._optional(lambda: self._engagement.histories_by_user_ids(user_ids, optional), {}, lacking)

    def _deadline(self, arrived_at: float | None) -> Deadline:
        return Deadline((time.monotonic() if arrived_at is None else arrived_at) + self._deadline_seconds)

    @staticmethod
    def _provenance(model: ModelData, lacking: set[str]) -> tuple[tuple[str, ...], int | None]:
        """What an answer lacked (DEGRADATIONS order), and the model version that ranked it."""
        return tuple(name for name in DEGRADATIONS if name in lacking), None if "model" in lacking else model.info.version

    def _model(self, lacking: set[str], deadline: Deadline) -> ModelData:
        try:
            model = self._models.current()
        except ModelUnavailable:
            fallback = self._required(lambda: self._fallback.current(deadline))
            lacking.update(("model", *fallback.degraded))
            return fallback.model
        if self._models.stale:
            lacking.add("model_stale")
        return model

    @staticmethod
    def _optional(read: Callable[[], T], default: T, lacking: set[str]) -> T:
        """`read()`, or `default` with the database recorded as lacking when it is unavailable."""
        try:
            return read()
        except Unavailable as error:
            lacking.add(error.name)
            return default

    @staticmethod
    def _required(read: Callable[[], T]) -> T:
        """`read()`; catalog_db missing (the only database we cannot do without) is a 503."""
        try:
            return read()
        except Unavailable as error:
            raise DatabaseUnavailable(
                "a database is unavailable; retry shortly", retry_after=CATALOG_RETRY_AFTER
            ) from error


def _tag(treatment: Treatment) -> ExperimentTag | None:
    """The experiment and variant of an answer, None outside an experiment."""
    return None if treatment.experiment is None else ExperimentTag(treatment.experiment, treatment.variant)
