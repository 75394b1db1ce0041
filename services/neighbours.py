"""The refresh job's neighbour table: for each media, the media its fans go on to, with a weight.

A user's collaborative score for media j is Σ over their positive media i of weight(i) ×
weight(i → j), summed from the table (services/scoring.py), so the table is all the
collaborative model a request needs. It is filled two ways:

- EASE (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019): the item-item
  weights B that best reconstruct each user's liked media from their other liked media,
  B = I - P · diag(1 / diag(P)) with P = (XᵀX + λI)⁻¹ and X the binary user × media matrix of
  LIKEs (of every positive interaction when the data has no LIKE), diagonal set to 0. Row i
  keeps its k weights largest in magnitude: the negative ones ("fans of i do not go on to j")
  lower a score as the positive ones raise it. P is dense (media × media), so EASE covers only
  the `ease_media` media most liked: 10,000 take 800 MB and about a minute on 2 cores.
- damped cosine similarity of the media's sets of positive users (`cosine_neighbours`), for
  the engaged media EASE does not cover (the long tail), scaled to EASE's positive weights.

`ease_media` = 0 builds the whole table by cosine similarity. With a `user_cap`, both count only
each user's `user_cap` most recent liked (EASE) and positive (cosine) media (`most_recent`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from tqdm import tqdm

log = logging.getLogger(__name__)

# Memory for one block of dense rows computed at a time (cells).
BLOCK_CELLS = 32_000_000
# EASE media whose cosine similarities are compared with their EASE weights, to put the
# tail's cosine similarities on EASE's scale.
SCALE_SAMPLE = 500

Table = tuple[np.ndarray, np.ndarray, np.ndarray]  # (media, neighbour, weight), aligned


@dataclass(frozen=True)
class NeighbourSettings:
    """How the table is built (Settings: NEIGHBOURS_K, EASE_LAMBDA, EASE_MEDIA,
    NEIGHBOURS_USER_DAMPING, NEIGHBOURS_SHRINKAGE, NEIGHBOURS_USER_CAP)."""

    k: int
    ease_lambda: float
    ease_media: int
    user_damping: float
    shrinkage: float
    user_cap: int = 0  # 0: every pair counts


def binary_matrix(user: np.ndarray, media: np.ndarray, users_count: int, media_count: int) -> sp.csr_matrix:
    """The binary users × media matrix (float32) of the (user, media) pairs given."""
    matrix = sp.csr_matrix(
        (np.ones(len(user), dtype=np.float32), (user, media)), shape=(users_count, media_count)
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def most_recent(user: np.ndarray, media: np.ndarray, newest: np.ndarray, cap: int) -> np.ndarray:
    """Which of the (user, media) pairs are among their user's `cap` most recent (`newest`
    first, ties to the lower media index): the pairs a `user_cap` lets count (all for cap 0).
    Every engine applies this rule (services/spark_engine.py with a window), so they agree."""
    keep = np.ones(len(user), dtype=bool)
    if cap <= 0 or len(user) == 0:
        return keep
    order = np.lexsort((media, -newest, user))  # by user, then newest first, then media
    by_user = user[order]
    starts = np.flatnonzero(np.r_[True, by_user[1:] != by_user[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep[order[rank >= cap]] = False
    return keep


def build(positive: sp.csr_matrix, liked: sp.csr_matrix, settings: NeighbourSettings, progress: bool = True) -> Table:
    """The neighbour table from the binary users × media matrices of positive and of liked
    pairs: EASE on the `ease_media` most liked media, scaled cosine for the other engaged ones."""
    return assemble(MatrixSums(positive, liked, settings), settings, progress)


class Sums(Protocol):
    """The sums over users that the build needs, however they are computed: in memory
    (`MatrixSums`) or on a cluster (services/spark_engine.py). `assemble` does the rest, so
    every engine builds the same table from the same pairs."""

    def likes(self) -> np.ndarray:
        """Per media index, its liked users (its positive users when nothing is liked)."""

    def positives(self) -> np.ndarray:
        """Per media index, its positive users."""

    def co_occurrence(self, head: np.ndarray, progress: bool) -> np.ndarray:
        """XᵀX (dense float64, C order) over the media `head`, X the liked pairs (as `likes`)."""

    def cosine(self, row_sets: list[np.ndarray | None], progress: bool) -> list[Table]:
        """`cosine_neighbours` of each set of rows (None: every media) against every media."""


def assemble(sums: Sums, settings: NeighbourSettings, progress: bool = True) -> Table:
    """The table from `sums`: EASE on the `ease_media` most liked media, scaled cosine for the
    other engaged ones (every media by cosine when `ease_media` is 0 or nothing is liked)."""
    likes = sums.likes()
    if settings.ease_media <= 0 or not likes.any():
        return sums.cosine([None], progress)[0]
    head = head_media(likes, settings.ease_media)
    ease = strongest(ease_weights(sums.co_occurrence(head, progress), settings.ease_lambda), head, settings.k, progress)
    engaged = np.flatnonzero(sums.positives() > 0)
    tail = np.setdiff1d(engaged, head)
    if len(tail) == 0:
        return ease
    log.info("EASE covers %s media; cosine similarity for the other %s engaged media", len(head), len(tail))
    sample = scale_sample(head)
    reference, cosine = sums.cosine([sample, tail], progress)
    return with_tail(ease, cosine, scale_factor(ease, reference, sample))


class MatrixSums:
    """`Sums` from the binary users × media matrices of positive and of liked pairs, in memory."""

    def __init__(self, positive: sp.csr_matrix, liked: sp.csr_matrix, settings: NeighbourSettings) -> None:
        self._positive = positive
        self._liked = liked if liked.nnz else positive
        self._settings = settings

    def likes(self) -> np.ndarray:
        return np.asarray(self._liked.sum(axis=0)).ravel()

    def positives(self) -> np.ndarray:
        return np.diff(self._positive.tocsc().indptr)

    def co_occurrence(self, head: np.ndarray, progress: bool) -> np.ndarray:
        return co_occurrence(self._liked, head, progress)

    def cosine(self, row_sets: list[np.ndarray | None], progress: bool) -> list[Table]:
        s = self._settings
        # A progress bar for the last (the largest) set only, as before.
        return [
            cosine_neighbours(self._positive, s.k, progress and n == len(row_sets) - 1, s.user_damping, s.shrinkage, rows)
            for n, rows in enumerate(row_sets)
        ]


def head_media(likes: np.ndarray, ease_media: int) -> np.ndarray:
    """The `ease_media` media with the most likes (`likes` per media index), ties to the lower
    index (a stable sort), in index order: the media EASE covers."""
    return np.sort(np.argsort(-likes, kind="stable")[: min(ease_media, int(np.count_nonzero(likes)))])


def scale_sample(head: np.ndarray) -> np.ndarray:
    """The EASE media (`SCALE_SAMPLE` of them, evenly spread) whose cosine neighbours are
    compared with their EASE weights to put the tail on EASE's scale."""
    return head[np.linspace(0, len(head) - 1, min(SCALE_SAMPLE, len(head))).astype(np.int64)]


def scale_factor(ease: Table, reference: Table, sample: np.ndarray) -> float:
    """EASE's positive weights of the `sample` media over their cosine similarities (`reference`)."""
    # Exact sums (math.fsum): the same whatever the order of the rows, which differs between engines.
    in_sample = np.isin(ease[0], sample) & (ease[2] > 0)
    cosine_total = math.fsum(reference[2].tolist())
    return math.fsum(ease[2][in_sample].tolist()) / cosine_total if cosine_total > 0 else 1.0


def with_tail(ease: Table, cosine: Table, scale: float) -> Table:
    """The EASE table followed by the tail's cosine neighbours times `scale`."""
    return (
        np.concatenate((ease[0], cosine[0])),
        np.concatenate((ease[1], cosine[1])),
        np.concatenate((ease[2], (cosine[2] * scale).astype(np.float32))),
    )


def ease_neighbours(matrix: sp.csr_matrix, media: np.ndarray, k: int, ease_lambda: float, progress: bool = True) -> Table:
    """The k EASE weights largest in magnitude of each of `media` (sorted model indices) among
    `media`, with X the columns `media` of `matrix` and regularisation `ease_lambda`."""
    return strongest(ease_weights(co_occurrence(matrix, media, progress), ease_lambda), media, k, progress)


def co_occurrence(matrix: sp.csr_matrix, media: np.ndarray, progress: bool = True) -> np.ndarray:
    """XᵀX, dense float64, with X the columns `media` of the binary users × media `matrix`:
    how many users have both media of each pair (the diagonal: each media's users)."""
    size = len(media)
    by_media, user_media = co_occurrence_operands(matrix[:, media])
    gram = np.empty((size, size), dtype=np.float64)
    co_occurrence_rows(by_media, user_media, 0, size, out=gram, progress=progress)
    return gram


def co_occurrence_operands(matrix: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """What `co_occurrence_rows` multiplies, from the binary users × media matrix X: Xᵀ
    (media × users) and X, with sorted indices both (read-only, as for `cosine_operands`)."""
    by_media = matrix.T.tocsr()
    user_media = by_media.T.tocsr()
    for operand in (by_media, user_media):
        operand.sort_indices()
    return by_media, user_media


def co_occurrence_rows(by_media: sp.csr_matrix, user_media: sp.csr_matrix, start: int, stop: int,
                       out: np.ndarray | None = None, progress: bool = False) -> np.ndarray:
    """Rows `start` to `stop` of XᵀX from its `co_occurrence_operands`, a block of BLOCK_CELLS
    cells at a time, into `out` (its rows `start` to `stop`) or a new float32 array (exact:
    counts below 2²⁴); every engine counts the pairs this way."""
    size = by_media.shape[0]
    if out is None:
        out, offset = np.empty((stop - start, size), dtype=np.float32), start
    else:
        offset = 0
    block = max(1, BLOCK_CELLS // max(size, 1))
    for first in tqdm(range(start, stop, block), desc="EASE: co-occurrence", unit=" blocks", disable=not progress):
        last = min(first + block, stop)
        out[first - offset : last - offset] = (by_media[first:last] @ user_media).toarray()
    return out


def ease_weights(gram: np.ndarray, ease_lambda: float) -> np.ndarray:
    """EASE's weights B = I - P · diag(1 / diag(P)), P = (XᵀX + λI)⁻¹, diagonal 0, from the
    co-occurrence matrix XᵀX (float64, C order), computed in its memory (no copy is made)."""
    size = len(gram)
    gram[np.diag_indices(size)] += ease_lambda
    log.info("EASE: inverting the %s x %s co-occurrence matrix", size, size)
    weights = inverse_in_place(gram)
    diagonal = weights.diagonal().copy()
    block = max(1, BLOCK_CELLS // max(size, 1))
    for start in range(0, size, block):
        weights[start : start + block] /= -diagonal[None, :]
    weights[np.diag_indices(size)] = 0.0  # a media is not its own neighbour
    return weights


def strongest(weights: np.ndarray, media: np.ndarray, k: int, progress: bool = True) -> Table:
    """Per row of `weights` (rows and columns: `media`), the k weights largest in magnitude."""
    size = len(media)
    keep = min(k, size - 1)
    if keep <= 0:
        return _empty()
    block = max(1, BLOCK_CELLS // size)
    out_media, out_idx, out_weight = [], [], []
    for start in tqdm(range(0, size, block), desc="EASE: neighbours", unit=" blocks", disable=not progress):
        rows = weights[start : start + block]
        top = np.argpartition(-np.abs(rows), keep - 1, axis=1)[:, :keep]
        top_weight = np.take_along_axis(rows, top, axis=1)
        nonzero = top_weight != 0
        out_media.append(np.repeat(media[start : start + block], keep).reshape(-1, keep)[nonzero].astype(np.int32))
        out_idx.append(media[top[nonzero]].astype(np.int32))
        out_weight.append(top_weight[nonzero].astype(np.float32))
    return np.concatenate(out_media), np.concatenate(out_idx), np.concatenate(out_weight)


def inverse_in_place(matrix: np.ndarray) -> np.ndarray:
    """The inverse of the symmetric positive definite C-ordered `matrix`, computed in its own
    memory: its Cholesky factor, then the factor's inverse (LAPACK potrf and potri)."""
    # The transpose is a Fortran-ordered view of the same memory (and, symmetric, the same
    # matrix), so LAPACK works in place instead of on a copy.
    factor, info = scipy.linalg.lapack.dpotrf(matrix.T, lower=False, clean=False, overwrite_a=True)
    if info != 0:
        raise ValueError(f"the co-occurrence matrix is not positive definite (LAPACK potrf info {info})")
    inverse, info = scipy.linalg.lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise ValueError(f"inverting the co-occurrence matrix failed (LAPACK potri info {info})")
    inverse = inverse.T  # C order again: the lower triangle holds the inverse; mirror it
    size = len(inverse)
    block = max(1, BLOCK_CELLS // max(size, 1))
    for start in range(0, size, block):
        stop = min(start + block, size)
        inverse[start:stop, stop:] = inverse[stop:, start:stop].T
        square = inverse[start:stop, start:stop]
        square[...] = np.tril(square) + np.tril(square, -1).T
    return inverse


def user_weights(matrix: sp.csr_matrix, damping: float) -> np.ndarray:
    """Per user (row), 1 / ln(1 + positive media) ** damping: how much their co-interactions count.

    Someone who engaged with a thousand media says little about any one pair of them
    (inverse user frequency); damping 0 gives every user weight 1.
    """
    per_user = np.diff(matrix.indptr).astype(np.float64)
    if damping == 0:
        return np.ones(len(per_user), dtype=np.float64)
    return np.divide(1.0, np.log1p(per_user) ** damping, out=np.zeros_like(per_user), where=per_user > 0)


def cosine_neighbours(
    matrix: sp.csr_matrix,
    k: int,
    progress: bool = True,
    user_damping: float = 0.0,
    shrinkage: float = 0.0,
    rows: np.ndarray | None = None,
) -> Table:
    """Top-k neighbours of every media (or of the media `rows`) by cosine similarity of their
    sets of positive users, from the binary users × media `matrix`.

    similarity(i, j) = Σ_{u ∈ users(i) ∩ users(j)} w(u) / (sqrt(|users(i)| · |users(j)|) + shrinkage)
    with w from `user_weights(·, user_damping)`; with both 0 this is the plain cosine
    |users(i) ∩ users(j)| / sqrt(|users(i)| · |users(j)|). Only pairs with similarity > 0.
    """
    weighted, by_media = cosine_operands(matrix, user_damping)
    return cosine_rows(weighted, by_media, k, shrinkage, rows, progress)


def cosine_operands(matrix: sp.csr_matrix, user_damping: float) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """What `cosine_rows` multiplies, from the binary users × media `matrix`: the users × media
    matrix of the users' weights (`user_weights`) and the binary media × users matrix, float64
    with sorted indices both (so that they can be used read-only, as services/spark_engine.py
    maps them)."""
    # Sums in float64 (the table keeps float32): another engine summing the same terms in
    # another order (services/spark_engine.py) agrees to about 1e-15, float32 sums only to 1e-7.
    matrix = matrix.astype(np.float64)
    by_media = matrix.T.tocsr()
    if user_damping:
        matrix = (sp.diags(user_weights(matrix, user_damping)) @ matrix).tocsr()
    for operand in (matrix, by_media):
        operand.sort_indices()
    return matrix, by_media


def cosine_rows(weighted: sp.csr_matrix, by_media: sp.csr_matrix, k: int, shrinkage: float = 0.0,
                rows: np.ndarray | None = None, progress: bool = False) -> Table:
    """`cosine_neighbours` from its `cosine_operands`, which it only reads."""
    media_count = weighted.shape[1]
    rows = np.arange(media_count) if rows is None else np.asarray(rows, dtype=np.int64)
    keep = min(k, media_count - 1)
    if weighted.nnz == 0 or keep <= 0 or len(rows) == 0:
        return _empty()
    norms = np.sqrt(np.diff(by_media.indptr).astype(np.float64))
    block = max(1, BLOCK_CELLS // 2 // media_count)  # float64 cells: half as many per block
    out_media, out_idx, out_sim = [], [], []
    for start in tqdm(range(0, len(rows), block), desc="building neighbours", unit=" blocks", disable=not progress):
        seeds = rows[start : start + block]
        counts = (by_media[seeds] @ weighted).toarray()
        denominator = norms[seeds, None] * norms[None, :] + shrinkage
        # 0 where a media has no positive users (and so no co-interactions either)
        similarity = np.divide(counts, denominator, out=np.zeros_like(counts), where=denominator > 0)
        similarity[np.arange(len(seeds)), seeds] = 0.0  # a media is not its own neighbour
        top, top_sim = _top(similarity, keep)
        nonzero = top_sim > 0
        out_media.append(np.repeat(seeds, keep).reshape(-1, keep)[nonzero].astype(np.int32))
        out_idx.append(top[nonzero].astype(np.int32))
        out_sim.append(top_sim[nonzero].astype(np.float32))
    return np.concatenate(out_media), np.concatenate(out_idx), np.concatenate(out_sim)


def _top(values: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the columns of the `keep` largest values (in no order) and those values."""
    top = np.argpartition(-values, keep - 1, axis=1)[:, :keep]
    return top, np.take_along_axis(values, top, axis=1)


def _empty() -> Table:
    return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
