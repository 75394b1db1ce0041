"""The refresh's model search and quality gate, on its validation slice (services/validation.py).

Candidates are built on the slice's training pairs and measured on its held-out ones. The
search is deterministic for the same data and seed, and reuses what does not change between
trials: the co-occurrence (Gram) matrix and the long tail's cosine similarities are computed
once for every λ and k; EASE's inverse once per λ (the expensive step: about a minute for
10,000 media on 2 cores), its top k per k; the blend and the history weighting only re-rank
the same table. In order:

1. NEIGHBOURS_K: every k of K_VALUES at the given λ;
2. HISTORY_WEIGHTING (both) and the blend (CONTENT_WEIGHT, with COLLABORATIVE_WEIGHT = 1 - it:
   a hill-climb over CONTENT_WEIGHTS from the given one), on the best table: these only
   re-rank, so they come before λ, whose every value costs an EASE inverse;
3. λ: from the given value, halving or doubling while NDCG@10 improves (at most
   LAMBDA_TRIALS - 1 steps either way), every k at each λ tried; when it moved, step 2 again.
Each step keeps what the earlier ones chose (coordinate ascent): 10 to 20 trials in all, each
a ranking pass over the slice's users. A trial replaces the best so far only when it ranks the
same users better by more than a standard error of the difference (clearly_better): what wins
by chance on a small slice does not carry over to the next data, the given setting does.

A setting given explicitly (in the environment) is not tuned. REFRESH_TUNE_BUDGET bounds the
tuning, from the cut of the slice on: a trial starts only when it is expected to end within
it (as long as the last trial of its kind took: one that needs a new λ's EASE inverse, or one
that does not); past that the search stops (logged; the choice is then the best so far). The
serving model's settings are measured on the same slice, rebuilt on the same training pairs:
the serving model itself was built on data that includes the held-out pairs, so its own
figure would be inflated. That figure is what the quality gate compares with.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from database.records import ModelData
from services import neighbours, scoring, validation
from services.evaluation.metrics import mean_and_error
from services.model_settings import ModelSettings
from services.validation import Quality, Slice

log = logging.getLogger(__name__)

LAMBDA_TRIALS = 6
# A trial replaces the best so far only when it ranks better by more than this many standard
# errors of the paired per-user difference (clearly_better).
MIN_GAIN_SE = 1.0
LAMBDA_STEP = 2.0
K_VALUES = (50, 100, 200)
# From collaborative only to genre match only: on data shaped by genre taste (the synthetic
# generator's) the best blend is all genre.
CONTENT_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
@dataclass(frozen=True)
class Trial:
    settings: ModelSettings
    quality: Quality


@dataclass
class Outcome:
    """What the search chose and measured."""

    settings: ModelSettings
    quality: Quality
    serving: Quality | None  # the serving model's settings on the same slice (None: no serving settings)
    trials: list[Trial] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per step
    budget_reached: bool = False

    def record(self) -> dict:
        """ml.model_builds.validation."""
        return {
            **self.quality.as_dict(),
            "serving_ndcg": None if self.serving is None else round(self.serving.ndcg, 6),
            "trials": len(self.trials),
            "budget_reached": self.budget_reached,
            "seconds": {step: round(s, 2) for step, s in self.seconds.items()},
        }


class Tables:
    """Neighbour tables of one training set for any λ and k, sharing what they can (see the module)."""

    def __init__(self, sums: neighbours.MatrixSums, base: neighbours.NeighbourSettings, progress: bool) -> None:
        self._base = base
        self._progress = progress
        likes = sums.likes()
        self.cosine_only = base.ease_media <= 0 or not likes.any()  # then λ changes nothing
        self.ease_lambda, self._weights = None, None  # the λ whose EASE inverse is held
        if self.cosine_only:
            self._all = sums.cosine([None], progress)[0]
            return
        self._head = neighbours.head_media(likes, base.ease_media)
        self._gram = sums.co_occurrence(self._head, progress)
        tail = np.setdiff1d(np.flatnonzero(sums.positives() > 0), self._head)
        self._sample = neighbours.scale_sample(self._head)
        self._reference, self._tail = sums.cosine([self._sample, tail], progress) if len(tail) else (None, None)

    def table(self, ease_lambda: float, k: int) -> neighbours.Table:
        """What neighbours.assemble builds from these sums with this λ and k (ties aside)."""
        if self.cosine_only:
            return top_k(self._all, k)
        if self.ease_lambda != ease_lambda:
            self._weights = None  # one EASE inverse at a time (each is EASE_MEDIA² float64)
            self._weights = neighbours.ease_weights(self._gram.copy(), ease_lambda)
            self.ease_lambda = ease_lambda
        ease = neighbours.strongest(self._weights, self._head, k, progress=False)
        if self._tail is None:
            return ease
        reference = top_k(self._reference, k)
        return neighbours.with_tail(ease, top_k(self._tail, k), neighbours.scale_factor(ease, reference, self._sample))

    def release(self) -> None:
        self._gram = self._weights = None


def top_k(table: neighbours.Table, k: int) -> neighbours.Table:
    """Each media's k largest weights of `table` (a cosine table of positive weights, k or more
    per media): the table cosine_neighbours gives with k, ties aside."""
    media, neighbour, weight = table
    order = np.lexsort((neighbour, -weight, media))
    media_sorted = media[order]
    starts = np.flatnonzero(np.r_[True, media_sorted[1:] != media_sorted[:-1]]) if len(order) else np.zeros(0, np.int64)
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = order[rank < k]
    return media[keep], neighbour[keep], weight[keep]


def clearly_better(new: Quality, old: Quality) -> bool:
    """Whether `new` ranks the same users better than `old` by more than MIN_GAIN_SE standard
    errors of their per-user NDCG differences (a paired comparison): on a small slice a setting
    that wins by chance is not chosen, the given one stays."""
    difference = new.per_user - old.per_user
    if len(difference) < 2:
        return False
    gain, error = mean_and_error(difference.tolist())
    return gain > 0 and gain > MIN_GAIN_SE * error


def search(
    tables: Tables,
    model_of,  # neighbours.Table -> ModelData
    slice_: Slice,
    start: ModelSettings,
    tunable: frozenset[str],
    dislike: float,
    deadline: float,  # time.perf_counter() past which no trial may run (REFRESH_TUNE_BUDGET)
    serving: ModelSettings | None,
) -> Outcome:
    """The best settings on `slice_`, starting from `start`, searching `tunable` (see the module)."""
    trials: list[Trial] = []
    models: dict[tuple[float, int], ModelData] = {}
    seconds: dict[str, float] = {}
    budget = {"reached": False}

    def model(ease_lambda: float, k: int) -> ModelData:
        # Two at a time: the best so far (every later step ranks with it; building it again could
        # mean computing its λ's EASE inverse again) and the one being measured.
        key = (ease_lambda, k)
        if key not in models:
            for old in [m for m in models if m != (best.ease_lambda, best.neighbours_k)]:
                del models[old]
            models[key] = model_of(tables.table(ease_lambda, k))
        return models[key]

    best = start

    # How long the last trial took that needed a new λ's EASE inverse (True) or did not (False).
    took: dict[bool, float] = {}

    def new_lambda(settings: ModelSettings) -> bool:
        """Whether measuring `settings` computes an EASE inverse (its model neither kept nor at the held λ)."""
        return (not tables.cosine_only and (settings.ease_lambda, settings.neighbours_k) not in models
                and tables.ease_lambda != settings.ease_lambda)

    def known(settings: ModelSettings) -> Quality | None:
        """The quality of a trial already measured with these settings."""
        return next((done.quality for done in trials if done.settings.same_model(settings)), None)

    def measured(settings: ModelSettings, candidate: bool = True) -> Quality:
        if (quality := known(settings)) is not None:
            return quality
        kind, started = new_lambda(settings), time.perf_counter()
        quality = validation.measure(model(settings.ease_lambda, settings.neighbours_k), slice_,
                                     settings.weights(dislike), settings.history_weighting)
        took[kind] = time.perf_counter() - started
        if candidate:
            trials.append(Trial(settings, quality))
            log.debug("trial %s: NDCG@10 %.4f", settings, quality.ndcg)
        return quality

    best_quality = measured(start)

    def better(settings: ModelSettings) -> bool:
        """Measure `settings` (unless the budget is spent) and keep them if they rank clearly better."""
        nonlocal best, best_quality
        if known(settings) is None:
            kind = new_lambda(settings)
            if time.perf_counter() + took.get(kind, took.get(True, 0.0)) > deadline:
                budget["reached"] = True
                return False
        quality = measured(settings)
        if clearly_better(quality, best_quality):
            best, best_quality = settings, quality
            return True
        return False

    def climb(values: list, current, attempt) -> None:
        """Hill-climb one setting over its ordered `values` from `current`: `attempt(value)` (True
        when it improved) on each side, going on in a direction while it improves."""
        if current not in values:
            values = sorted(set(values) | {current})
        at = values.index(current)
        for step in (-1, 1):
            position, moved = at + step, False
            while 0 <= position < len(values) and attempt(values[position]):
                position, moved = position + step, True
            if moved:
                return  # one direction improved: the other is on the far side of where we started

    def timed(step: str, since: float) -> float:
        now = time.perf_counter()
        seconds[step] = seconds.get(step, 0.0) + now - since
        return now

    ks = sorted(set(K_VALUES) | {start.neighbours_k}) if "neighbours_k" in tunable else [start.neighbours_k]

    def at_lambda(ease_lambda: float) -> bool:
        # Every k at each λ tried: a ranking pass costs far less than computing a λ's EASE inverse again.
        improved = [better(replace(best, ease_lambda=ease_lambda, neighbours_k=k)) for k in ks]
        return any(improved)

    def blend(settings: ModelSettings, content: float) -> ModelSettings:
        return replace(settings, content_weight=content, collaborative_weight=round(1 - content, 6))

    def reranked() -> None:
        """The steps that only re-rank the best table: cheap, so they come before λ's."""
        if "history_weighting" in tunable:
            for weighting in scoring.HISTORY_WEIGHTINGS:
                better(replace(best, history_weighting=weighting))
        if "blend" in tunable:
            if best.content_weight + best.collaborative_weight != 1:  # the given blend, on the same scale
                better(blend(best, best.content_weight / (best.content_weight + best.collaborative_weight or 1)))
            climb(list(CONTENT_WEIGHTS), best.content_weight, lambda content: better(blend(best, content)))

    step_started = time.perf_counter()
    at_lambda(start.ease_lambda)
    step_started = timed("k", step_started)
    reranked()
    step_started = timed("blend and history weighting", step_started)
    if "ease_lambda" in tunable and not tables.cosine_only:
        lambdas = [start.ease_lambda * LAMBDA_STEP ** n for n in range(1 - LAMBDA_TRIALS, LAMBDA_TRIALS)]
        climb(lambdas, start.ease_lambda, at_lambda)
        step_started = timed("lambda (and k at each)", step_started)
        if best.ease_lambda != start.ease_lambda:
            reranked()  # again, on the new λ's table
            step_started = timed("blend and history weighting", step_started)

    serving_quality = None
    if serving is not None:
        serving_quality = measured(replace(serving, tuned=()), candidate=False)
        timed("serving model's settings", step_started)
    if budget["reached"]:
        log.warning("REFRESH_TUNE_BUDGET reached after %s trials (the next would have ended past it): the best "
                    "so far is chosen", len(trials))
    return Outcome(replace(best, tuned=tuple(sorted(tunable))), best_quality, serving_quality, trials, seconds,
                   budget["reached"])
