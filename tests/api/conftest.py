"""A Flask test client over the imported and refreshed MovieLens databases."""

import pytest

from ml_service.app import create_app
from tests.conftest import settings_for


@pytest.fixture(scope="module")
def client(movielens_urls):
    app = create_app(settings_for(movielens_urls))
    yield app.test_client()
    app.extensions["ml_service"].close()
