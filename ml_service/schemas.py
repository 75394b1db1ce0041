"""Marshmallow schemas of every request and response."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from marshmallow import RAISE, Schema, fields, post_load, validate

if TYPE_CHECKING:
    from uuid import UUID

    from services.recommendation_service import ExperimentTag, Recommendation, Recommendations, SimilarMedia

MAX_LIMIT = 100
MAX_OFFSET = 1000
MAX_BATCH_USERS = 50
MAX_EXCLUDE = 200

_limit = dict(load_default=10, validate=validate.Range(1, MAX_LIMIT), metadata={"description": "Items per user (1-100)."})
_degraded = dict(
    metadata={
        "description": "What this answer had to do without: user_db (no genre match), engagement_db (no "
        "history), model (no published model: genre match + popular), model_stale. Empty for full service."
    },
)
_model_version = dict(
    allow_none=True,
    metadata={
        "description": "The published model version that ranked this answer (also in the X-Model-Version "
        "header); null when no model is loaded (degraded `model`)."
    },
)
_year_min = dict(validate=validate.Range(0, 9999), metadata={"description": "Only media released this year or later."})
_year_max = dict(validate=validate.Range(0, 9999), metadata={"description": "Only media released this year or earlier."})
_offset = dict(load_default=0, validate=validate.Range(0, MAX_OFFSET), metadata={"description": "Items to skip (0-1000)."})
_diversity = dict(
    validate=validate.Range(0, 1),
    metadata={
        "description": "Genre variety of each page, 0-1: 0 ranks by score alone; higher values re-rank by "
        "maximal marginal relevance, trading rank for genres the page does not show yet. Default: 0, or what "
        "the user's experiment variant sets."
    },
)
_experiment = dict(
    allow_none=True,
    metadata={
        "description": "The running A/B experiment and the variant this user is in (also in the X-Experiment "
        "header of single answers, as NAME/VARIANT); null when no experiment runs."
    },
)


class RowSchema(Schema):
    """What a row may hold: filters (all must pass) and media to leave out. Loads into the
    `filters` and `exclude` arguments of RecommendationService.recommend_many."""

    class Meta:
        unknown = RAISE  # a misspelt parameter or field is an error, not silently ignored

    media_type = fields.List(
        fields.String(validate=validate.Length(1, 50)),
        validate=validate.Length(1, 10),
        metadata={"description": "Only media of these types (e.g. movie, series): any of them, whatever the case."},
    )
    genres = fields.List(
        fields.String(validate=validate.Length(1, 50)),
        validate=validate.Length(1, 20),
        metadata={"description": "Only media with at least one of these genres, whatever the case (GET /api/genres lists them)."},
    )
    release_year_min = fields.Integer(**_year_min)
    release_year_max = fields.Integer(**_year_max)
    exclude = fields.List(
        fields.UUID(),
        validate=validate.Length(max=MAX_EXCLUDE),
        metadata={"description": f"Media ids never to recommend (up to {MAX_EXCLUDE}), e.g. what the page already shows."},
    )

    @post_load
    def row_arguments(self, data: dict, **kwargs) -> dict:
        from services.filters import MediaFilter

        filters = MediaFilter(
            media_types=frozenset(data.pop("media_type", ())),
            genres=frozenset(data.pop("genres", ())),
            release_year_min=data.pop("release_year_min", None),
            release_year_max=data.pop("release_year_max", None),
        )
        return {**data, "filters": filters, "exclude": data.pop("exclude", [])}


class UserPathSchema(Schema):
    """Path of GET /api/recommendations/<user_id>."""

    user_id = fields.UUID(required=True, metadata={"description": "The user's id (an id user_db does not know gets popular media)."})


class SingleRequestSchema(RowSchema):
    """Query of GET /api/recommendations/<user_id>."""

    limit = fields.Integer(**_limit)
    offset = fields.Integer(**_offset)
    diversity = fields.Float(allow_nan=False, **_diversity)
    because = fields.UUID(
        metadata={
            "description": "A media the user liked or watched: the row \"because you watched\" it, the media most "
            "like it that the user has not seen (404 `not_found` when the user has no positive interaction with it)."
        }
    )


class BatchRequestSchema(RowSchema):
    """Body of POST /api/recommendations/batch."""

    user_ids = fields.List(
        fields.UUID(),
        required=True,
        validate=validate.Length(1, MAX_BATCH_USERS, error="must hold between {min} and {max} ids"),
    )
    limit = fields.Integer(strict=True, **_limit)
    offset = fields.Integer(strict=True, **_offset)
    release_year_min = fields.Integer(strict=True, **_year_min)
    release_year_max = fields.Integer(strict=True, **_year_max)
    diversity = fields.Float(allow_nan=False, **_diversity)


class MediaPathSchema(Schema):
    """Path of GET /api/media/<media_id>/similar."""

    media_id = fields.UUID(required=True, metadata={"description": "A media of the catalog (404 when it has none)."})


class SimilarRequestSchema(Schema):
    """Query of GET /api/media/<media_id>/similar."""

    class Meta:
        unknown = RAISE

    limit = fields.Integer(**_limit)
    offset = fields.Integer(**_offset)
    user_id = fields.UUID(
        metadata={
            "description": "Order for this user: the most similar media they have not interacted with, by their "
            "hybrid score (each item's `because` then names their own media)."
        }
    )


class ResponseSchema(Schema):
    """A response body. The service writes every field, so the API description marks each one
    required, except those named in `optional` (ml_service/openapi.py)."""

    optional: ClassVar[frozenset[str]] = frozenset()


class MediaSchema(ResponseSchema):
    """A media as the catalog describes it."""

    media_id = fields.UUID(attribute="id")
    title = fields.String()
    media_type = fields.String()
    release_year = fields.Integer(allow_none=True)
    cover_url = fields.String(allow_none=True)
    genres = fields.List(fields.String())


class BecauseSchema(ResponseSchema):
    """A media of the user's own history that explains a recommendation."""

    media_id = fields.UUID(attribute="id")
    title = fields.String()


class RecommendationItemSchema(ResponseSchema):
    """One recommended media."""

    media_id = fields.UUID(attribute="media.id")
    title = fields.String(attribute="media.title")
    media_type = fields.String(attribute="media.media_type")
    release_year = fields.Integer(attribute="media.release_year", allow_none=True)
    cover_url = fields.String(attribute="media.cover_url", allow_none=True)
    genres = fields.List(fields.String(), attribute="media.genres")
    score = fields.Float(
        metadata={"description": "content_weight × content + collaborative_weight × collaborative (below 0 when "
                  "DISLIKE_WEIGHT lowers it)."}
    )
    content_score = fields.Float(metadata={"description": "Share of the user's preferred genres the media has."})
    collaborative_score = fields.Float(metadata={"description": "Co-interaction score, scaled to [-1, 1] per user."})
    source = fields.String(validate=validate.OneOf(["hybrid", "popular"]))
    because = fields.List(
        fields.Nested(BecauseSchema),
        metadata={
            "description": "Up to 2 of the user's own media (liked or watched) that add most to the collaborative "
            "score, for \"Because you watched X\"; empty for popular items. In a `because` row and in \"more like "
            "this\" without a user: the seed media, for its neighbours."
        },
    )


class ExperimentTagSchema(ResponseSchema):
    """Which experiment an answer belongs to, and which variant."""

    name = fields.String()
    variant = fields.String()


class PageSchema(ResponseSchema):
    """What every page of items says besides its items."""

    count = fields.Integer()
    limit = fields.Integer()
    offset = fields.Integer()
    degraded = fields.List(fields.String(), **_degraded)
    model_version = fields.Integer(**_model_version)


class RecommendationsSchema(PageSchema):
    """A page of recommendations for one user."""

    user_id = fields.UUID()
    recommendations = fields.List(fields.Nested(RecommendationItemSchema), attribute="items")
    because = fields.Nested(
        BecauseSchema,
        allow_none=True,
        metadata={"description": "The seed of a `because` row, to title it \"Because you watched X\"; null otherwise."},
    )
    experiment = fields.Nested(ExperimentTagSchema, **_experiment)


def page_json(page: Recommendations) -> dict:
    """RecommendationsSchema().dump(page), built directly: a batch of 50 pages of 10 items costs
    a fraction of marshmallow's time. tests/api/test_recommendations.py holds the two equal."""
    return {
        "user_id": str(page.user_id),
        "recommendations": items_json(page.items),
        "count": page.count,
        "limit": page.limit,
        "offset": page.offset,
        "degraded": list(page.degraded),
        "model_version": page.model_version,
        "because": None if page.because is None else {"media_id": str(page.because.id), "title": page.because.title},
        "experiment": experiment_json(page.experiment),
    }


def experiment_json(tag: ExperimentTag | None) -> dict | None:
    """ExperimentTagSchema().dump of an answer's experiment (see page_json)."""
    return None if tag is None else {"name": tag.name, "variant": tag.variant}


def items_json(items: list[Recommendation]) -> list[dict]:
    """The items as RecommendationItemSchema dumps them (see page_json)."""
    return [
        {
            "media_id": str(item.media.id),
            "title": item.media.title,
            "media_type": item.media.media_type,
            "release_year": item.media.release_year,
            "cover_url": item.media.cover_url,
            "genres": list(item.media.genres),
            "score": item.score,
            "content_score": item.content_score,
            "collaborative_score": item.collaborative_score,
            "source": item.source,
            "because": [{"media_id": str(media.id), "title": media.title} for media in item.because],
        }
        for item in items
    ]


def similar_json(page: SimilarMedia) -> dict:
    """SimilarResponseSchema().dump(page), built directly (see page_json)."""
    media = page.media
    return {
        "media": {
            "media_id": str(media.id),
            "title": media.title,
            "media_type": media.media_type,
            "release_year": media.release_year,
            "cover_url": media.cover_url,
            "genres": list(media.genres),
        },
        "user_id": None if page.user_id is None else str(page.user_id),
        "similar": items_json(page.items),
        "count": page.count,
        "limit": page.limit,
        "offset": page.offset,
        "degraded": list(page.degraded),
        "model_version": page.model_version,
        "experiment": experiment_json(page.experiment),
    }


def batch_json(pages: dict[UUID, Recommendations]) -> dict:
    """BatchResponseSchema().dump of the pages of one batch, built directly (see page_json)."""
    first = next(iter(pages.values()), None)  # every page lacks the same parts
    # The serving model's version: the pages of an experiment's `model` variant name their own.
    serving = next((page for page in pages.values() if not page.variant_model), first)
    return {
        "results": {str(user_id): page_json(page) for user_id, page in pages.items()},
        "total_users": len(pages),
        "degraded": list(first.degraded) if first else [],
        "model_version": serving.model_version if serving else None,
    }


class SimilarResponseSchema(PageSchema):
    """A page of media like one media ("more like this")."""

    media = fields.Nested(MediaSchema, metadata={"description": "The media the page is like."})
    user_id = fields.UUID(allow_none=True, metadata={"description": "The user it is ordered for, if any."})
    similar = fields.List(fields.Nested(RecommendationItemSchema), attribute="items")
    experiment = fields.Nested(ExperimentTagSchema, **_experiment)


class BatchResponseSchema(ResponseSchema):
    """Recommendations for several users, keyed by user id."""

    results = fields.Dict(keys=fields.String(), values=fields.Nested(RecommendationsSchema))
    total_users = fields.Integer()
    degraded = fields.List(fields.String(), **_degraded)
    model_version = fields.Integer(**_model_version)


class ModelSettingsSchema(ResponseSchema):
    """The settings a model version is built and served with (services/model_settings.py)."""

    ease_lambda = fields.Float(metadata={"description": "EASE's regularisation λ it was built with."})
    neighbours_k = fields.Integer(metadata={"description": "Neighbours kept per media."})
    content_weight = fields.Float(metadata={"description": "Weight of the genre match in the hybrid score."})
    collaborative_weight = fields.Float(metadata={"description": "Weight of the collaborative score."})
    history_weighting = fields.String(metadata={"description": "`centred` or `raw` (HISTORY_WEIGHTING)."})
    tuned = fields.List(fields.String(), metadata={
        "description": "Which the refresh tuned on its validation slice (ease_lambda, neighbours_k, blend, "
                       "history_weighting); the others were given in its environment. A blend or history "
                       "weighting given in the service's environment is served instead of the recorded one."})


class ValidationSchema(ResponseSchema):
    """How the version ranked the held-out interactions of its refresh's validation slice."""

    ndcg = fields.Float(metadata={"description": "NDCG@10."})
    recall = fields.Float(metadata={"description": "Recall@10."})
    user_coverage = fields.Float(metadata={"description": "Share of the slice's users given a full list of 10."})
    users = fields.Integer(metadata={"description": "Users of the slice."})
    serving_ndcg = fields.Float(allow_none=True, metadata={
        "description": "NDCG@10 of the then serving model's settings on the same slice (what the quality gate "
                       "compared with; null without a serving model with recorded settings)."})
    trials = fields.Integer(metadata={"description": "Settings measured by the tuning."})
    budget_reached = fields.Boolean(metadata={"description": "Whether REFRESH_TUNE_BUDGET cut the tuning short."})
    seconds = fields.Dict(keys=fields.String(), values=fields.Float(),
                          metadata={"description": "Seconds per step of the measuring and tuning."})


class ModelSchema(ResponseSchema):
    """The model this worker serves (GET /api/model)."""

    version = fields.Integer(metadata={"description": "Published model version (see `python -m ml_service models`)."})
    built_at = fields.DateTime(metadata={"description": "When the refresh published it."})
    age_seconds = fields.Float(metadata={"description": "Seconds since built_at."})
    stale = fields.Boolean(metadata={"description": "Older than MODEL_MAX_AGE_HOURS (answers say model_stale)."})
    media = fields.Integer(metadata={"description": "Live media at build time."})
    users = fields.Integer(metadata={"description": "Users with interactions at build time."})
    interactions = fields.Integer(metadata={"description": "Interactions the model was built from."})
    neighbours = fields.Integer(metadata={"description": "Neighbour pairs."})
    build_seconds = fields.Float(metadata={"description": "How long the refresh took."})
    newest_interaction = fields.DateTime(allow_none=True, metadata={"description": "Newest interaction it saw."})
    settings = fields.Nested(ModelSettingsSchema, metadata={
        "description": "The settings this worker serves the version with."})
    validation = fields.Nested(ValidationSchema, allow_none=True, metadata={
        "description": "Its quality on the refresh's validation slice (null: built before it was measured, or on "
                       "data too small to hold a slice out)."})


class VariantSchema(ResponseSchema):
    """One variant of an experiment."""

    name = fields.String()
    share = fields.Float(metadata={"description": "Share of the users assigned to it (0-1)."})
    overrides = fields.Dict(
        keys=fields.String(),
        metadata={"description": "What it changes for its users: content_weight, collaborative_weight, "
                  "history_weighting, diversity, popular_only, model. Empty for the control."},
    )


class ExperimentSchema(ResponseSchema):
    """A running experiment."""

    name = fields.String()
    started_at = fields.DateTime()
    variants = fields.List(fields.Nested(VariantSchema), metadata={"description": "The first is the control."})


class ExperimentsSchema(ResponseSchema):
    """The running experiments (at most one)."""

    experiments = fields.List(fields.Nested(ExperimentSchema))


class GenreSchema(ResponseSchema):
    """One genre of the catalog."""

    name = fields.String(metadata={"description": "As the catalog spells it (filters match it whatever the case)."})
    media = fields.Integer(metadata={"description": "Media of the serving model with this genre."})


class GenresSchema(ResponseSchema):
    """The genres the `genres` filter can name."""

    genres = fields.List(fields.Nested(GenreSchema), metadata={"description": "By name."})
    model_version = fields.Integer(metadata={"description": "The model they were counted in."})


class HealthSchema(ResponseSchema):
    """Liveness: the worker can serve (no database is touched)."""

    status = fields.String(validate=validate.OneOf(["healthy", "unhealthy"]))
    service = fields.String()
    version = fields.String()


class ReadinessSchema(ResponseSchema):
    """Readiness: every database answers and a model is loaded."""

    status = fields.String(validate=validate.OneOf(["ready", "degraded", "unavailable"]))
    checks = fields.Dict(keys=fields.String(), values=fields.String())
    model = fields.Dict(allow_none=True)
    degraded = fields.List(fields.String(), metadata={"description": "The checks that are not ok."})


class ErrorBodySchema(ResponseSchema):
    """The error object."""

    optional = frozenset({"details"})
    code = fields.String()
    message = fields.String()
    details = fields.Dict(metadata={"description": "Validation errors only: the problems of each field."})


class ErrorSchema(ResponseSchema):
    """Every error response."""

    error = fields.Nested(ErrorBodySchema)
