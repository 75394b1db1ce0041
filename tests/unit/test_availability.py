"""The per-database circuit breaker, with a fake probe (pure logic, no database)."""

import threading
import time

import psycopg
import pytest

from services.availability import Availability, Breaker, Unavailable


class Probe:
    """Fails until `healthy` is set; counts its calls."""

    def __init__(self):
        self.healthy = threading.Event()
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if not self.healthy.is_set():
            raise psycopg.OperationalError("still down")


def wait_until(condition, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_an_operational_error_marks_the_database_down_and_later_calls_skip_it():
    probe = Probe()
    breaker = Breaker("user_db", probe, probe_interval=0.02)
    try:
        with pytest.raises(Unavailable):
            breaker.call(lambda: (_ for _ in ()).throw(psycopg.OperationalError("connection refused")))
        assert not breaker.available
        called = []
        with pytest.raises(Unavailable):
            breaker.call(lambda: called.append(1))
        assert called == []  # skipped without trying
    finally:
        breaker.close()


def test_a_successful_probe_brings_it_back():
    probe = Probe()
    breaker = Breaker("user_db", probe, probe_interval=0.02)
    try:
        breaker.trip(psycopg.OperationalError("gone"))
        wait_until(lambda: probe.calls >= 3)
        assert not breaker.available  # failing probes keep it down
        probe.healthy.set()
        wait_until(lambda: breaker.available)
        assert breaker.call(lambda: 42) == 42
    finally:
        breaker.close()


def test_other_errors_propagate_without_tripping():
    breaker = Breaker("user_db", Probe(), probe_interval=0.02)
    with pytest.raises(psycopg.errors.UndefinedTable):
        breaker.call(lambda: (_ for _ in ()).throw(psycopg.errors.UndefinedTable("no table")))
    with pytest.raises(ZeroDivisionError):
        breaker.call(lambda: 1 / 0)
    assert breaker.available


def test_a_shared_breaker_is_reported_once():
    shared = Breaker("engagement_db", Probe(), probe_interval=0.02)
    availability = Availability({"user_db": Breaker("user_db", Probe(), 0.02), "engagement_db": shared, "model_db": shared})
    try:
        shared.trip()
        assert availability.unavailable() == ["engagement_db"]
    finally:
        availability.close()
