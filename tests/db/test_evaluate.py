"""`python -m ml_service evaluate` end to end on a tiny MovieLens directory and real PostgreSQL."""

import json
from datetime import timezone

import numpy as np
import psycopg

from ml_service.__main__ import main
from services.evaluation.baselines import EASE_LAMBDAS
from services.evaluation.run import DIVERSITIES, MODEL_NAMES, hybrid_name
from services.evaluation.split import temporal_split
from services.movielens_import import read_ratings

GENRES = ["Action", "Comedy", "Drama", "Horror"]


def write_tiny_movielens(directory, users=40, movies=30, seed=0):
    """Users who each favour one genre rate 10-16 movies over time (mostly their genre, rated high)."""
    rng = np.random.default_rng(seed)
    movie_genre = {m: GENRES[m % len(GENRES)] for m in range(1, movies + 1)}
    lines = ["movieId,title,genres"]
    lines += [f"{m},Movie {m} ({1990 + m}),{g}|{GENRES[(m + 1) % len(GENRES)]}" for m, g in movie_genre.items()]
    (directory / "movies.csv").write_text("\n".join(lines) + "\n")
    rows = ["userId,movieId,rating,timestamp"]
    for user in range(1, users + 1):
        favourite = GENRES[user % len(GENRES)]
        weights = np.array([4.0 if movie_genre[m] == favourite else 1.0 for m in movie_genre])
        chosen = rng.choice(list(movie_genre), size=int(rng.integers(10, 17)), replace=False, p=weights / weights.sum())
        for step, movie in enumerate(chosen.tolist()):
            rating = 5.0 if movie_genre[movie] == favourite else float(rng.choice([2.0, 3.0, 4.0]))
            rows.append(f"{user},{movie},{rating},{1_000_000 + 1000 * step + user}")
    (directory / "ratings.csv").write_text("\n".join(rows) + "\n")


def test_evaluate_runs_every_model_and_writes_the_report(tmp_path, pg_server, monkeypatch, capsys):
    data, out = tmp_path / "tiny", tmp_path / "out"
    data.mkdir()
    write_tiny_movielens(data)
    # Evaluate on the test server: it creates its own eval_* databases there.
    monkeypatch.setenv("USER_DB_URL", pg_server.admin_url)

    assert main(["evaluate", "--data", str(data), "--k", "5", "--out", str(out)]) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "tiny" and metrics["k"] == 5 and "20%" in metrics["protocol"]
    assert list(metrics["models"]) == list(MODEL_NAMES)
    # EASE's regularisation was chosen on a validation split of the train ratings
    assert metrics["ease_lambda"]["chosen"] in EASE_LAMBDAS
    assert sorted(map(float, metrics["ease_lambda"]["validation_ndcg"])) == sorted(EASE_LAMBDAS)
    for name, summary in metrics["models"].items():
        assert summary["users"] > 30, name
        for key in ("precision", "recall", "ndcg", "map", "ild", "user_coverage"):
            assert 0.0 <= summary[key] <= 1.0, (name, key)
        assert summary["user_coverage"] == 1.0, name
        assert summary["catalog_coverage"] >= 5, name
        assert set(summary["cold"]) >= {"precision", "recall", "ndcg", "map", "ild", "catalog_coverage", "user_coverage"}
    # The data has a clear signal: our model must find some of it.
    assert metrics["models"]["hybrid"]["ndcg"] > 0.1
    # Our model re-ranked by the service's `diversity`: genre variety rises with it.
    ours = [metrics["models"][hybrid_name(d)] for d in DIVERSITIES]
    assert [m["diversity"] for m in ours] == list(DIVERSITIES) and DIVERSITIES[0] == 0
    ild = [m["ild"] for m in ours]
    assert ild == sorted(ild) and ild[-1] > ild[0], ild
    assert (out / "ndcg.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    assert "implicit_als" in report and "NDCG@5" in report and "ILD@5" in report
    # What the refresh chose, from the train ratings only, is in the report.
    refresh = metrics["refresh"]
    assert refresh["version"] == 1 and set(refresh["settings"]) >= {"ease_lambda", "neighbours_k", "content_weight"}
    assert "our model's settings, chosen by its refresh on the train ratings" in report
    table = capsys.readouterr().out
    assert "seed_hybrid" in table and "cold slice" in table and "hybrid (diversity 1)" in table


def test_evaluate_imports_only_train_ratings(tmp_path, pg_server, monkeypatch):
    data = tmp_path / "tiny"
    data.mkdir()
    write_tiny_movielens(data, users=12)
    monkeypatch.setenv("USER_DB_URL", pg_server.admin_url)
    main(["evaluate", "--data", str(data), "--k", "3"])

    ratings = np.loadtxt(data / "ratings.csv", delimiter=",", skiprows=1)
    expected = sum(int(n) - -(-int(n) // 5) for n in np.unique(ratings[:, 0], return_counts=True)[1])
    with psycopg.connect(pg_server.url_for("eval_engagement_db")) as conn:
        watches = conn.execute("SELECT count(*) FROM interaction WHERE type = 'WATCH'").fetchone()[0]
        newest = conn.execute("SELECT max(\"timestamp\") FROM interaction").fetchone()[0]
    assert watches == expected
    # the newest rating of every user is held out, so the overall newest cannot be in train
    assert newest.replace(tzinfo=timezone.utc).timestamp() < ratings[:, 3].max()


def test_evaluate_on_validation_never_imports_a_test_rating(tmp_path, pg_server, monkeypatch, capsys):
    data = tmp_path / "tiny"
    data.mkdir()
    write_tiny_movielens(data, users=12)
    monkeypatch.setenv("USER_DB_URL", pg_server.admin_url)
    assert main(["evaluate", "--data", str(data), "--k", "3", "--validation", "--users", "odd", "--test-share", "0.3"]) == 0

    ratings = read_ratings(data / "ratings.csv")
    odd = ratings.subset(ratings.user % 2 == 1)
    validation = temporal_split(temporal_split(odd, 0.3).train, 0.3)
    first_line = capsys.readouterr().out.splitlines()[0]
    assert f"{len(validation.train)} train / {len(validation.test)} validation ratings" in first_line
    with psycopg.connect(pg_server.url_for("eval_engagement_db")) as conn:
        imported = set(conn.execute("SELECT extract(epoch FROM \"timestamp\")::bigint FROM interaction").fetchall())
    assert imported == {(int(t),) for t in validation.train.timestamp.tolist()}  # timestamps are unique per rating
