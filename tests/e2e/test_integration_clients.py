"""The INTEGRATION_GUIDE.md clients (examples/) run against real Gunicorn: Python, Node.js and Java.

Each prints the same lines (single call, next page, batch, a filtered row alone and for
several users, "more like this", "because you watched", a 400 handled), one call each; the test computes those lines itself over HTTP. Each client runs once through a recording
proxy in front of Gunicorn, which lets a test see what it sent; the proxy then injects 503s
to check that every client retries 503 with the same request id, gives up after its retries,
and never retries a 400. The guide's snippets are lines of these clients, and its curl
examples are sent to the same Gunicorn: each answer has the shape the guide shows.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from services.movielens_import import user_uuid
from tests.conftest import ROOT, serving

pytestmark = pytest.mark.e2e
EXAMPLES = ROOT / "examples"
USER, OTHER = str(user_uuid(1)), str(user_uuid(2))
LANGUAGES = ["python", "javascript", "java"]
ROW = {"genres": ["Comedy", "Romance"], "release_year_min": 1990, "diversity": 0.5}  # the clients' row, without its exclusions


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
def answers(base_url) -> dict:
    """What the service answers to the calls the clients make, asked here over HTTP."""

    def get(path: str, **params) -> dict:
        response = requests.get(base_url + path, params=params, timeout=30)  # a list: one parameter per value
        assert response.status_code == 200, response.text
        return response.json()

    def post(path: str, body: dict) -> dict:
        response = requests.post(base_url + path, json=body, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    first = get(f"/api/recommendations/{USER}", limit=5)
    shown = [item["media_id"] for item in first["recommendations"]]
    answers = {
        "first": first,
        "second": get(f"/api/recommendations/{USER}", limit=5, offset=5),
        "batch": post("/api/recommendations/batch", {"user_ids": [USER, OTHER], "limit": 5}),
        "shown": shown,
        "row": get(f"/api/recommendations/{USER}", limit=5, **ROW, exclude=shown),
        "batch_row": post("/api/recommendations/batch", {"user_ids": [USER, OTHER], "limit": 5, **ROW, "exclude": shown}),
        "similar": get(f"/api/media/{shown[0]}/similar", limit=5, user_id=USER),  # like the first recommendation
        # the first media of the user's history that explains a recommendation: {media_id, title}
        "watched": next(media for item in first["recommendations"] for media in item["because"]),
    }
    answers["because"] = get(f"/api/recommendations/{USER}", limit=5, because=answers["watched"]["media_id"])
    assert first["recommendations"][0]["media_id"] != answers["second"]["recommendations"][0]["media_id"]
    for row in [answers["row"], *answers["batch_row"]["results"].values()]:  # the lines show rows that hold
        assert row["count"] == 5
        assert all(set(item["genres"]) & set(ROW["genres"]) for item in row["recommendations"])
        assert all(item["release_year"] >= ROW["release_year_min"] for item in row["recommendations"])
        assert not {item["media_id"] for item in row["recommendations"]} & set(shown)
    assert answers["similar"]["media"]["media_id"] == shown[0] and answers["similar"]["count"] == 5
    because = answers["because"]["recommendations"]
    assert any(item["source"] == "hybrid" for item in because)  # its neighbours, each because of it
    assert all(item["because"] == [answers["watched"]] for item in because if item["source"] == "hybrid")
    return answers


@pytest.fixture(scope="module")
def expected(answers) -> str:
    """The lines every client must print."""
    first, second, batch = answers["first"], answers["second"], answers["batch"]
    row, batch_row, similar = answers["row"], answers["batch_row"]["results"], answers["similar"]
    watched, because = answers["watched"], answers["because"]
    return "\n".join([
        f"single {USER} count=5 first={first['recommendations'][0]['media_id']} experiment="
        + (f"{first['experiment']['name']}/{first['experiment']['variant']}" if first["experiment"] else "none"),
        f"page offset=5 count=5 first={second['recommendations'][0]['media_id']}",
        f"batch total_users=2 {USER}:{batch['results'][USER]['count']} {OTHER}:{batch['results'][OTHER]['count']}",
        f"row count={row['count']} first={row['recommendations'][0]['media_id']}",
        "batch row " + " ".join(f"{uid}:{batch_row[uid]['recommendations'][0]['media_id']}" for uid in (USER, OTHER)),
        f'similar "{similar["media"]["title"]}" count={similar["count"]} first={similar["similar"][0]["media_id"]}',
        f'because "{watched["title"]}" count={because["count"]} first={because["recommendations"][0]["media_id"]}',
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


class Seen(NamedTuple):
    """A request as the proxy received it."""

    method: str
    path: str  # with its query string, as sent
    request_id: str | None
    body: bytes


class FaultyProxy:
    """Forwards to Gunicorn, answering the first `failures` requests with 503 instead; records every request."""

    def __init__(self, upstream: str, failures: int) -> None:
        self.upstream, self.failures, self.seen = upstream, failures, []  # seen: [Seen]
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.seen.append(Seen(self.command, self.path, self.headers.get("X-Request-ID"), body))
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


@pytest.fixture(scope="module")
def recorded(base_url, java_classes):
    """recorded(language): the client's run through a proxy that injects nothing, and the
    requests it sent ([Seen]); one run per language, shared by the tests that ask."""
    runs = {}

    def run(language: str) -> tuple[subprocess.CompletedProcess, list[Seen]]:
        if language not in runs:
            proxy = FaultyProxy(base_url, failures=0)
            try:
                runs[language] = run_client(language, proxy.url, java_classes), proxy.seen
            finally:
                proxy.close()
        return runs[language]

    return run


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_client_prints_what_the_service_answers(language, recorded, expected):
    result, seen = recorded(language)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    assert len(seen) == len(expected.splitlines())  # one call per line


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_client_sends_what_the_api_reads(language, recorded, answers):
    """A row's lists as repeated query parameters and as JSON lists (a client that dropped a
    value could still print the right ids), the user of "more like this", the seed of "because"."""
    result, seen = recorded(language)
    assert result.returncode == 0, result.stderr
    queries = [(urlsplit(s.path).path, parse_qs(urlsplit(s.path).query)) for s in seen if s.method == "GET"]
    [row] = [query for _, query in queries if "exclude" in query]
    assert {name: row[name] for name in (*ROW, "exclude")} == {
        "genres": ROW["genres"], "release_year_min": ["1990"], "diversity": ["0.5"], "exclude": answers["shown"]
    }
    [body] = [json.loads(s.body) for s in seen if s.method == "POST" and b'"exclude"' in s.body]
    assert body == {"user_ids": [USER, OTHER], "limit": 5, "offset": 0, **ROW, "exclude": answers["shown"]}
    assert type(body["release_year_min"]) is int and type(body["diversity"]) is float  # JSON numbers, not strings
    [similar] = [query for path, query in queries if path == f"/api/media/{answers['shown'][0]}/similar"]
    assert similar["user_id"] == [USER]
    [because] = [query for _, query in queries if "because" in query]
    assert because["because"] == [answers["watched"]["media_id"]]


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
    assert len({(seen.method, seen.path) for seen in first_three}) == 1, first_three  # one call, tried three times
    assert len({seen.request_id for seen in first_three}) == 1 and first_three[0].request_id
    assert len(proxy.seen) == 2 + len(expected.splitlines())  # one call per line, the first one twice more
    assert sum("not-a-user-id" in seen.path for seen in proxy.seen) == 1


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


CLIENT_FILES = {"python": "python/ml_client.py", "javascript": "javascript/mlClient.mjs", "java": "java/MlServiceClient.java"}


def guide_endpoints() -> str:
    """INTEGRATION_GUIDE.md's section 2 (endpoints, rows, "more like this", "because you watched")."""
    guide = (ROOT / "INTEGRATION_GUIDE.md").read_text()
    return guide[guide.index("## 2. Endpoints"):guide.index("## 3. Errors")]


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_guides_snippets_are_lines_of_the_client(language):
    lines = {line.strip() for line in (EXAMPLES / CLIENT_FILES[language]).read_text().splitlines()}
    snippets = re.findall(rf"```{language}\n(.*?)```", guide_endpoints(), re.DOTALL)
    assert snippets
    for snippet in snippets:
        missing = [line for line in snippet.splitlines() if line.strip() not in lines]
        assert not missing, f"not in examples/{CLIENT_FILES[language]}: {missing}"


def curl(base_url: str, command: str) -> requests.Response:
    """What the service at `base_url` answers a guide's curl command."""
    args = shlex.split(command.replace("\\\n", " "))
    [url] = [arg for arg in args if re.match(r"http://(localhost|127\.0\.0\.1):5000/", arg)]
    body = args[args.index("-d") + 1] if "-d" in args else None
    url = re.sub(r"^http://[^/]+", base_url, url)
    if body:
        return requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    return requests.get(url, timeout=30)


# The demo imports the bundled ml-latest-small and refreshes it with the default settings, as the
# movielens_urls fixture does: the guide's examples are what the demo answers, exactly. After a
# change meant to change answers, write them again with `ML_RECORD_GUIDE=1 pytest
# tests/e2e/test_integration_clients.py -k guides` (and read the prose around them).
RECORDING = bool(os.environ.get("ML_RECORD_GUIDE"))


@pytest.mark.parametrize("document, shown_at_least", [("INTEGRATION_GUIDE.md", 4), ("README.md", 1)])
def test_the_guides_curl_examples_answer_as_shown(base_url, document, shown_at_least):
    """The guide's endpoint section (rows, more like this, because you watched, its 404) and the
    README's first request."""
    text = (ROOT / document).read_text()
    section = guide_endpoints() if document == "INTEGRATION_GUIDE.md" else text
    examples = re.findall(r"```sh\n(curl .*?)\n```\n\s*(?:```json\n(.*?)\n```)?", section, re.DOTALL)
    assert sum(bool(shown) for _, shown in examples) >= shown_at_least
    for command, shown in examples:
        response = curl(base_url, command)
        if not shown:
            assert response.status_code == 200, (command, response.text)
        elif RECORDING:
            text = text.replace(shown, guide_json(response.json()), 1)
        else:
            assert response.json() == json.loads(shown), command
    if RECORDING:
        (ROOT / document).write_text(text)


def test_the_guides_example_item_and_diversity_table_are_user_1s(base_url):
    guide = (ROOT / "INTEGRATION_GUIDE.md").read_text()
    row = f"{base_url}/api/recommendations/{USER}?limit=5"
    first = requests.get(row, timeout=30).json()["recommendations"]
    varied = requests.get(f"{row}&diversity=1", timeout=30).json()["recommendations"]
    shown = re.search(r"Each item:\n\n```json\n(.*?)\n```", guide, re.DOTALL).group(1)
    table = "\n".join(m.group(0) for m in re.finditer(r"^\| \d \| .+ \| .+ \|$", guide, re.MULTILINE))
    rows = "\n".join(f"| {n} | {titled(a)} | {titled(b)} |" for n, (a, b) in enumerate(zip(first, varied), 1))
    if RECORDING:
        (ROOT / "INTEGRATION_GUIDE.md").write_text(guide.replace(shown, guide_json(first[0]), 1).replace(table, rows, 1))
        return
    assert json.loads(shown) == first[0]
    assert table == rows
    # The prose names these: the filtered row leaves out The Fifth Element, which user 1's row
    # shows; "Because you watched Austin Powers: International Man of Mystery".
    assert "80d4eb2e-f677-5396-a141-2e0c78c84509" in [item["media_id"] for item in first]
    assert first[0]["because"][0]["title"] == "Austin Powers: International Man of Mystery"


def test_the_guides_sample_output_is_what_the_clients_print(expected):
    guide = (ROOT / "INTEGRATION_GUIDE.md").read_text()
    opening = "otherwise it prints one line per call, for example:\n\n```\n"
    start = guide.index(opening) + len(opening)
    shown = guide[start:guide.index("```", start)]
    elided = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                    lambda m: m.group(0) if m.group(0) == USER else "…", expected)
    if RECORDING:
        (ROOT / "INTEGRATION_GUIDE.md").write_text(guide.replace(shown, elided, 1))
        return
    assert shown == elided


def titled(item: dict) -> str:
    return f"{item['title']} ({', '.join(item['genres'])})"


def guide_json(body) -> str:
    """`body` as the guide lays answers out: one line per few fields, an item's parts on their own lines."""
    if isinstance(body, dict) and "error" in body:
        error = body["error"]
        inner = (",\n" + " " * 11).join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in error.items())
        return '{"error": {' + inner + "}}"
    if isinstance(body, dict) and "media_id" in body and "score" in body:
        return _item(body, 0)
    lines, rest = [], []
    for key, value in body.items():
        if key in ("recommendations", "similar", "media"):
            if rest:
                lines.append(", ".join(rest))
                rest = []
            if key == "media":
                lines.append(f'"media": {_fields(value, 11)}')
            else:
                items = ",\n".join(_item(item, 3) for item in value)
                lines.append(f"{json.dumps(key)}: [\n{items}\n  ]")
        else:
            rest.append(f"{json.dumps(key)}: {json.dumps(value)}")
    if rest:
        lines.append(", ".join(rest))
    return "{" + ",\n ".join(lines) + "}"


def _fields(media: dict, indent: int) -> str:
    head = ", ".join(f"{json.dumps(k)}: {json.dumps(media[k])}" for k in ("media_id", "title"))
    tail = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in media.items() if k not in ("media_id", "title"))
    return "{" + head + ",\n" + " " * indent + tail + "}"


def _item(item: dict, indent: int) -> str:
    pad = " " * (indent + 1)

    def part(keys):
        return ", ".join(f"{json.dumps(k)}: {json.dumps(item[k])}" for k in keys)

    because = (",\n" + pad + " " * 12).join(json.dumps(m) for m in item["because"])
    return (
        " " * indent + "{" + part(("media_id", "title")) + ",\n"
        + pad + part(("media_type", "release_year", "cover_url", "genres")) + ",\n"
        + pad + part(("score", "content_score", "collaborative_score", "source")) + ",\n"
        + pad + f'"because": [{because}]' + "}"
    )
