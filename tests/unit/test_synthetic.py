"""The synthetic data generator's shape: exact size, determinism, power laws, genre affinity."""

import numpy as np

from services.synthetic import GENRES, generate


def rows_of(data) -> int:
    return int((1 + (data.rating >= 4.0) + (data.rating <= 2.0)).sum())


def test_generates_exactly_the_interactions_asked_for():
    data = generate(users=500, media=400, interactions=40_000, seed=3)
    assert rows_of(data) == 40_000
    assert len(data.user_ids) == 500 and len(data.media_ids) == 400


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = (generate(200, 150, 8_000, seed=s) for s in (1, 1, 2))
    assert a.user_ids.tobytes() == b.user_ids.tobytes()
    assert np.array_equal(a.pair_media, b.pair_media) and np.array_equal(a.rating, b.rating)
    assert a.user_ids.tobytes() != c.user_ids.tobytes()


def test_pairs_are_unique_and_ratings_on_the_half_star_scale():
    data = generate(300, 200, 15_000, seed=4)
    keys = data.pair_user.astype(np.int64) * 200 + data.pair_media
    assert len(np.unique(keys)) == len(keys)
    assert data.rating.min() >= 0.5 and data.rating.max() <= 5.0
    assert np.all(data.rating * 2 == np.round(data.rating * 2))


def test_popularity_and_activity_are_skewed():
    data = generate(2_000, 1_000, 150_000, seed=5)
    per_media = np.sort(np.bincount(data.pair_media, minlength=1_000))[::-1]
    per_user = np.bincount(data.pair_user, minlength=2_000)
    assert per_media[:10].mean() > 5 * np.median(per_media)
    assert per_user.max() > 4 * np.median(per_user)


def test_users_prefer_media_of_their_genres():
    data = generate(1_000, 800, 60_000, seed=6)
    user_genres = {}
    for u, g in data.user_genres:
        user_genres.setdefault(u, set()).add(g)
    media_genres = {}
    for m, g in data.media_genres:
        media_genres.setdefault(m, set()).add(g)
    matches = [bool(user_genres[u] & media_genres.get(m, set()))
               for u, m in zip(data.pair_user.tolist(), data.pair_media.tolist()) if u in user_genres]
    # Picking by popularity alone would match far less often than the 70 % affinity share.
    assert np.mean(matches) > 0.7
    assert {g for _, g in data.user_genres} <= set(range(len(GENRES)))


def test_timestamps_span_years():
    data = generate(1_000, 300, 30_000, seed=7)
    days = (data.timestamp.max() - data.timestamp.min()) / 86_400e6
    assert days > 3 * 365
