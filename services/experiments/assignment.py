"""Who gets which variant, and what a variant changes: parsing `--variant`, hashing users, treatments.

A user's variant is a pure function of the experiment's salt and the user id: the first 8
bytes of BLAKE2b(salt, user id) read as a number in [0, 1), placed on the variants' cumulative
shares. No storage, no query: every worker, instance and restart gives the same answer, and
users spread over the variants as the shares say, within sampling error.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import dataclass
from typing import Sequence
from uuid import UUID

from database.records import Experiment, Variant
from services.scoring import HISTORY_WEIGHTINGS, Weights

# What a variant may override (KEY=VALUE, KEY case-insensitive; see _value for the values).
OVERRIDES = ("content_weight", "collaborative_weight", "history_weighting", "diversity", "popular_only", "model")
OVERRIDE_NAMES = "CONTENT_WEIGHT, COLLABORATIVE_WEIGHT, HISTORY_WEIGHTING, diversity, popular_only, model"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class ExperimentError(ValueError):
    """A malformed experiment definition; the message names what is wrong."""


@dataclass(frozen=True)
class Treatment:
    """How one user's answers are ranked: the settings their model is served with, with their
    variant's overrides (the variant's `model` is chosen before: RecommendationService._serve)."""

    weights: Weights
    history_weighting: str
    diversity: float | None = None  # the default when the request gives none (None: 0)
    popular_only: bool = False  # rank by popularity alone (a non-personalised baseline)
    experiment: str | None = None
    variant: str | None = None

    def of(self, experiment: Experiment | None, variant: Variant | None) -> "Treatment":
        """This treatment (the service's defaults) as `variant` of `experiment` changes it."""
        if experiment is None or variant is None:
            return self
        o = variant.overrides
        popular_only = o.get("popular_only", False)
        return Treatment(
            # Popular only: every score 0, so media rank by popularity (the tie-break), unseen first.
            weights=Weights(0.0, 0.0, 0.0) if popular_only else Weights(
                o.get("content_weight", self.weights.content),
                o.get("collaborative_weight", self.weights.collaborative),
                self.weights.dislike,
            ),
            history_weighting=o.get("history_weighting", self.history_weighting),
            diversity=o.get("diversity", self.diversity),
            popular_only=popular_only,
            experiment=experiment.name,
            variant=variant.name,
        )


def bucket(salt: str, user_id: UUID) -> float:
    """The user's place in [0, 1) for this salt (uniform over user ids)."""
    digest = hashlib.blake2b(user_id.bytes, digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign(experiment: Experiment, user_id: UUID) -> Variant:
    """The variant `user_id` is in."""
    point = bucket(experiment.salt, user_id) * sum(v.share for v in experiment.variants)
    total = 0.0
    for variant in experiment.variants:
        total += variant.share
        if point < total:
            return variant
    return experiment.variants[-1]  # rounding at the top end


def new_salt() -> str:
    """A fresh random salt: a new experiment reshuffles the users."""
    return secrets.token_hex(8)


def define(name: str, variants: Sequence[str], split: Sequence[float] | None = None, salt: str | None = None) -> Experiment:
    """An experiment from the command line's NAME, `--variant NAME[:KEY=VALUE,...]` (the first is
    the control) and `--split` (percentages or weights; equal shares without it).

    Raises ExperimentError naming the first problem.
    """
    if not _NAME.fullmatch(name):
        raise ExperimentError(f"experiment name {name!r}: use 1-63 letters, digits, '.', '_' or '-'")
    if len(variants) < 2:
        raise ExperimentError("an experiment needs at least two variants (--variant control --variant NAME:KEY=VALUE)")
    parsed = [parse_variant(text) for text in variants]
    names = [v.name for v in parsed]
    if len(set(names)) != len(names):
        raise ExperimentError(f"variant names must differ: {', '.join(names)}")
    if split is None:
        shares = [1 / len(parsed)] * len(parsed)
    else:
        if len(split) != len(parsed):
            raise ExperimentError(f"--split gives {len(split)} shares for {len(parsed)} variants")
        if any(not math.isfinite(s) or s <= 0 for s in split):
            raise ExperimentError("--split shares must be positive numbers")
        shares = [s / sum(split) for s in split]
    return Experiment(name, salt or new_salt(), tuple(Variant(v.name, s, v.overrides) for v, s in zip(parsed, shares)))


def parse_variant(text: str) -> Variant:
    """`NAME` or `NAME:KEY=VALUE[,KEY=VALUE...]` (share not set yet)."""
    name, colon, rest = text.partition(":")
    if not _NAME.fullmatch(name):
        raise ExperimentError(f"variant {text!r}: the name must be 1-63 letters, digits, '.', '_' or '-'")
    overrides: dict = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, equals, value = part.partition("=")
        key = key.strip().lower()
        if not equals or key not in OVERRIDES:
            raise ExperimentError(f"variant {name}: {part!r} is not KEY=VALUE with KEY one of {OVERRIDE_NAMES}")
        overrides[key] = _value(name, key, value.strip())
    if colon and not overrides:
        raise ExperimentError(f"variant {name}: nothing after ':' (give KEY=VALUE, or no ':')")
    return Variant(name, 0.0, overrides)


def _value(variant: str, key: str, raw: str):
    where = f"variant {variant}: {key}={raw!r}"
    if key in ("content_weight", "collaborative_weight", "diversity"):
        try:
            value = float(raw)
        except ValueError:
            raise ExperimentError(f"{where} is not a number") from None
        high = 1.0 if key == "diversity" else math.inf
        if not 0 <= value <= high:
            raise ExperimentError(f"{where} must be between 0 and 1" if key == "diversity" else f"{where} must be >= 0")
        return value
    if key == "history_weighting":
        if raw not in HISTORY_WEIGHTINGS:
            raise ExperimentError(f"{where} is not one of {', '.join(HISTORY_WEIGHTINGS)}")
        return raw
    if key == "popular_only":
        if raw.lower() not in ("true", "false"):
            raise ExperimentError(f"{where} is not true or false")
        return raw.lower() == "true"
    try:  # model
        version = int(raw)
    except ValueError:
        raise ExperimentError(f"{where} is not a model version (see: python -m ml_service models)") from None
    if version < 1:
        raise ExperimentError(f"{where} is not a model version (see: python -m ml_service models)")
    return version
