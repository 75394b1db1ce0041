"""Plain records the repositories return."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

import numpy as np


@dataclass(frozen=True)
class History:
    """One user's interactions (engagement_db), aggregated per media.

    positive_value is the media's largest LIKE/WATCH interaction value (1 where the value is
    missing, never below 0), or 0 when the user ever disliked the media or only disliked it.
    """

    media_ids: np.ndarray  # V16: every media the user liked, disliked or watched, each once
    positive_value: np.ndarray  # float64 per media


@dataclass(frozen=True)
class UserProfile:
    """A user as user_db knows them: whether they exist and their preferred genres."""

    user_id: UUID
    exists: bool
    genres: frozenset[str]


@dataclass(frozen=True)
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

    signature_genres: np.ndarray = field(init=False, repr=False)  # bool (signatures, genres)
    media_signature: np.ndarray = field(init=False, repr=False)  # int64 signature of each media
    # CSR over signatures: the media of signature s are signature_media[indptr[s]:indptr[s+1]].
    signature_indptr: np.ndarray = field(init=False, repr=False)
    signature_media: np.ndarray = field(init=False, repr=False)  # int64, most popular first
    signature_sizes: np.ndarray = field(init=False, repr=False)  # int64 media per signature
    by_popularity: np.ndarray = field(init=False, repr=False)  # int64 every media, most popular first

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
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)
