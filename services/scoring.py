"""The recommendation arithmetic: pure functions of the model arrays and one user's data, no I/O.

The API and the offline evaluation both rank through `rank_for_user`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable
from uuid import UUID

import numpy as np

from database.records import History, Media, ModelData

_NONE = np.zeros(0, dtype=np.int64)  # "no media", shared: read-only
_NONE.setflags(write=False)
# Hybrid scores below this count as zero: such an item is popular-filled, not hybrid-ranked.
MIN_HYBRID_SCORE = 1e-6
# Popularity breaks ties between equal hybrid scores without ever outweighing a real
# difference: it adds at most this much to the ranking key.
POPULARITY_TIEBREAK = 1e-9
# How a user's interaction values weigh their positive media (Settings.history_weighting):
# "centred" by the user's own mean and spread, or the "raw" values.
HISTORY_WEIGHTINGS = ("centred", "raw")
# Centred weights: max(z · n / (n + CENTRED_PRIOR_COUNT) + CENTRED_OFFSET, 0) + CENTRED_FLOOR,
# z in the user's standard deviations, n the user's positive media.
CENTRED_OFFSET = 0.5
CENTRED_FLOOR = 0.05
CENTRED_PRIOR_COUNT = 10


@dataclass(frozen=True)
class Weights:
    """How content and collaborative scores blend into the hybrid score, and how much a
    disliked media's similarities count against its neighbours (InteractionWeights.dislike)."""

    content: float
    collaborative: float
    dislike: float = 0.0


@dataclass(frozen=True)
class UserSignals:
    """One user's data in model indices: what they liked, what to exclude, which genres they prefer."""

    positive_idx: np.ndarray  # media engaged with positively (LIKE/WATCH, never disliked)
    positive_weight: np.ndarray  # their interaction values
    excluded_idx: np.ndarray  # every media the user interacted with in any way, each once
    genre_idx: np.ndarray  # the user's preferred genres known to the model (into genre_names)
    genre_count: int  # all the user's preferred genres: the content score's denominator
    disliked_idx: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # media the user disliked


@dataclass(frozen=True)
class Ranking:
    """The best media for one user, best first, with the parts of each score."""

    media_idx: np.ndarray
    score: np.ndarray
    content: np.ndarray
    collaborative: np.ndarray
    # Per media: the user's media that add most to its collaborative score (see `because`;
    # empty unless rank_for_user was asked to explain).
    because: list[list[int]] | None = None

    @property
    def is_hybrid(self) -> np.ndarray:
        """True where the item was ranked by its hybrid score, False where popularity filled it."""
        return self.score >= MIN_HYBRID_SCORE


@dataclass(frozen=True)
class Pool:
    """The media one request may recommend (all, or a filter's matches), arranged for ranking.

    The model's genre signatures and popularity order restricted to the pool: built once per
    request with a pass over the catalogue's arrays, then shared by every user of the request.
    """

    mask: np.ndarray | None  # bool per media; None: every media
    size: int
    signature_indptr: np.ndarray
    signature_media: np.ndarray
    signature_sizes: np.ndarray
    by_popularity: np.ndarray

    @classmethod
    def of(cls, model: ModelData, mask: np.ndarray | None = None) -> "Pool":
        """The pool of the media where `mask` is True (every media without one)."""
        if mask is None:
            return cls(None, len(model.media_ids), model.signature_indptr, model.signature_media,
                       model.signature_sizes, model.by_popularity)
        signature_media = model.signature_media[mask[model.signature_media]]  # still grouped by signature
        sizes = np.bincount(model.media_signature[signature_media], minlength=len(model.signature_sizes))
        return cls(
            mask,
            int(np.count_nonzero(mask)),
            np.concatenate(([0], np.cumsum(sizes))).astype(np.int64),
            signature_media,
            sizes.astype(np.int64),
            model.by_popularity[mask[model.by_popularity]],
        )


def media_indices(model: ModelData, media_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model indices of `media_ids` (V16), and a mask of which ids the model knows."""
    if len(media_ids) == 0 or len(model.media_ids) == 0:
        return np.zeros(len(media_ids), dtype=np.int64), np.zeros(len(media_ids), dtype=bool)
    place = np.minimum(np.searchsorted(model.lookup_ids, media_ids), len(model.media_ids) - 1)
    found = model.lookup_ids[place] == media_ids
    return (place if model.lookup_idx is None else model.lookup_idx[place]), found


def excluded_indices(model: ModelData, media_ids: Iterable[UUID]) -> np.ndarray:
    """Model indices of the media among `media_ids` that the model knows (the others cannot be ranked anyway)."""
    raw = np.frombuffer(b"".join(media_id.bytes for media_id in media_ids), dtype="V16")
    idx, known = media_indices(model, raw)
    return idx[known]


def user_signals(
    model: ModelData,
    genres: Iterable[str],
    history: History | None,
    history_weighting: str = "centred",
    also_excluded: np.ndarray | None = None,
) -> UserSignals:
    """Map one user's history and genres to model indices.

    The positive media are those with a positive_value (see History); their weights are those
    values centred on the user (see `centred_weights`) or, with history_weighting="raw", as is.
    A value that is not a finite number counts as missing (1). Every media of the history is
    excluded from the user's recommendations, and those of `also_excluded` (model indices).
    """
    media_ids = history.media_ids if history is not None else np.zeros(0, dtype="V16")
    values = history.positive_value if history is not None else np.zeros(0)
    disliked = history.disliked if history is not None else np.zeros(0, dtype=bool)
    values = np.where(np.isfinite(values), values, 1.0)
    idx, known = media_indices(model, media_ids)
    positive = values > 0
    positive_weight = values[positive]
    if history_weighting == "centred":
        positive_weight = centred_weights(positive_weight)
    genres = set(genres)
    genre_idx = np.array([i for i, name in enumerate(model.genre_names) if name in genres], dtype=np.int64)
    return UserSignals(
        positive_idx=idx[positive & known],
        positive_weight=positive_weight[known[positive]],
        excluded_idx=idx[known] if also_excluded is None or not len(also_excluded) else np.union1d(
            idx[known], also_excluded
        ),
        genre_idx=genre_idx,
        genre_count=len(genres),
        disliked_idx=idx[disliked & known],
    )


def centred_weights(values: np.ndarray) -> np.ndarray:
    """Weights from one user's values, relative to that user: max(z · n / (n + 10) + 0.5, 0) + 0.05.

    z is each value in standard deviations from the user's mean, so a generous rater's 4 and
    a strict rater's 4 stop meaning the same, and what the user liked most leads. The mean and
    spread of a short history say little, so z is shrunk by n / (n + 10) (n values): a new
    user's media weigh nearly alike. The result does not depend on the value scale (stars,
    percent watched); all-equal values weigh the same; the floor keeps every media in play.
    """
    n = len(values)
    if n == 0:
        return values
    deviation = values - values.mean()
    spread = np.sqrt(deviation @ deviation / n)  # the standard deviation (values.std() is slower on short arrays)
    z = deviation / spread if spread > 0 else np.zeros_like(values)
    return np.maximum(z * (n / (n + CENTRED_PRIOR_COUNT)) + CENTRED_OFFSET, 0.0) + CENTRED_FLOOR


def _neighbour_entries(model: ModelData, media_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of every neighbour entry of the media `media_idx` (concatenated in their
    order, each media's entries most similar first), and for each entry which of them it is."""
    starts = model.neighbour_indptr[media_idx]
    lengths = model.neighbour_indptr[media_idx + 1] - starts
    # Without a Python loop: a running index, shifted to each media's start.
    positions = np.arange(int(lengths.sum())) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return positions, np.repeat(np.arange(len(media_idx)), lengths)


@dataclass(frozen=True)
class _Entries:
    """The neighbour entries of a user's media: for each, the media it reaches, which of the
    user's media it comes from (an index into positive_idx, then disliked_idx) and its
    contribution (weight × similarity)."""

    targets: np.ndarray
    seed: np.ndarray
    contribution: np.ndarray
    nonpositive: bool  # some contribution is 0 or below (a negative or zero similarity, a dislike)


def _co_interaction_sums(model: ModelData, signals: UserSignals, dislike: float = 0.0) -> tuple[np.ndarray, _Entries]:
    """Per media: the sum over the user's positive media of weight × similarity, less
    `dislike` × similarity over their disliked media (not scaled); and the entries summed."""
    seeds, weights = signals.positive_idx, signals.positive_weight
    if dislike > 0 and len(signals.disliked_idx):
        seeds = np.concatenate((seeds, signals.disliked_idx))
        weights = np.concatenate((weights, np.full(len(signals.disliked_idx), -dislike)))
    positions, seed = _neighbour_entries(model, seeds)
    contribution = weights[seed] * model.neighbour_similarity[positions]
    entries = _Entries(model.neighbour_idx[positions], seed, contribution, bool((contribution <= 0).any()))
    # Summed in the entries' order, in doubles (bincount answers integers when there is no entry).
    sums = np.bincount(entries.targets, weights=entries.contribution, minlength=len(model.media_ids))
    return sums.astype(np.float64, copy=False), entries


def rank_for_user(
    model: ModelData, signals: UserSignals, weights: Weights, count: int, pool: Pool | None = None, explain: int = 0
) -> Ranking:
    """The `count` best media of `pool` (default: all) the user has not interacted with, by
    hybrid score then popularity; with `explain`, each one's `because` (up to that many).

    Media with a hybrid score come first; popular media fill the remaining places, so every
    user gets `count` items as long as the pool has that many they have not seen. Equal
    keys go to the lower index. Only candidates that can reach the top are scored: every media
    with a collaborative score, and the most popular media of the best-matching genre sets
    (`_genre_candidates`); the result is the same as scoring the whole pool.
    """
    pool = pool or Pool.of(model)
    excluded = signals.excluded_idx
    if pool.mask is not None:
        excluded = excluded[pool.mask[excluded]]  # exclusions outside the pool change nothing
    count = max(0, min(count, pool.size - len(excluded)))
    co_interaction, entries = _co_interaction_sums(model, signals, weights.dislike)
    matches = model.signature_genres[:, signals.genre_idx].sum(axis=1)  # per signature: user genres it has
    allowed = co_interaction != 0
    # Media pushed below 0 (negative neighbour weights, dislikes) may fall below the genre
    # candidates: ask for as many more (none when every contribution is positive).
    lowered = np.flatnonzero(co_interaction < 0) if entries.nonpositive else _NONE
    if pool.mask is not None:
        allowed &= pool.mask
        lowered = lowered[pool.mask[lowered]]
    genre_candidates = _genre_candidates(
        model, pool, matches, np.concatenate((excluded, lowered)), count, weights, signals.genre_count
    )
    allowed[genre_candidates] = True
    allowed[excluded] = False
    candidates = np.flatnonzero(allowed)
    score, content, collaborative = _hybrid(model, signals, weights, candidates, co_interaction, matches)
    top_popularity = float(model.popularity.max()) if len(model.popularity) else 0.0
    tiebreak = POPULARITY_TIEBREAK / top_popularity if top_popularity > 0 else 0.0
    best = _largest(score + tiebreak * model.popularity[candidates], count)
    media_idx = candidates[best]
    explained = _explain(model, signals, entries, media_idx, explain) if explain else [[] for _ in media_idx]
    return Ranking(media_idx, score[best], content[best], collaborative[best], explained)


def hybrid_scores(
    model: ModelData, signals: UserSignals, weights: Weights, media_idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The user's hybrid, content and collaborative scores of the media `media_idx`, exactly as
    `rank_for_user` computes them."""
    co_interaction, _ = _co_interaction_sums(model, signals, weights.dislike)
    matches = model.signature_genres[:, signals.genre_idx].sum(axis=1)
    return _hybrid(model, signals, weights, media_idx, co_interaction, matches)


def _hybrid(
    model: ModelData,
    signals: UserSignals,
    weights: Weights,
    candidates: np.ndarray,
    co_interaction: np.ndarray,
    matches: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hybrid, content and collaborative scores of `candidates`; the collaborative score is
    the co-interaction sum scaled to [0, 1] by the user's largest (scaled only here); sums
    below 0 (dislikes) scale alike, by the largest magnitude when no sum is positive."""
    scale = co_interaction.max() if len(co_interaction) else 0.0
    if scale <= 0 and len(co_interaction):
        scale = -co_interaction.min()
    content = matches[model.media_signature[candidates]] / max(signals.genre_count, 1)
    collaborative = co_interaction[candidates]
    if scale > 0:
        collaborative = collaborative / scale
    hybrid = weights.content * content + weights.collaborative * collaborative
    hybrid[np.abs(hybrid) < MIN_HYBRID_SCORE] = 0.0  # below 0 (dislikes): after the popular fill
    return hybrid, content, collaborative


def because(model: ModelData, signals: UserSignals, media_idx: np.ndarray, most: int = 2) -> list[list[int]]:
    """For each media of `media_idx`: up to `most` of the user's positive media that add most
    to its collaborative score (weight × similarity), largest first; empty where none does."""
    return _explain(model, signals, _co_interaction_sums(model, signals)[1], media_idx, most)


def _explain(model: ModelData, signals: UserSignals, entries: _Entries, media_idx: np.ndarray, most: int) -> list[list[int]]:
    """`because` from the entries the co-interaction sums were made of."""
    explained: list[list[int]] = [[] for _ in range(len(media_idx))]
    if len(signals.positive_idx) == 0 or len(media_idx) == 0:
        return explained
    wanted = np.zeros(len(model.media_ids), dtype=bool)
    wanted[media_idx] = True
    # The few entries from a positive media (not a disliked one) that reach an item of the page
    # and raise its score (every entry, when every contribution is positive and none is a disliked
    # media's: those come last).
    reaches = wanted[entries.targets]
    if entries.nonpositive or (len(entries.seed) and entries.seed[-1] >= len(signals.positive_idx)):
        reaches &= (entries.seed < len(signals.positive_idx)) & (entries.contribution > 0)
    hit = np.flatnonzero(reaches)
    if not len(hit):
        return explained
    order = np.argsort(media_idx, kind="stable")
    rows = order[np.searchsorted(media_idx[order], entries.targets[hit])]  # which item each entry explains
    contribution = entries.contribution[hit]
    sources = signals.positive_idx[entries.seed[hit]]
    ranked = np.lexsort((sources, -contribution, rows))  # per item: largest contribution first
    rows, sources = rows[ranked], sources[ranked]
    group_start = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
    place = np.arange(len(rows)) - np.repeat(group_start, np.diff(np.append(group_start, len(rows))))
    keep = place < most
    for row, source in zip(rows[keep].tolist(), sources[keep].tolist()):
        explained[row].append(source)
    return explained


def seed_genres(model: ModelData, seed_idx: int | None, media: Media | None = None) -> np.ndarray:
    """The genres (indices into genre_names) of the model's media `seed_idx`, or of `media`, as
    the catalog describes it, when the model does not know it (None)."""
    if seed_idx is not None:
        return np.flatnonzero(model.signature_genres[model.media_signature[seed_idx]])
    names = set(media.genres) if media is not None else set()
    return np.array([i for i, name in enumerate(model.genre_names) if name in names], dtype=np.int64)


def similar_media(
    model: ModelData,
    seed_idx: int | None,
    genre_idx: np.ndarray,
    count: int,
    excluded: np.ndarray,
    pool: Pool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The `count` media most like the media `seed_idx`: its neighbours in the model of positive
    weight, largest first, then the most popular media sharing most of its genres (`genre_idx`,
    see `seed_genres`). Never the seed itself, nor its neighbours of negative weight, nor
    `excluded` (model indices), and only media of `pool`. A seed the model does not know (None)
    has only the genre part.

    Returns the media indices and, for each, whether it is a neighbour.
    """
    pool = pool or Pool.of(model)
    skipped = np.asarray(excluded, dtype=np.int64)
    neighbours = np.zeros(0, dtype=np.int64)
    if seed_idx is not None:
        skipped = np.union1d(skipped, [seed_idx])
        start, stop = model.neighbour_indptr[seed_idx], model.neighbour_indptr[seed_idx + 1]
        row = model.neighbour_idx[start:stop].astype(np.int64)
        similar = model.neighbour_similarity[start:stop] > 0
        skipped = np.union1d(skipped, row[~similar])  # negative weights: its fans do not go on to those
        neighbours = row[similar]
        neighbours = neighbours[~np.isin(neighbours, skipped)]
        if pool.mask is not None:
            neighbours = neighbours[pool.mask[neighbours]]
        neighbours = neighbours[:count]
    by_genre = UserSignals(
        positive_idx=np.zeros(0, dtype=np.int64),
        positive_weight=np.zeros(0),
        excluded_idx=np.union1d(skipped, neighbours),
        genre_idx=genre_idx,
        genre_count=len(genre_idx),
    )
    fill = rank_for_user(model, by_genre, Weights(content=1.0, collaborative=0.0), count - len(neighbours), pool)
    media = np.concatenate((neighbours, fill.media_idx)).astype(np.int64)
    return media, np.arange(len(media)) < len(neighbours)


def diversify(model: ModelData, media_idx: np.ndarray, count: int, diversity: float) -> np.ndarray:
    """Positions in `media_idx` (best first) of `count` media re-ranked for genre variety.

    Maximal marginal relevance: each next pick maximises
    (1 - diversity) × relevance - diversity × (largest genre similarity to the media already picked),
    relevance falling linearly from 1 (the best) to 0 down the list, and genre similarity the
    Jaccard index of two media's genre sets. diversity 0 keeps the order.
    """
    count = min(count, len(media_idx))
    if diversity <= 0 or count <= 1:
        return np.arange(count)
    genres = model.signature_genres[model.media_signature[media_idx]].astype(np.float32)
    shared = genres @ genres.T
    sizes = genres.sum(axis=1)
    union = sizes[:, None] + sizes[None, :] - shared
    similarity = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)
    relevance = 1.0 - np.arange(len(media_idx)) / len(media_idx)
    picked = [0]
    closest = similarity[0].copy()  # per media: largest similarity to a picked one
    available = np.ones(len(media_idx), dtype=bool)
    available[0] = False
    for _ in range(count - 1):
        gain = np.where(available, (1 - diversity) * relevance - diversity * closest, -np.inf)
        best = int(np.argmax(gain))  # ties: the better ranked
        picked.append(best)
        available[best] = False
        np.maximum(closest, similarity[best], out=closest)
    return np.array(picked, dtype=np.int64)


def _largest(key: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` largest keys, largest first; equal keys in position order."""
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    if count < len(key):
        threshold = np.partition(key, len(key) - count)[len(key) - count]
        within = np.flatnonzero(key >= threshold)  # the top count and every key equal to the last
    else:
        within = np.arange(len(key))
    return within[np.lexsort((within, -key[within]))[:count]]


def _genre_candidates(
    model: ModelData,
    pool: Pool,
    matches: np.ndarray,
    excluded: np.ndarray,
    count: int,
    weights: Weights,
    genre_count: int,
) -> np.ndarray:
    """Media that could rank among the `count` best on genre match and popularity alone.

    Without a collaborative score, a media's key is content weight × matches / genre_count
    plus a popularity tiebreak, so a media that matches more of the user's genres always
    outranks one that matches fewer, and within one signature (a set of genres) the more
    popular wins. Going from the most matches down, the top count + (excluded in it) of each
    signature can reach the top; once `count` allowed media are found, fewer matches cannot.
    Below that (and for media whose genre score is too small to count), the most popular
    count + len(excluded) media of all are the rest of the candidates.
    """
    parts = []
    step = weights.content / genre_count if genre_count else 0.0
    if 0 < step <= POPULARITY_TIEBREAK:
        return pool.by_popularity  # genre levels too close to order by: score the whole pool
    if step > 0 and len(matches):
        sizes = pool.signature_sizes
        excluded_in = np.bincount(model.media_signature[excluded], minlength=len(sizes))
        allowed = 0
        for level in range(int(matches.max()), 0, -1):
            if step * level < MIN_HYBRID_SCORE:
                break
            signatures = np.flatnonzero(matches == level)
            take = np.minimum(sizes[signatures], count + excluded_in[signatures])
            starts = pool.signature_indptr[signatures]
            positions = np.arange(int(take.sum())) + np.repeat(starts - (np.cumsum(take) - take), take)
            parts.append(pool.signature_media[positions])
            allowed += int((sizes[signatures] - excluded_in[signatures]).sum())
            if allowed >= count:
                return np.concatenate(parts)
    parts.append(pool.by_popularity[: count + len(excluded)])
    return np.concatenate(parts)
