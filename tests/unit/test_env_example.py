""".env.example lists every environment variable the code reads, each with a comment and a working default."""

import re

import pytest

from settings import SETTING_NAMES, Settings
from tests.conftest import ROOT

# os.environ["X"], os.environ.get("X"), os.getenv("X"), env["X"], env.get("X") with a literal name.
ENV_READ = re.compile(r"""\b(?:os\.environ|os\.getenv|env)\s*(?:\.get\s*\(|\[|\()\s*["']([A-Z][A-Z0-9_]*)["']""")
CODE_DIRS = ("ml_service", "database", "services")
# Read by code that only the tests and `make demo` run, never the deployed service.
NOT_SETTINGS = {"XDG_RUNTIME_DIR"}  # database/embedded.py (pgserver)


def variables_read_by_code() -> set[str]:
    """Settings.from_env's names plus every literal environment read in the service's code."""
    names = set(SETTING_NAMES)
    for directory in CODE_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            names |= set(ENV_READ.findall(path.read_text()))
    return names - NOT_SETTINGS


def parse_env_file(text: str) -> dict[str, tuple[str, str]]:
    """NAME -> (value, the comment line right above it)."""
    entries, comment = {}, ""
    for line in text.splitlines():
        if line.startswith("#"):
            comment = line
        elif "=" in line:
            name, value = line.split("=", 1)
            entries[name.strip()] = (value, comment)
            comment = ""
        else:
            comment = ""
    return entries


@pytest.fixture(scope="module")
def example() -> dict[str, tuple[str, str]]:
    return parse_env_file((ROOT / ".env.example").read_text())


def test_the_scan_finds_the_ways_code_reads_the_environment():
    code = 'a = os.environ["ONE"]\nb = os.environ.get("TWO", "x")\nc = os.getenv("THREE")\nd = env.get("FOUR")\n'
    code += 'e = request.environ.get("HTTP_X_NOT_A_SETTING")\n'
    assert set(ENV_READ.findall(code)) == {"ONE", "TWO", "THREE", "FOUR"}


def test_the_gunicorn_and_metrics_variables_are_found():
    assert {"BIND", "GUNICORN_WORKERS", "GUNICORN_THREADS", "GUNICORN_TIMEOUT", "PROMETHEUS_MULTIPROC_DIR", "MODEL_SHARE_DIR"} <= (
        variables_read_by_code()
    )


def test_every_variable_the_code_reads_is_in_env_example_with_a_comment(example):
    missing = sorted(variables_read_by_code() - set(example))
    assert not missing, f"add these to .env.example (with a one-line comment above each): {missing}"
    uncommented = sorted(name for name in variables_read_by_code() if not example[name][1].strip("# "))
    assert not uncommented, f"give these a one-line comment in .env.example: {uncommented}"


def test_every_variable_the_code_reads_is_documented_once():
    """In the first column of one row of docs/configuration.md's tables, and of no other page's."""
    rows = {}
    for page in sorted((ROOT / "docs").glob("*.md")):
        for line in page.read_text().splitlines():
            first = line.split(" | ")[0]
            if re.fullmatch(r"\| `[A-Z][A-Z0-9_]+`(, `[A-Z][A-Z0-9_]+`)*", first):  # a row naming settings
                for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", first):
                    rows.setdefault(name, []).append(page.name)
    missing = sorted(name for name in variables_read_by_code() if name not in rows)
    assert not missing, f"document these in docs/configuration.md's table: {missing}"
    elsewhere = {name: pages for name, pages in rows.items() if name in variables_read_by_code()
                 and pages != ["configuration.md"]}
    assert not elsewhere, f"document each once, in docs/configuration.md: {elsewhere}"


def test_the_example_values_are_valid_and_are_the_code_defaults(example):
    env = {name: value for name, (value, _) in example.items()}
    settings = Settings.from_env(env)
    defaults = Settings(databases=settings.databases)
    assert settings == defaults, "a value in .env.example differs from the default in settings.py"
    assert settings.databases.model == settings.databases.engagement  # empty MODEL_DB_URL
    for name in ("GUNICORN_WORKERS", "GUNICORN_THREADS", "GUNICORN_TIMEOUT"):
        assert int(env[name]) > 0
