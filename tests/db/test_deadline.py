"""The deadline watchdog against a real server: a blocked libpq call ends at the deadline."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from database.deadline import WATCHDOG, Deadline, DeadlineExceeded


def test_a_query_that_runs_past_the_deadline_is_cut_and_its_connection_closed(db_urls):
    with psycopg.connect(db_urls.user, autocommit=True) as conn:
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded), WATCHDOG.guard(conn, Deadline.after(0.3)):
            conn.execute("SELECT pg_sleep(10)")
        assert 0.3 <= time.monotonic() - started < 0.8
        assert conn.closed  # never lent again


def test_work_that_ends_in_time_is_untouched(db_urls):
    with psycopg.connect(db_urls.user, autocommit=True) as conn:
        for _ in range(3):
            with WATCHDOG.guard(conn, Deadline.after(1.0)):
                assert conn.execute("SELECT 1").fetchone() == (1,)
        time.sleep(1.2)  # past the deadlines of the guards that have ended
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_a_frozen_backend_cannot_hold_a_call_past_the_deadline(db_urls):
    with psycopg.connect(db_urls.user, autocommit=True) as conn:
        backend = conn.info.backend_pid
        os.kill(backend, signal.SIGSTOP)  # a hung host: the kernel still accepts, nothing answers
        try:
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded), WATCHDOG.guard(conn, Deadline.after(0.3)):
                conn.execute("SELECT 1")
            assert time.monotonic() - started < 0.8
        finally:
            os.kill(backend, signal.SIGCONT)


def test_deadline_shares():
    deadline = Deadline.after(1.0)
    assert 0.9 < deadline.remaining() <= 1.0
    assert deadline.within(0.2).remaining() <= 0.2
    assert deadline.within(5.0) == deadline
    assert Deadline.after(-1).remaining() == 0.0


def test_a_request_out_of_time_skips_the_database_without_marking_it_down(db_urls):
    from database.pools import Unavailable, open_databases
    from tests.conftest import settings_for

    databases = open_databases(settings_for(db_urls))
    try:
        with pytest.raises(Unavailable), databases.user.connection(Deadline.after(0.01)):
            pass
        assert databases.user.available  # its time went elsewhere: not the database's fault
        with databases.user.connection(Deadline.after(1.0)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        databases.close()


def test_an_answer_left_unread_past_the_deadline_does_not_mark_the_database_down(db_urls):
    """A loaded machine: the server answers at once, but this thread runs only after the deadline."""
    from database.pools import Unavailable, open_databases
    from tests.conftest import settings_for

    databases = open_databases(settings_for(db_urls))
    try:
        with pytest.raises(Unavailable) as raised, databases.user.connection(Deadline.after(0.3)) as conn:
            conn.pgconn.send_query(b"SELECT 1")
            time.sleep(0.6)  # the answer waits in the socket while this thread is not running
            conn.execute("SELECT 2")
        assert isinstance(raised.value.__cause__, DeadlineExceeded) and raised.value.__cause__.answered
        assert databases.user.available

        with pytest.raises(Unavailable) as raised, databases.user.connection(Deadline.after(0.3)) as conn:
            conn.execute("SELECT pg_sleep(10)")  # the server itself has not answered
        assert not raised.value.__cause__.answered
        assert not databases.user.available
    finally:
        databases.close()
