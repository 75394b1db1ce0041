"""A Flask test client over the imported and refreshed MovieLens databases, and the API description."""

import pytest
from openapi_schema_validator import OAS30Validator

from ml_service.app import create_app
from tests.conftest import settings_for


@pytest.fixture(scope="module")
def client(movielens_urls):
    app = create_app(settings_for(movielens_urls))
    yield app.test_client()
    app.extensions["ml_service"].close()


@pytest.fixture(scope="module")
def spec(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.is_json
    return response.get_json()


def check_documented(spec, method: str, path: str, response) -> None:
    """The status is documented for the operation and the body matches the documented schema."""
    operation = spec["paths"][path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented, f"{method.upper()} {path} answered {response.status_code}, which is not documented"
    if "$ref" in documented:
        documented = spec["components"]["responses"][documented["$ref"].rsplit("/", 1)[1]]
    schema = documented["content"][response.mimetype]["schema"]
    OAS30Validator({**schema, "components": spec["components"]}).validate(response.get_json())
    headers = {name: spec["components"]["headers"][ref["$ref"].rsplit("/", 1)[1]] for name, ref in documented["headers"].items()}
    assert {name for name, header in headers.items() if header.get("required")} <= set(response.headers.keys())
    for name, header in headers.items():
        if name in response.headers and header["schema"]["type"] == "integer":
            assert response.headers[name].isdigit(), f"{name}: {response.headers[name]!r}"
