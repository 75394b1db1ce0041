"""Assignment to variants: a pure function of salt and user id whose split matches the shares."""

import uuid

import pytest
from scipy.stats import chisquare

from services.experiments.assignment import ExperimentError, Treatment, assign, define, parse_variant
from services.scoring import Weights

USERS = [uuid.UUID(int=i * 7919 + 13) for i in range(6000)]  # a few thousand ids, fixed


def test_assignment_is_deterministic_and_depends_on_the_salt():
    experiment = define("e", ["control", "b"], salt="salt-1")
    first = [assign(experiment, user).name for user in USERS]
    assert first == [assign(define("e", ["control", "b"], salt="salt-1"), user).name for user in USERS]
    other = [assign(define("e", ["control", "b"], salt="salt-2"), user).name for user in USERS]
    assert 0.4 < sum(a != b for a, b in zip(first, other)) / len(USERS) < 0.6  # a new salt reshuffles


@pytest.mark.parametrize("split", [None, [50, 50], [20, 30, 50], [90, 10]])
def test_the_split_matches_the_shares(split):
    names = ["control", "b", "c"][: len(split) if split else 2]
    experiment = define("e", names, split, salt="fixed")
    counts = [sum(assign(experiment, user).name == name for user in USERS) for name in names]
    expected = [len(USERS) * v.share for v in experiment.variants]
    assert chisquare(counts, expected).pvalue > 0.001, counts
    if split is None:
        assert [v.share for v in experiment.variants] == [0.5, 0.5]


def test_variants_parse_their_overrides():
    variant = parse_variant("b:CONTENT_WEIGHT=0.3,collaborative_weight=0.7,HISTORY_WEIGHTING=raw,diversity=0.2,"
                            "popular_only=false,model=4")
    assert variant.overrides == {"content_weight": 0.3, "collaborative_weight": 0.7, "history_weighting": "raw",
                                 "diversity": 0.2, "popular_only": False, "model": 4}
    assert parse_variant("control").overrides == {}


@pytest.mark.parametrize("text, message", [
    ("b:colour=red", "'colour=red' is not KEY=VALUE"),
    ("b:diversity=1.5", "between 0 and 1"),
    ("b:CONTENT_WEIGHT=-1", ">= 0"),
    ("b:HISTORY_WEIGHTING=zscore", "not one of centred, raw"),
    ("b:popular_only=yes", "not true or false"),
    ("b:model=latest", "not a model version"),
    ("b:", "nothing after ':'"),
    ("b c", "the name must be"),
])
def test_malformed_variants_say_what_is_wrong(text, message):
    with pytest.raises(ExperimentError, match=message):
        parse_variant(text)


def test_malformed_experiments_say_what_is_wrong():
    with pytest.raises(ExperimentError, match="at least two variants"):
        define("e", ["control"])
    with pytest.raises(ExperimentError, match="must differ"):
        define("e", ["a", "a"])
    with pytest.raises(ExperimentError, match="gives 3 shares for 2"):
        define("e", ["a", "b"], [1, 2, 3])
    with pytest.raises(ExperimentError, match="positive"):
        define("e", ["a", "b"], [1, 0])


def test_a_treatment_overrides_only_what_its_variant_names():
    defaults = Treatment(Weights(0.1, 0.9, 0.2), "centred")
    experiment = define("e", ["control", "b:CONTENT_WEIGHT=0.5", "p:popular_only=true"], salt="s")
    control, blend, popular = (defaults.of(experiment, v) for v in experiment.variants)
    assert (control.weights, control.history_weighting, control.variant) == (Weights(0.1, 0.9, 0.2), "centred", "control")
    assert blend.weights == Weights(0.5, 0.9, 0.2) and blend.diversity is None
    assert popular.popular_only and popular.weights == Weights(0, 0, 0)
    assert defaults.of(None, None) is defaults
