"""generate-synthetic writes a data set through the schema that the refresh and the API can use."""

import psycopg
import pytest

from ml_service.__main__ import main
from ml_service.jobs import run_refresh
from services.synthetic import generate_synthetic
from tests.conftest import database_env, settings_for


def table_counts(urls):
    with psycopg.connect(urls.catalog) as c, psycopg.connect(urls.user) as u, psycopg.connect(urls.engagement) as e:
        return {
            "medias": c.execute("SELECT count(*) FROM medias").fetchone()[0],
            "users": u.execute("SELECT count(*) FROM user_preferences").fetchone()[0],
            "interactions": e.execute("SELECT count(*) FROM interaction").fetchone()[0],
            "types": {t for (t,) in e.execute("SELECT DISTINCT type FROM interaction")},
            "indexes": {n for (n,) in e.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'interaction'")},
        }


def test_writes_the_sizes_asked_for_with_the_indexes_rebuilt(db_urls):
    summary = generate_synthetic(db_urls, users=300, media=200, interactions=12_000, seed=1, progress=False)
    counts = table_counts(db_urls)
    assert summary.interactions == counts["interactions"] == 12_000
    assert counts["medias"] == 200 and counts["users"] == 300
    assert counts["types"] == {"LIKE", "DISLIKE", "WATCH"}
    assert counts["indexes"] == {"interaction_pkey", "interaction_user_media_idx"}
    version = run_refresh(settings_for(db_urls), progress=False)
    with psycopg.connect(db_urls.model) as conn:
        built = conn.execute("SELECT interactions_count, neighbours_count FROM ml.model_builds WHERE version = %s",
                             (version,)).fetchone()
    assert built[0] == 12_000 and built[1] > 0


def test_refuses_a_database_with_data_unless_replace(db_urls):
    generate_synthetic(db_urls, users=50, media=40, interactions=1_000, seed=1, progress=False)
    with pytest.raises(ValueError, match="not empty"):
        generate_synthetic(db_urls, users=50, media=40, interactions=1_000, seed=2, progress=False)
    generate_synthetic(db_urls, users=60, media=40, interactions=1_500, seed=2, replace=True, progress=False)
    assert table_counts(db_urls)["interactions"] == 1_500


def test_command_line(db_urls, monkeypatch, capsys):
    for name, value in database_env(db_urls).items():
        monkeypatch.setenv(name, value)
    assert main(["generate-synthetic", "--users", "40", "--media", "30", "--interactions", "500", "--seed", "3"]) == 0
    assert "500 interactions" in capsys.readouterr().out
    assert main(["generate-synthetic", "--users", "40", "--media", "30", "--interactions", "500"]) == 2
