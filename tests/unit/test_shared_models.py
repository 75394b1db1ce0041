"""One copy of the model per machine: a model written once, mapped read-only by every worker."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import numpy as np
import pytest

from database.records import ModelData
from services import scoring
from services.shared_models import STALE_SECONDS, SharedModels
from tests.unit.model_factory import make_history, make_media, make_model, media_uuid


def sample_model() -> ModelData:
    model = make_model(
        [["Drama"], ["Comedy", "Drama"], ["Comedy"], ["Horror"], []],
        [5.0, 3.0, 4.0, 1.0, 2.0],
        {0: [(1, 0.5), (2, 0.25)], 1: [(0, 0.5)], 2: [(0, 0.25), (3, -0.1)]},
    )
    info = replace(model.info, version=7, settings={"ease_lambda": 100.0}, validation={"ndcg": 0.1})
    return replace(model, info=info)


def assert_same(mapped: ModelData, model: ModelData) -> None:
    assert mapped.info == model.info
    assert (mapped.genre_names, mapped.media_type_names, mapped.appended) == (
        model.genre_names, model.media_type_names, model.appended)
    assert mapped.arrays().keys() == model.arrays().keys()
    for name, array in model.arrays().items():
        assert mapped.arrays()[name].dtype == array.dtype and np.array_equal(mapped.arrays()[name], array), name
    signals = scoring.user_signals(mapped, ["Comedy"], make_history({0: 4.0}))
    expected = scoring.rank_for_user(model, signals, scoring.Weights(0.4, 0.6), 3, explain=2)
    ranked = scoring.rank_for_user(mapped, signals, scoring.Weights(0.4, 0.6), 3, explain=2)
    assert ranked.media_idx.tolist() == expected.media_idx.tolist() and ranked.because == expected.because
    assert ranked.score.tolist() == expected.score.tolist()


def test_the_first_worker_writes_the_version_and_the_others_map_it_without_loading(tmp_path):
    model, loads = sample_model(), []

    def load():
        loads.append(1)
        return model

    first = SharedModels(tmp_path).version(7, load)
    second = SharedModels(tmp_path).version(7, load)  # another worker, same directory
    assert loads == [1]
    assert_same(first, model)
    assert_same(second, model)
    assert not second.neighbour_similarity.flags.writeable  # mapped read-only, not copied
    assert isinstance(second.neighbour_similarity, np.ndarray) and type(second.neighbour_similarity) is np.ndarray
    assert [p.name for p in tmp_path.glob("*.model")] == ["v7.model"]


def test_a_version_the_database_does_not_have_writes_nothing(tmp_path):
    assert SharedModels(tmp_path).version(3, lambda: None) is None
    assert not list(tmp_path.glob("*.model"))


def test_a_model_the_catalog_sync_extended_is_shared_by_its_content(tmp_path):
    shared = SharedModels(tmp_path)
    base = shared.version(7, sample_model)
    new = [make_media(["Comedy"], media_uuid(9)), make_media(["Western"], media_uuid(8))]
    extended = shared.share(base.with_media(new))
    again = SharedModels(tmp_path).share(base.with_media(new))  # another worker found the same media
    assert_same(extended, base.with_media(new))
    assert_same(again, extended)
    assert extended.appended == 2 and extended.lookup_idx is not None
    assert len(list(tmp_path.glob("*.model"))) == 2
    other = shared.share(base.with_media(new[:1]))
    assert len(list(tmp_path.glob("*.model"))) == 3 and other.appended == 1


def test_files_no_worker_mapped_for_a_while_are_removed_but_not_the_ones_in_use(tmp_path):
    shared = SharedModels(tmp_path)
    old = shared.version(6, lambda: replace(sample_model(), info=replace(sample_model().info, version=6)))
    current = shared.version(7, sample_model)
    long_ago = time.time() - STALE_SECONDS - 1
    for path in tmp_path.glob("*.model"):
        os.utime(path, (long_ago, long_ago))
    shared.remove_stale([current])
    assert [p.name for p in tmp_path.glob("*.model")] == ["v7.model"]
    assert old.neighbour_similarity.tolist() == sample_model().neighbour_similarity.tolist()  # still mapped


def test_a_loaded_model_of_another_version_is_refused(tmp_path):
    with pytest.raises(ValueError, match="asked for model 8"):
        SharedModels(tmp_path).version(8, sample_model)
