"""Plain records the repositories return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple
from uuid import UUID

import numpy as np

if TYPE_CHECKING:
    from settings import Settings


@dataclass(frozen=True)
class History:
    """One user's interactions (engagement_db), aggregated per media.

    positive_value is the media's largest LIKE/WATCH interaction value (1 where the value is
    missing, never below 0) times the weight of its type (InteractionWeights), or 0 when the
    user ever disliked the media or only disliked it.
    """

    media_ids: np.ndarray  # V16: every media the user liked, disliked or watched, each once
    positive_value: np.ndarray  # float64 per media
    disliked: np.ndarray  # bool per media: the user disliked it at least once


@dataclass(frozen=True)
class InteractionWeights:
    """How much each interaction type counts (LIKE_WEIGHT, WATCH_WEIGHT, DISLIKE_WEIGHT).

    A LIKE's or WATCH's value is multiplied by its type's weight, and a media's positive value
    is the largest of them: a weight of 0 makes that type no positive signal at all (the media
    is still left out of the user's recommendations), in the refresh as in the requests. A
    disliked media is never positive; with a `dislike` weight above 0 it also lowers the
    collaborative score of its neighbours, as a liked media of that weight raises it.
    """

    like: float = 1.0
    watch: float = 1.0
    dislike: float = 0.0

    @classmethod
    def of(cls, settings: Settings) -> InteractionWeights:
        """LIKE_WEIGHT, WATCH_WEIGHT and DISLIKE_WEIGHT."""
        return cls(settings.like_weight, settings.watch_weight, settings.dislike_weight)


@dataclass(frozen=True)
class UserProfile:
    """A user as user_db knows them: whether they exist and their preferred genres."""

    user_id: UUID
    exists: bool
    genres: frozenset[str]


@dataclass(frozen=True, slots=True)
class Media:
    """A live media of the catalog, as a recommendation shows it."""

    id: UUID
    title: str
    media_type: str
    release_year: int | None
    cover_url: str | None
    genres: tuple[str, ...]


@dataclass(frozen=True)
class ModelInfo:
    """What one refresh built, from ml.model_builds."""

    version: int
    built_at: datetime
    interactions_count: int
    users_count: int
    media_count: int
    neighbours_count: int
    newest_interaction: datetime | None
    build_seconds: float
    # What services/tuning.py chose and measured (null for versions built before it, or on
    # data too small to hold a validation slice out).
    settings: dict | None = None  # ModelSettings.as_dict()
    validation: dict | None = None  # Quality.as_dict(), with the serving model's figure it was gated on


@dataclass(frozen=True)
class ModelData:
    """The derived tables of one model version, as arrays (see ml.model_media, ml.media_neighbours).

    Media are addressed by their dense index `idx`: `media_ids[idx]` is the UUID as 16 raw
    bytes (numpy 'V16', sorted, so a UUID's index is found with searchsorted).

    On construction the media are also grouped by their exact set of genres (a "signature";
    a catalogue has far fewer signatures than media), each group most popular first, so
    ranking can find a user's best genre matches without a pass over the whole catalogue.
    Ties in popularity go to the lower index, here and wherever media are ranked.
    """

    info: ModelInfo
    media_ids: np.ndarray  # V16, sorted ascending
    popularity: np.ndarray  # float32 per media
    genre_names: tuple[str, ...]
    media_genres: list[np.ndarray]  # per genre index: int32 media indices having that genre
    neighbour_indptr: np.ndarray  # CSR over media: neighbours of media i are [indptr[i], indptr[i+1])
    neighbour_idx: np.ndarray  # int32
    neighbour_similarity: np.ndarray  # float32
    # What filters select by: each media's type (an index into media_type_names, -1 unknown)
    # and release year (0 unknown). Left out, every media's are unknown.
    media_type_names: tuple[str, ...] = ()
    media_type: np.ndarray | None = None  # int16 per media
    release_year: np.ndarray | None = None  # int32 per media
    # Media added after the sorted ones by `with_media` (new titles found by a catalog sync):
    # they come last, in no order, so ids are looked up through lookup_ids / lookup_idx.
    appended: int = 0

    signature_genres: np.ndarray = field(init=False, repr=False)  # bool (signatures, genres)
    media_signature: np.ndarray = field(init=False, repr=False)  # int64 signature of each media
    # CSR over signatures: the media of signature s are signature_media[indptr[s]:indptr[s+1]].
    signature_indptr: np.ndarray = field(init=False, repr=False)
    signature_media: np.ndarray = field(init=False, repr=False)  # int64, most popular first
    signature_sizes: np.ndarray = field(init=False, repr=False)  # int64 media per signature
    by_popularity: np.ndarray = field(init=False, repr=False)  # int64 every media, most popular first
    lookup_ids: np.ndarray = field(init=False, repr=False)  # V16 every media id, sorted
    lookup_idx: np.ndarray | None = field(init=False, repr=False)  # int64 model index of each; None: the same

    def __post_init__(self) -> None:
        media = len(self.media_ids)
        if self.media_type is None:
            object.__setattr__(self, "media_type", np.full(media, -1, dtype=np.int16))
        if self.release_year is None:
            object.__setattr__(self, "release_year", np.zeros(media, dtype=np.int32))
        membership = np.zeros((media, len(self.genre_names)), dtype=bool)
        for genre, members in enumerate(self.media_genres):
            membership[members, genre] = True
        if len(self.genre_names):
            # One key per media: its genre bits packed into bytes (np.unique over rows is slow).
            packed = np.packbits(membership, axis=1)
            keys = np.ascontiguousarray(packed).view(f"V{packed.shape[1]}").reshape(-1)
            _, first, media_signature = np.unique(keys, return_index=True, return_inverse=True)
            signature_genres = membership[first]
        else:
            signature_genres = np.zeros((1 if media else 0, 0), dtype=bool)
            media_signature = np.zeros(media, dtype=np.int64)
        media_signature = media_signature.reshape(-1).astype(np.int64)
        index = np.arange(media)
        order = np.lexsort((index, -self.popularity.astype(np.float64), media_signature))
        sizes = np.bincount(media_signature, minlength=len(signature_genres))
        derived = {
            "signature_genres": signature_genres,
            "media_signature": media_signature,
            "signature_indptr": np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
            "signature_media": order.astype(np.int64),
            "signature_sizes": sizes.astype(np.int64),
            "by_popularity": np.lexsort((index, -self.popularity.astype(np.float64))).astype(np.int64),
            "lookup_ids": self.media_ids,
            "lookup_idx": None,
        }
        if self.appended:
            id_order = np.argsort(self.media_ids, kind="stable")
            derived.update(lookup_ids=self.media_ids[id_order], lookup_idx=id_order.astype(np.int64))
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array of the model, the derived ones included (media_genres as one CSR pair:
        genre_indptr, genre_media), by name: what `from_arrays` takes back."""
        sizes = [len(members) for members in self.media_genres]
        arrays = {name: getattr(self, name) for name in _ARRAY_FIELDS}
        arrays["genre_indptr"] = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        arrays["genre_media"] = (
            np.concatenate(self.media_genres).astype(np.int32) if self.media_genres else np.zeros(0, np.int32)
        )
        if self.lookup_idx is None:  # not appended: the lookup is media_ids itself
            del arrays["lookup_idx"], arrays["lookup_ids"]
        return arrays

    @classmethod
    def from_arrays(
        cls,
        info: ModelInfo,
        genre_names: tuple[str, ...],
        media_type_names: tuple[str, ...],
        appended: int,
        arrays: dict[str, np.ndarray],
    ) -> ModelData:
        """The model of `arrays()` (for example mapped read-only from a file), taken as they are:
        nothing is derived again, nothing copied."""
        model = object.__new__(cls)
        indptr, members = arrays["genre_indptr"], arrays["genre_media"]
        values = {
            "info": info,
            "genre_names": tuple(genre_names),
            "media_type_names": tuple(media_type_names),
            "appended": appended,
            "media_genres": [members[indptr[g]:indptr[g + 1]] for g in range(len(indptr) - 1)],
            "lookup_ids": arrays.get("lookup_ids", arrays["media_ids"]),
            "lookup_idx": arrays.get("lookup_idx"),
            **{name: arrays[name] for name in _ARRAY_FIELDS if name not in ("lookup_ids", "lookup_idx")},
        }
        for name, value in values.items():
            object.__setattr__(model, name, value)
        return model

    def with_media(self, media: list[Media]) -> ModelData:
        """This model with the media of `media` it does not know appended (new titles): no
        neighbours, popularity 0, their genres, type and year; the model's version is the same."""
        media = list({m.id: m for m in media}.values())
        raw = np.frombuffer(b"".join(m.id.bytes for m in media), dtype="V16")
        known = np.zeros(len(media), dtype=bool)
        if len(self.lookup_ids) and len(media):
            place = np.minimum(np.searchsorted(self.lookup_ids, raw), len(self.lookup_ids) - 1)
            known = self.lookup_ids[place] == raw
        new = [m for m, k in zip(media, known.tolist()) if not k]
        if not new:
            return self
        first = len(self.media_ids)
        genre_names = list(self.genre_names)
        members: list[list[int]] = [[] for _ in genre_names]
        type_names = list(self.media_type_names)
        types = []
        for position, item in enumerate(new, start=first):
            for genre in item.genres:
                if genre not in genre_names:
                    genre_names.append(genre)
                    members.append([])
                members[genre_names.index(genre)].append(position)
            if item.media_type not in type_names:
                type_names.append(item.media_type)
            types.append(type_names.index(item.media_type))
        return ModelData(
            info=self.info,
            media_ids=np.concatenate((self.media_ids, np.frombuffer(b"".join(m.id.bytes for m in new), dtype="V16"))),
            popularity=np.concatenate((self.popularity, np.zeros(len(new), dtype=self.popularity.dtype))),
            genre_names=tuple(genre_names),
            media_genres=[
                np.concatenate((self.media_genres[g] if g < len(self.media_genres) else np.zeros(0, np.int32),
                                np.array(members[g], dtype=np.int32)))
                for g in range(len(genre_names))
            ],
            neighbour_indptr=np.concatenate(
                (self.neighbour_indptr, np.full(len(new), self.neighbour_indptr[-1], dtype=self.neighbour_indptr.dtype))
            ),
            neighbour_idx=self.neighbour_idx,
            neighbour_similarity=self.neighbour_similarity,
            media_type_names=tuple(type_names),
            media_type=np.concatenate((self.media_type, np.array(types, dtype=np.int16))),
            release_year=np.concatenate(
                (self.release_year, np.array([m.release_year or 0 for m in new], dtype=np.int32))
            ),
            appended=self.appended + len(new),
        )


# The arrays of ModelData besides media_genres, given or derived (see ModelData.arrays).
_ARRAY_FIELDS = (
    "media_ids", "popularity", "neighbour_indptr", "neighbour_idx", "neighbour_similarity", "media_type",
    "release_year", "signature_genres", "media_signature", "signature_indptr", "signature_media",
    "signature_sizes", "by_popularity", "lookup_ids", "lookup_idx",
)


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment: its share of the users and the settings it overrides for them
    (keys of services.experiments.assignment.OVERRIDES, values already parsed)."""

    name: str
    share: float
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    """An A/B experiment as ml.experiments holds it; the first variant is the control."""

    name: str
    salt: str
    variants: tuple[Variant, ...]
    started_at: datetime | None = None
    stopped_at: datetime | None = None

    def variant(self, name: str) -> Variant:
        """The variant called `name` (KeyError when there is none)."""
        for variant in self.variants:
            if variant.name == name:
                return variant
        raise KeyError(name)

    @property
    def model_versions(self) -> tuple[int, ...]:
        """The model versions its variants serve besides the serving one."""
        return tuple(sorted({v.overrides["model"] for v in self.variants if "model" in v.overrides}))


class Impression(NamedTuple):
    """One answered page, as the impression writer records it in ml.impressions (a tuple: one
    is made per answered page, on the request path)."""

    shown_at: datetime
    request_id: str
    user_id: UUID
    experiment: str | None
    variant: str | None
    model_version: int | None
    row_kind: str  # recommendations, because or similar
    media_ids: tuple[UUID, ...]
