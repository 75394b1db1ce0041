"""The /docs page, opened by a real browser (headless Chromium) on Gunicorn: it shows every operation.

The service runs with API keys and its security headers, as deployed: the page and the
description it reads need no key, and the page works under its Content-Security-Policy with the
files the service serves itself (no CDN).
"""

import re
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
import requests

from settings import DatabaseUrls
from tests.conftest import free_port, start_gunicorn, wait_for_http

pytestmark = pytest.mark.e2e
CLOSED = DatabaseUrls(*(["postgresql://nobody@127.0.0.1:1/none"] * 4))
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory):
    """Gunicorn (production config, one worker, API keys required) without databases: the page needs none."""
    port, log = free_port(), tmp_path_factory.mktemp("docs") / "gunicorn.log"
    process = start_gunicorn(CLOSED, port, log, API_KEYS="docs-test-key", GUNICORN_WORKERS="1")
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()


def chromium() -> str:
    path = shutil.which("chromium")
    if not path:
        pytest.fail("`chromium` is not installed: scripts/install-test-tools.sh installs Debian's package")
    return path


class Operations(HTMLParser):
    """(method, path) of each operation Swagger UI rendered: a block of class `opblock opblock-<method>`
    holding an element with `data-path`."""

    def __init__(self) -> None:
        super().__init__()
        self.found: set[tuple[str, str]] = set()
        self._method: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if "opblock" in classes:
            self._method = next((c.removeprefix("opblock-") for c in classes if c.removeprefix("opblock-") in HTTP_METHODS), None)
        if "data-path" in attrs and self._method:
            self.found.add((self._method, attrs["data-path"]))


def test_the_docs_page_shows_every_operation_of_the_description(base_url, tmp_path):
    description = requests.get(f"{base_url}/openapi.json", timeout=5)
    page = requests.get(f"{base_url}/docs", timeout=5)
    assert description.status_code == 200 and page.status_code == 200  # no key needed, API_KEYS or not
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert not urlsplit(url).netloc, f"/docs loads {url} from elsewhere: it must work without internet"
    expected = {
        (method, path) for path, item in description.json()["paths"].items() for method in item if method in HTTP_METHODS
    }

    dom = subprocess.run(
        [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", f"{base_url}/docs",
        ],
        capture_output=True, text=True, timeout=60,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = Operations()
    rendered.feed(dom.stdout)
    assert rendered.found == expected, f"the page shows {sorted(rendered.found)}\n{dom.stdout[-2000:]}"
