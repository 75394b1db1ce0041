"""The INTEGRATION_GUIDE.md clients (examples/) run against real Gunicorn: Python, Node.js and Java.

Each prints the same four lines (single call, next page, batch, a 400 handled); the test
computes those lines itself over HTTP. A proxy in front of Gunicorn then injects 503s to check
that every client retries 503 with the same request id, gives up after its retries, and
never retries a 400.
"""

import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from services.movielens_import import user_uuid
from tests.conftest import ROOT, serving

pytestmark = pytest.mark.e2e
EXAMPLES = ROOT / "examples"
USER, OTHER = str(user_uuid(1)), str(user_uuid(2))
LANGUAGES = ["python", "javascript", "java"]


def tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"`{name}` is not installed: the integration guide's clients need Java 17+ (javac, java) and Node.js 18+")
    return path


@pytest.fixture(scope="module")
def base_url(movielens_urls, tmp_path_factory):
    with serving(movielens_urls, tmp_path_factory.mktemp("clients"), GUNICORN_WORKERS="2") as base:
        yield base


@pytest.fixture(scope="module")
def java_classes(tmp_path_factory):
    out = tmp_path_factory.mktemp("java")
    result = subprocess.run(
        [tool("javac"), "-Xlint:all", "-Werror", "--release", "17", "-d", str(out), str(EXAMPLES / "java" / "MlServiceClient.java")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def expected(base_url) -> str:
    """The lines every client must print, computed here over HTTP."""
    first = requests.get(f"{base_url}/api/recommendations/{USER}", params={"limit": 5}, timeout=30).json()
    second = requests.get(f"{base_url}/api/recommendations/{USER}", params={"limit": 5, "offset": 5}, timeout=30).json()
    batch = requests.post(f"{base_url}/api/recommendations/batch", json={"user_ids": [USER, OTHER], "limit": 5}, timeout=30).json()
    assert first["recommendations"][0]["media_id"] != second["recommendations"][0]["media_id"]
    return "\n".join([
        f"single {USER} count=5 first={first['recommendations'][0]['media_id']}",
        f"page offset=5 count=5 first={second['recommendations'][0]['media_id']}",
        f"batch total_users=2 {USER}:{batch['results'][USER]['count']} {OTHER}:{batch['results'][OTHER]['count']}",
        "error 400 invalid_request",
    ]) + "\n"


def client_command(language: str, java_classes) -> list[str]:
    """The command that runs the client, without its arguments."""
    return {
        "python": [sys.executable, str(EXAMPLES / "python" / "ml_client.py")],
        "javascript": [tool("node"), str(EXAMPLES / "javascript" / "mlClient.mjs")],
        "java": [tool("java"), "-cp", str(java_classes), "MlServiceClient"],
    }[language]


def run_client(language: str, url: str, java_classes, users=(USER, OTHER)) -> subprocess.CompletedProcess:
    command = client_command(language, java_classes) + [url, *users]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


class FaultyProxy:
    """Forwards to Gunicorn, answering the first `failures` requests with 503 instead; records every request."""

    def __init__(self, upstream: str, failures: int) -> None:
        self.upstream, self.failures, self.seen = upstream, failures, []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append((self.command, self.path, self.headers.get("X-Request-ID")))
                if proxy.failures > 0:
                    proxy.failures -= 1
                    status, headers = 503, {"Content-Type": "application/json", "Retry-After": "0"}
                    content = json.dumps({"error": {"code": "database_unavailable", "message": "injected"}}).encode()
                else:
                    upstream = requests.request(
                        self.command, proxy.upstream + self.path, data=body or None, timeout=30,
                        headers={k: v for k, v in self.headers.items() if k.lower() in ("content-type", "x-request-id")},
                    )
                    status, content = upstream.status_code, upstream.content
                    headers = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "x-request-id", "retry-after")}
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(content))}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_client_prints_what_the_service_answers(language, base_url, java_classes, expected):
    result = run_client(language, base_url, java_classes)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected


@pytest.mark.parametrize("language", LANGUAGES)
def test_user_ids_are_accepted_in_any_case(language, base_url, java_classes, expected):
    assert USER.upper() != USER
    result = run_client(language, base_url, java_classes, users=(USER.upper(), OTHER.upper()))
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected  # the batch answer is found under the canonical (lower-case) ids


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize(
    "args",
    [[], ["http://127.0.0.1:9"], ["http://127.0.0.1:9", USER, "not-a-uuid"], ["http://127.0.0.1:9", USER, OTHER, USER]],
    ids=["none", "one", "bad-id", "four"],
)
def test_without_its_three_arguments_the_client_prints_its_usage_and_exits_2(language, args, java_classes):
    result = subprocess.run(client_command(language, java_classes) + args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()  # a usage line, no stack trace
    assert line.startswith("usage: ") and "BASE_URL USER_ID OTHER_USER_ID" in line


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_client_retries_503_with_the_same_request_id_and_never_retries_400(language, base_url, java_classes, expected):
    proxy = FaultyProxy(base_url, failures=2)
    try:
        result = run_client(language, proxy.url, java_classes)
    finally:
        proxy.close()
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    first_three = proxy.seen[:3]
    assert len({(m, p.split("?")[0]) for m, p, _ in first_three}) == 1, first_three  # one call, tried three times
    assert len({rid for _, _, rid in first_three}) == 1 and first_three[0][2]
    assert len(proxy.seen) == 2 + 4  # 4 calls, the first one twice more
    assert sum("not-a-user-id" in path for _, path, _ in proxy.seen) == 1


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_client_gives_up_after_its_retries(language, base_url, java_classes):
    proxy = FaultyProxy(base_url, failures=1000)
    try:
        result = run_client(language, proxy.url, java_classes)
    finally:
        proxy.close()
    assert result.returncode != 0
    assert "database_unavailable" in result.stderr
    assert len(proxy.seen) == 4  # the first call: 1 try + 3 retries, then the error is raised


@pytest.mark.parametrize(
    "path, fence",
    [("python/ml_client.py", "python"), ("javascript/mlClient.mjs", "javascript"), ("java/MlServiceClient.java", "java")],
)
def test_the_guide_shows_each_client_file_exactly(path, fence):
    guide = (ROOT / "INTEGRATION_GUIDE.md").read_text()
    code = (EXAMPLES / path).read_text()
    assert f"```{fence}\n{code}```\n" in guide, f"INTEGRATION_GUIDE.md does not show examples/{path} as it is"
    assert f"(examples/{path})" in guide
