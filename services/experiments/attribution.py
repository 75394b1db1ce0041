"""Which interactions the recommendations caused: a like or watch of a media shown to the user,
strictly after it was shown and within the window."""

from __future__ import annotations

import numpy as np


def attributed(
    shown_user: np.ndarray,
    shown_media: np.ndarray,
    shown_at: np.ndarray,
    user: np.ndarray,
    media: np.ndarray,
    at: np.ndarray,
    window: int,
) -> np.ndarray:
    """A bool per interaction (user, media, at): some page showed that media to that user at a
    time t with t < at <= t + window. Users and media are dense int64 ids, times int64
    microseconds.

    Vectorised: the showings and the interactions are sorted together by (user, media, time),
    an interaction before a showing of the same instant (which does not count); each
    interaction then looks at the latest showing before it, forward-filled along the sorted
    order, which counts when it is of the same user and media and within the window (an earlier
    showing is further away).
    """
    n_shown, n = len(shown_user), len(user)
    if n == 0:
        return np.zeros(0, dtype=bool)
    users = np.concatenate((shown_user, user))
    medias = np.concatenate((shown_media, media))
    times = np.concatenate((shown_at, at))
    is_shown = np.concatenate((np.ones(n_shown, dtype=np.int8), np.zeros(n, dtype=np.int8)))
    order = np.lexsort((is_shown, times, medias, users))  # last key first
    position = np.where(is_shown[order] == 1, np.arange(len(order)), -1)
    latest = np.maximum.accumulate(position)  # per sorted event: the latest showing at or before it
    events = np.flatnonzero(is_shown[order] == 0)
    before = latest[events]
    found = before >= 0
    shown_event = order[np.where(found, before, 0)]
    event = order[events]
    hit = (
        found
        & (users[shown_event] == users[event])
        & (medias[shown_event] == medias[event])
        & (times[event] > times[shown_event])
        & (times[event] - times[shown_event] <= window)
    )
    result = np.zeros(n, dtype=bool)
    result[event - n_shown] = hit
    return result
