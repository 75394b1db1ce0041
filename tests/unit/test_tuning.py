"""The refresh's validation slice, its shared tables, the quality gate and the settings a version is served with."""

from dataclasses import replace

import numpy as np
import pytest

from services import neighbours, tuning, validation
from services.model_settings import TUNABLE, ModelSettings, given, served
from services.neighbours import MatrixSums, NeighbourSettings, binary_matrix
from services.refresh import Guard, ModelRejected, Tuning
from services.validation import Quality
from settings import ConfigError, Settings

URLS = {"USER_DB_URL": "postgresql:///u", "CATALOG_DB_URL": "postgresql:///c", "ENGAGEMENT_DB_URL": "postgresql:///e"}
DEFAULTS = ModelSettings(200.0, 100, 0.1, 0.9, "centred")


def random_sums(seed: int, k: int, ease_media: int) -> tuple[MatrixSums, NeighbourSettings]:
    rng = np.random.default_rng(seed)
    users, media = 300, 80
    user = rng.integers(0, users, 4000)
    item = np.minimum(rng.zipf(1.3, 4000) - 1, media - 1)  # popular media first, a long tail
    liked = rng.random(4000) < 0.6
    settings = NeighbourSettings(k=k, ease_lambda=200.0, ease_media=ease_media, user_damping=1.0, shrinkage=2.0)
    sums = MatrixSums(binary_matrix(user, item, users, media), binary_matrix(user[liked], item[liked], users, media),
                      settings)
    return sums, settings


def by_media(table) -> dict[int, list[float]]:
    """Each media's weights, largest first: the table with ties aside (which of two equal
    weights is kept is not part of the contract)."""
    out: dict[int, list[float]] = {}
    for m, w in zip(table[0].tolist(), table[2].tolist()):
        out.setdefault(m, []).append(w)
    return {m: sorted(ws, reverse=True) for m, ws in out.items()}


@pytest.mark.parametrize("ease_media", [30, 0])  # EASE head with a cosine tail; cosine only
def test_the_shared_tables_are_what_a_build_with_each_lambda_and_k_gives(ease_media):
    widest, base = random_sums(1, 40, ease_media)
    tables = tuning.Tables(widest, base, progress=False)
    for ease_lambda in (50.0, 400.0, 50.0):
        for k in (5, 20, 40):
            sums, settings = random_sums(1, k, ease_media)
            expected = neighbours.assemble(sums, replace(settings, ease_lambda=ease_lambda), progress=False)
            got = tables.table(ease_lambda, k)
            want, have = by_media(expected), by_media(got)
            assert want.keys() == have.keys()
            for m in want:
                assert have[m] == pytest.approx(want[m], rel=1e-9, abs=1e-12), (ease_lambda, k, m)


def test_top_k_keeps_each_media_largest_weights():
    table = (np.array([0, 0, 0, 1, 1]), np.array([1, 2, 3, 0, 2]), np.array([0.2, 0.9, 0.5, 0.3, 0.7]))
    media, neighbour, weight = tuning.top_k(table, 2)
    assert list(zip(media.tolist(), neighbour.tolist())) == [(0, 2), (0, 3), (1, 2), (1, 0)]
    assert weight.tolist() == [0.9, 0.5, 0.7, 0.3]


def pairs_of(rows):
    """(user, media, positive, value, disliked, newest) arrays from (user, media, newest[, positive])."""
    user = np.array([r[0] for r in rows])
    media = np.array([r[1] for r in rows])
    newest = np.array([r[2] for r in rows], dtype=np.int64)
    positive = np.array([r[3] if len(r) > 3 else True for r in rows])
    return user, media, positive, positive.astype(np.float32), ~positive, newest


def test_the_slice_holds_out_each_sampled_users_newest_positive_pairs():
    rows = []
    for u in range(60):  # 60 users, 5 positive pairs each (times 1..5) and one negative pair, the newest
        rows += [(u, (u + j) % 40, j) for j in range(1, 6)] + [(u, 39 - u % 5, 9, False)]
    user, media, positive, value, disliked, newest = pairs_of(rows)
    cut = validation.cut(user, media, positive, value, disliked, newest)
    assert cut.users.tolist() == list(range(60))  # fewer than SAMPLE_USERS: all of them
    for n, u in enumerate(cut.users.tolist()):
        assert cut.held_out[n] == {(u + 5) % 40}  # ceil(0.2 * 5) = 1: the newest positive one
        history = cut.history[n][0].tolist()
        assert sorted(history) == sorted([(u + j) % 40 for j in range(1, 5)] + [39 - u % 5])
    assert cut.train.sum() == len(rows) - 60 and not cut.train[newest == 5].any()
    again = validation.cut(user, media, positive, value, disliked, newest)
    assert again.users.tolist() == cut.users.tolist() and np.array_equal(again.train, cut.train)


def test_what_is_to_be_found_is_the_liked_part_of_what_is_held_out():
    rows = [(u, (u + j) % 40, j) for u in range(80) for j in range(1, 11)]  # 10 positive pairs each
    user, media, positive, value, disliked, newest = pairs_of(rows)
    # Users 0-59 liked their newest pair only; users 60-79 liked an old one only.
    liked = np.where(user < 60, newest == 10, newest == 1)
    cut = validation.cut(user, media, positive, value, disliked, newest, liked)
    assert cut.users.tolist() == list(range(60))  # nothing liked among the newest two: left out
    for n, u in enumerate(cut.users.tolist()):
        assert cut.held_out[n] == {(u + 10) % 40}  # the newest two held out, the liked one to find
        assert (u + 9) % 40 not in cut.history[n][0].tolist()  # the other is held out too, not history
    assert cut.train[user >= 60].all()  # the users left out keep every pair for training


def test_no_slice_without_enough_users_with_enough_positive_pairs():
    rows = [(u, j, j) for u in range(validation.MIN_USERS - 1) for j in range(validation.MIN_POSITIVE)]
    rows += [(u, j, j) for u in range(100, 200) for j in range(validation.MIN_POSITIVE - 1)]
    assert validation.cut(*pairs_of(rows)) is None


def test_a_sample_is_drawn_when_there_are_more_users_and_is_the_same_each_time():
    rows = [(u, j, j) for u in range(500) for j in range(4)]
    one = validation.cut(*pairs_of(rows), sample=100)
    two = validation.cut(*pairs_of(rows), sample=100)
    other = validation.cut(*pairs_of(rows), sample=100, seed=1)
    assert len(one.users) == 100 and one.users.tolist() == two.users.tolist() != other.users.tolist()


def outcome(new: float, old: float | None) -> tuning.Outcome:
    serving = None if old is None else Quality(old, 0.1, 1.0, 100)
    return tuning.Outcome(DEFAULTS, Quality(new, 0.1, 1.0, 100), serving)


def test_the_gate_refuses_a_model_more_than_the_allowed_share_below_the_serving_models_settings():
    gate, info = Tuning(DEFAULTS, max_drop=0.05), type("Info", (), {"version": 7})()
    gate.check(outcome(0.096, 0.1), info, Guard(0.5))  # 4 % below: published
    gate.check(outcome(0.2, None), None, Guard(0.5))  # nothing to compare with
    with pytest.raises(ModelRejected) as refused:
        gate.check(outcome(0.09, 0.1), info, Guard(0.5))
    message = str(refused.value)
    assert "0.0900" in message and "0.1000" in message and "version 7" in message and "--force" in message
    assert "\n" not in message
    gate.check(outcome(0.09, 0.1), info, Guard(0.5, force=True))


def test_a_version_is_served_with_its_recorded_settings_except_those_the_environment_gives():
    recorded = ModelSettings(100.0, 200, 0.3, 0.7, "raw", ("blend", "ease_lambda")).as_dict()
    assert served(recorded, DEFAULTS, frozenset()) == ModelSettings.of(recorded)
    assert served(recorded, DEFAULTS, frozenset({"blend"})) == replace(
        ModelSettings.of(recorded), content_weight=0.1, collaborative_weight=0.9)
    assert served(recorded, DEFAULTS, frozenset({"history_weighting"})).history_weighting == "centred"
    assert served(None, DEFAULTS, frozenset()) == DEFAULTS  # built before settings were recorded


def test_settings_given_in_the_environment_are_named_and_not_tuned():
    settings = Settings.from_env({**URLS, "CONTENT_WEIGHT": "0.3", "EASE_LAMBDA": "", "REFRESH_TUNE": "yes"})
    assert given(settings.explicit) == {"blend"} and settings.refresh_tune
    assert given(Settings.from_env(URLS).explicit) == set()
    assert given(frozenset({"ease_lambda", "neighbours_k", "history_weighting"})) == set(TUNABLE) - {"blend"}
    assert Settings.from_env({**URLS, "REFRESH_TUNE": "off"}).refresh_tune is False
    with pytest.raises(ConfigError, match="REFRESH_TUNE='maybe' is not true or false"):
        Settings.from_env({**URLS, "REFRESH_TUNE": "maybe"})
    with pytest.raises(ConfigError, match="QUALITY_MAX_DROP"):
        Settings.from_env({**URLS, "QUALITY_MAX_DROP": "2"})


def test_a_setting_is_chosen_only_when_it_ranks_the_same_users_clearly_better():
    rng = np.random.default_rng(0)
    base = rng.random(400)

    def quality(per_user):
        return Quality(float(per_user.mean()), 0.1, 1.0, len(per_user), per_user)

    assert tuning.clearly_better(quality(base + 0.02), quality(base))  # every user a little better
    assert not tuning.clearly_better(quality(base), quality(base))
    lucky = base.copy()
    lucky[0] += 0.8  # one user's luck lifts the mean, not the users
    assert quality(lucky).ndcg > base.mean() and not tuning.clearly_better(quality(lucky), quality(base))


def test_the_search_starts_no_trial_that_would_end_past_its_budget(monkeypatch):
    """A clock that only the trials move: a new λ's EASE inverse takes 60 s, a ranking pass 4 s."""
    now = [0.0]
    ends = []

    class Tables:
        cosine_only, ease_lambda = False, None

        def table(self, ease_lambda, k):
            if ease_lambda != self.ease_lambda:
                now[0] += 60
                self.ease_lambda = ease_lambda
            return ease_lambda, k

    def measure(model, slice_, weights, history_weighting):
        now[0] += 4
        ends.append(now[0])
        return Quality(0.1, 0.1, 1.0, 100, np.full(100, 0.1))  # nothing is ever clearly better

    monkeypatch.setattr(tuning.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(tuning.validation, "measure", measure)
    outcome = tuning.search(Tables(), lambda table: table, None, DEFAULTS, TUNABLE, 0.0, 150.0, None)
    assert outcome.budget_reached and outcome.settings.same_model(DEFAULTS)
    # The start (64 s), the other two k (72 s), raw weighting and two blends (84 s); a new λ,
    # expected to take the start's 64 s, ends at 148 s; its next k, expected at 4 s, would end
    # at 152 s: it and everything after is not started.
    assert ends[-1] == 148.0 and len(ends) == 7
    assert [t.settings.ease_lambda for t in outcome.trials][-1] != DEFAULTS.ease_lambda
