"""Attribution: only a positive interaction with a shown media, after it was shown and within the window."""

import numpy as np

from services.experiments.attribution import attributed

H = 3_600_000_000  # an hour in microseconds
WINDOW = 24 * H


def attribute(shown, interactions):
    s = np.array(shown, dtype=np.int64).reshape(-1, 3)
    i = np.array(interactions, dtype=np.int64).reshape(-1, 3)
    return attributed(s[:, 0], s[:, 1], s[:, 2], i[:, 0], i[:, 1], i[:, 2], WINDOW).tolist()


def test_only_a_shown_media_after_the_showing_and_within_the_window_counts():
    shown = [(1, 10, 100 * H), (1, 11, 100 * H), (2, 12, 100 * H)]
    assert attribute(shown, [
        (1, 10, 101 * H),  # after, within: counts
        (1, 11, 124 * H),  # exactly at the window's end: counts
        (1, 10, 100 * H),  # at the very moment it was shown: not after
        (1, 10, 99 * H),  # before
        (1, 11, 125 * H),  # after the window
        (1, 13, 101 * H),  # a media that was not shown
        (2, 10, 101 * H),  # shown to another user
        (3, 10, 101 * H),  # a user never shown anything
    ]) == [True, True, False, False, False, False, False, False]


def test_the_latest_showing_before_the_interaction_is_the_one_that_counts():
    shown = [(1, 10, 0), (1, 10, 12 * H), (1, 10, 200 * H)]
    assert attribute(shown, [(1, 10, 30 * H), (1, 10, 37 * H), (1, 10, 190 * H)]) == [True, False, False]


def test_empty_inputs():
    assert attribute([], [(1, 1, 1)]) == [False]
    assert attribute([(1, 1, 1)], []) == []


def test_it_agrees_with_a_loop_over_every_pair():
    rng = np.random.default_rng(7)
    shown = np.column_stack((rng.integers(0, 30, 3000), rng.integers(0, 20, 3000), rng.integers(0, 200 * H, 3000)))
    done = np.column_stack((rng.integers(0, 30, 2000), rng.integers(0, 20, 2000), rng.integers(0, 230 * H, 2000)))
    done[:100, 2] = shown[:100, 2]  # some at the very moment of a showing
    done[:100, :2] = shown[:100, :2]
    expected = [
        any(u == su and m == sm and st < t <= st + WINDOW for su, sm, st in shown.tolist())
        for u, m, t in done.tolist()
    ]
    assert attribute(shown.tolist(), done.tolist()) == expected
    assert 0 < sum(expected) < len(expected)
