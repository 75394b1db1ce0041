"""docker-compose.yml gives the service URLs without credentials and PGUSER/PGPASSWORD beside them:
libpq, under psycopg, must take the user and password from there, whatever the password holds.

A fresh embedded server that asks every role but the admin for its password (scram-sha-256),
so that a missing or wrong password fails and the right one is known to have been sent.
"""

import time
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from psycopg import sql

ROLE = "ml:svc@x"
PASSWORD = "p@ss:w/rd#1%2F?x=y&'\" end"  # every character a URL or a conninfo string gives a meaning to


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(admin URL, URL of database "postgres" without credentials) of a server requiring passwords."""
    from database.embedded import start_embedded

    server = start_embedded(tmp_path_factory.mktemp("password") / "data", cleanup_mode="delete")
    try:
        admin = server.get_uri()
        socket_dir = parse_qs(urlsplit(admin).query)["host"][0]
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(ROLE), sql.Literal(PASSWORD)))
            hba_file = conn.execute("SHOW hba_file").fetchone()[0]
            with open(hba_file, "w") as hba:
                hba.write("local all postgres trust\nlocal all all scram-sha-256\n")
            conn.execute("SELECT pg_reload_conf()")
        yield admin, f"postgresql:///postgres?host={socket_dir}"
    finally:
        server.cleanup()


def connect_as(url: str, monkeypatch, user: str | None, password: str | None):
    monkeypatch.setenv("PGPASSFILE", "/nonexistent/pgpass")  # no ~/.pgpass may supply a password
    for name, value in (("PGUSER", user), ("PGPASSWORD", password)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return psycopg.connect(url, connect_timeout=5)


def test_a_url_without_credentials_takes_them_from_pguser_and_pgpassword(server, monkeypatch):
    _, url = server
    assert "@" not in url and PASSWORD not in url
    deadline = time.monotonic() + 10
    while True:  # the server reloads pg_hba.conf shortly after pg_reload_conf()
        try:
            connect_as(url, monkeypatch, ROLE, "wrong").close()
        except psycopg.OperationalError as error:
            assert "password authentication failed" in str(error)
            break
        assert time.monotonic() < deadline, "the server never asked for a password"
        time.sleep(0.1)
    with pytest.raises(psycopg.OperationalError, match="password"):
        connect_as(url, monkeypatch, ROLE, None).close()
    with connect_as(url, monkeypatch, ROLE, PASSWORD) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == ROLE
