"""Row filters on the model's arrays, and as the catalog describes a media."""

import dataclasses
import uuid

import numpy as np

from database.records import Media
from services.filters import MediaFilter
from tests.unit.model_factory import make_model

# media: 0 movie 1994 Comedy, 1 series 1999 Drama, 2 movie unknown year Comedy+Drama, 3 unknown type 2005 no genre
MODEL = dataclasses.replace(
    make_model([["Comedy"], ["Drama"], ["Comedy", "Drama"], []], [1.0, 2.0, 3.0, 4.0]),
    media_type_names=("movie", "series"),
    media_type=np.array([0, 1, 0, -1], dtype=np.int16),
    release_year=np.array([1994, 1999, 0, 2005], dtype=np.int32),
)


def passing(row: MediaFilter) -> list[int]:
    return np.flatnonzero(row.mask(MODEL)).tolist()


def test_each_filter_selects_on_the_model_arrays():
    assert not MediaFilter() and passing(MediaFilter()) == [0, 1, 2, 3]
    assert passing(MediaFilter(media_types=frozenset({"movie"}))) == [0, 2]
    assert passing(MediaFilter(media_types=frozenset({"movie", "series"}))) == [0, 1, 2]
    assert passing(MediaFilter(media_types=frozenset({"podcast"}))) == []
    assert passing(MediaFilter(genres=frozenset({"Drama", "Horror"}))) == [1, 2]
    assert passing(MediaFilter(release_year_min=1995)) == [1, 3]  # an unknown year passes no year filter
    assert passing(MediaFilter(release_year_max=1999)) == [0, 1]
    assert passing(MediaFilter(frozenset({"movie"}), frozenset({"Comedy"}), 1990, 2000)) == [0]


def test_the_catalog_description_is_judged_the_same_way():
    media = Media(uuid.uuid4(), "A", "movie", 1994, None, ("Comedy",))
    assert MediaFilter().matches(media)
    assert MediaFilter(frozenset({"movie"}), frozenset({"Comedy", "Drama"}), 1994, 1994).matches(media)
    assert not MediaFilter(media_types=frozenset({"series"})).matches(media)
    assert not MediaFilter(genres=frozenset({"Drama"})).matches(media)
    assert not MediaFilter(release_year_min=1995).matches(media)
    assert not MediaFilter(release_year_max=1990).matches(dataclasses.replace(media, release_year=None))
