"""Fixtures of the resilience tests."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from database.schema import apply_schema
from ml_service.jobs import run_refresh
from tests.conftest import settings_for
from tests.resilience.dataset import fill


@pytest.fixture
def urls(db_urls, pg_server):
    """The data set, with the model published in a database of its own (MODEL_DB_URL)."""
    fill(db_urls)
    name = psycopg.conninfo.conninfo_to_dict(db_urls.engagement)["dbname"] + "_model"
    model_url = pg_server.create_database(name)
    urls = dataclasses.replace(db_urls, model=model_url)
    apply_schema(urls)
    run_refresh(settings_for(urls), progress=False)
    yield urls
    pg_server.drop_database(name)


