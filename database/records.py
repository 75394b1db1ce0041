"""Plain records the repositories return."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import numpy as np


class Interaction(NamedTuple):
    """One row of engagement_db.interaction, as a user's history needs it."""

    media_id: UUID
    type: str
    value: float | None
    timestamp: datetime


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
    """

    info: ModelInfo
    media_ids: np.ndarray  # V16, sorted ascending
    popularity: np.ndarray  # float32 per media
    genre_names: tuple[str, ...]
    media_genres: list[np.ndarray]  # per genre index: int32 media indices having that genre
    neighbour_indptr: np.ndarray  # CSR over media: neighbours of media i are [indptr[i], indptr[i+1])
    neighbour_idx: np.ndarray  # int32
    neighbour_similarity: np.ndarray  # float32
