"""What a request asks to see: media types, genres (any of) and a range of release years.

Types and genres match whatever their case (`comedy` finds Comedy): the filter holds them
casefolded and compares the catalog's names casefolded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from database.records import Media, ModelData


@dataclass(frozen=True)
class MediaFilter:
    """A row's filter; an empty one lets every media through.

    It selects on the model's arrays (`mask`, no query), and the catalog's answer confirms it
    (`matches`): a media whose type, genres or year changed since the refresh is judged by
    what the catalog says now.
    """

    media_types: frozenset[str] = frozenset()
    genres: frozenset[str] = frozenset()
    release_year_min: int | None = None
    release_year_max: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "media_types", frozenset(name.casefold() for name in self.media_types))
        object.__setattr__(self, "genres", frozenset(name.casefold() for name in self.genres))

    def __bool__(self) -> bool:
        return bool(self.media_types or self.genres) or (
            self.release_year_min is not None or self.release_year_max is not None
        )

    def mask(self, model: ModelData) -> np.ndarray:
        """Per media of `model`: does it pass (a media of unknown type or year passes no such filter)."""
        passes = np.ones(len(model.media_ids), dtype=bool)
        if self.media_types:
            codes = [code for code, name in enumerate(model.media_type_names) if name.casefold() in self.media_types]
            passes &= np.isin(model.media_type, codes)
        if self.genres:
            in_genres = np.zeros(len(model.media_ids), dtype=bool)
            for position, name in enumerate(model.genre_names):
                if name.casefold() in self.genres:
                    in_genres[model.media_genres[position]] = True
            passes &= in_genres
        if self.release_year_min is not None or self.release_year_max is not None:
            year = model.release_year
            passes &= year != 0
            if self.release_year_min is not None:
                passes &= year >= self.release_year_min
            if self.release_year_max is not None:
                passes &= year <= self.release_year_max
        return passes

    def matches(self, media: Media) -> bool:
        """Does this media, as the catalog describes it now, pass."""
        if self.media_types and (media.media_type is None or media.media_type.casefold() not in self.media_types):
            return False
        if self.genres and not any(name.casefold() in self.genres for name in media.genres):
            return False
        year = media.release_year
        if self.release_year_min is not None and (year is None or year < self.release_year_min):
            return False
        if self.release_year_max is not None and (year is None or year > self.release_year_max):
            return False
        return True
