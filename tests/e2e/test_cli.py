"""`python -m ml_service`: help everywhere, and every failure one line on stderr with its exit code."""

import json
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ml_service import __version__
from ml_service.__main__ import cli
from tests.conftest import ROOT, database_env
from tests.db.helpers import add_interactions, add_media, new_id

CLOSED = "postgresql://nobody@127.0.0.1:1/none"  # nothing listens on port 1: refused at once


@pytest.fixture(scope="module")
def silent_url():
    """A server that accepts TCP connections and never says a word (a hung host's listener)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # never accepted: the kernel completes handshakes, nothing answers
        yield f"postgresql://nobody@127.0.0.1:{listener.getsockname()[1]}/none"


def run_cli(*args, timeout=120, **env):
    base = {k: v for k, v in os.environ.items() if not k.endswith("_DB_URL") and k not in ("LOG_FORMAT", "LOG_LEVEL")}
    return subprocess.run(
        [sys.executable, "-m", "ml_service", *args],
        cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=timeout,
    )


def one_line_failure(result, code: int, *fragments: str) -> str:
    """The run exited with `code`, wrote nothing but one line to stderr, and that line says `fragments`."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def test_every_command_has_help_and_the_group_a_version():
    for name in cli.commands:  # in-process: click renders the help the same way
        result = CliRunner().invoke(cli, [name, "--help"], prog_name="python -m ml_service")
        assert result.exit_code == 0 and f"Usage: python -m ml_service {name} [OPTIONS]" in result.output
    group = run_cli("--help")
    assert group.returncode == 0 and all(name in group.stdout for name in cli.commands)
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"ml-service, version {__version__}"
    bare = run_cli()
    assert bare.returncode == 2 and "Commands:" in bare.stderr


@pytest.mark.parametrize(
    "args, env, code, fragments",
    [
        (["import-movielens", "/nonexistent"], {}, 2, ["ml-service import-movielens:", "'/nonexistent' does not exist"]),
        (["no-such-command"], {}, 2, ["No such command 'no-such-command'"]),
        (["refresh", "--no-such-option"], {}, 2, ["No such option '--no-such-option'"]),
        (["refresh"], {}, 2, ["configuration error: missing required environment variable(s): USER_DB_URL"]),
        (["demo"], {"USER_DB_URL": CLOSED}, 2, ["ml-service demo: configuration error: missing required", "CATALOG_DB_URL"]),
        (["models"], {"LOG_FORMAT": "xml"}, 2, ["LOG_FORMAT='xml' is not one of text, json"]),
        (["rollback", "two"], {}, 2, ["'two' is not a valid integer"]),
        (
            ["refresh"],
            {"USER_DB_URL": CLOSED, "CATALOG_DB_URL": CLOSED, "ENGAGEMENT_DB_URL": CLOSED},
            1,
            ["ml-service refresh: taking the refresh lock on the model database failed: cannot connect",
             "nothing was published"],
        ),
        (["init-db"], {"USER_DB_URL": CLOSED, "CATALOG_DB_URL": CLOSED, "ENGAGEMENT_DB_URL": CLOSED}, 1, ["model.sql"]),
        (["models"], {"USER_DB_URL": CLOSED, "CATALOG_DB_URL": CLOSED, "ENGAGEMENT_DB_URL": CLOSED}, 1, ["cannot connect"]),
        (["models"], {"USER_DB_URL": CLOSED, "CATALOG_DB_URL": CLOSED, "ENGAGEMENT_DB_URL": "not a url"}, 2,
         ["configuration error: ENGAGEMENT_DB_URL is not a PostgreSQL connection string"]),
        (["models"], {"USER_DB_URL": CLOSED, "CATALOG_DB_URL": "mysql://me:secret@db/catalog", "ENGAGEMENT_DB_URL": CLOSED},
         2, ["configuration error: CATALOG_DB_URL is not a PostgreSQL URL: its scheme is mysql://"]),
        # refresh reads no user_db, and still refuses a malformed one (it exited 0)
        (["refresh"], {"USER_DB_URL": "garbage", "CATALOG_DB_URL": CLOSED, "ENGAGEMENT_DB_URL": CLOSED}, 2,
         ["USER_DB_URL is not a PostgreSQL connection string"]),
        (["refresh"], {"USER_DB_URL": CLOSED, "CATALOG_DB_URL": CLOSED, "ENGAGEMENT_DB_URL": CLOSED,
                       "MODEL_DB_URL": "postgresql://me@db:five/x"}, 2, ["MODEL_DB_URL has a port that is not a number"]),
    ],
    ids=["missing-directory", "unknown-command", "unknown-option", "no-configuration", "demo-one-url", "log-format",
         "bad-version", "refused-database", "init-db-refused", "models-refused", "url-not-a-url", "url-mysql",
         "url-garbage-refresh", "url-bad-port"],
)
def test_a_failure_is_one_line_with_its_exit_code(args, env, code, fragments):
    line = one_line_failure(run_cli(*args, **env), code, *fragments)
    assert "secret" not in line  # a URL's password is never repeated


# refresh, models and rollback share the offline pools (ml_service/jobs.py); init-db connects alone.
@pytest.mark.parametrize("command", ["refresh", "init-db"])
def test_a_database_that_never_answers_fails_the_command_in_one_line(silent_url, command):
    result = run_cli(command, timeout=60, USER_DB_URL=silent_url, CATALOG_DB_URL=silent_url, ENGAGEMENT_DB_URL=silent_url)
    one_line_failure(result, 1, f"ml-service {command}:", "timeout expired")


def test_refresh_models_and_rollback_from_the_command_line(db_urls):
    env = database_env(db_urls)
    refused = run_cli("refresh", **env)
    one_line_failure(refused, 1, "ml-service refresh: the new model would have no media", "--force")
    first, second = new_id(), new_id()
    add_media(db_urls, first)
    add_interactions(db_urls, [(new_id(), first, "WATCH", 4.0)])
    assert run_cli("refresh", **env).stdout.strip() == "published model version 1"
    add_media(db_urls, second)
    add_interactions(db_urls, [(new_id(), second, "WATCH", 4.0)])
    # LOG_FORMAT=json: every line on stderr is a JSON object, as the service writes them.
    published = run_cli("refresh", LOG_FORMAT="json", **env)
    assert published.returncode == 0 and published.stdout.strip() == "published model version 2"
    records = [json.loads(line) for line in published.stderr.splitlines() if line.strip()]
    assert any(r["message"].startswith("model 2 published") and r["level"] == "INFO" for r in records)

    listing = run_cli("models", **env).stdout.splitlines()
    assert listing[0].split() == ["version", "built", "at", "(UTC)", "media", "users", "interactions", "build",
                                  "NDCG@10", "recall@10", "settings"]
    assert [line.split()[:2] for line in listing[1:3]] == [["*", "2"], ["1", listing[2].split()[1]]]
    assert listing[1].split()[4] == "2" and listing[2].split()[3] == "1"  # media per version
    assert run_cli("rollback", **env).stdout.startswith("serving model version 1 instead of 2")
    one_line_failure(run_cli("rollback", **env), 1, "no model older than the serving version 1 is kept")
    one_line_failure(run_cli("rollback", "5", **env), 1, "version 5 is not kept (kept: 2, 1)")
    assert run_cli("rollback", "2", **env).returncode == 0
    one_line_failure(run_cli("rollback", "2", **env), 1, "model version 2 is already serving")
    assert run_cli("models", **env).stdout.splitlines()[1].split()[:2] == ["*", "2"]


def test_init_db_creates_only_the_model_schema_unless_asked_for_the_sources(pg_server):
    prefix = f"cli_init_{os.getpid()}"
    urls = pg_server.create_urls(prefix)
    try:
        env = database_env(urls)
        assert run_cli("init-db", **env).stdout.split() == ["applied", "model.sql"]
        import psycopg

        with psycopg.connect(urls.catalog) as conn:
            assert conn.execute("SELECT to_regclass('medias')").fetchone()[0] is None
        sources = run_cli("init-db", "--sources", **env).stdout.splitlines()
        assert sources[-1] == "applied model.sql" and "applied catalog_db.sql" in sources
        with psycopg.connect(urls.catalog) as conn:
            assert conn.execute("SELECT to_regclass('medias')").fetchone()[0] is not None
    finally:
        pg_server.drop_urls(prefix)


def refresh_stderr_on_a_terminal(env) -> str:
    """What `refresh --force` writes to stderr when stderr is a terminal (a pseudo-terminal here)."""
    import fcntl
    import pty
    import struct
    import termios

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a terminal has a size
    base = {k: v for k, v in os.environ.items() if not k.endswith("_DB_URL") and k != "LOG_FORMAT"}
    process = subprocess.Popen(
        [sys.executable, "-m", "ml_service", "refresh", "--force"],
        cwd=ROOT, env={**base, **env}, stdout=subprocess.DEVNULL, stderr=terminal,
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(60) == 0
    return output.decode(errors="replace")


def test_progress_bars_show_on_a_terminal_only(db_urls):
    media = new_id()
    add_media(db_urls, media)
    add_interactions(db_urls, [(new_id(), media, "WATCH", 4.0)])
    env = database_env(db_urls)
    assert "reading interactions: 1.00 pairs" in refresh_stderr_on_a_terminal(env)
    assert "reading interactions" not in refresh_stderr_on_a_terminal({**env, "LOG_FORMAT": "json"})
    piped = run_cli("refresh", "--force", **env)
    assert piped.returncode == 0 and "reading interactions" not in piped.stderr and "published" in piped.stderr
