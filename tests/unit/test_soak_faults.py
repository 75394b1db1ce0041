"""bench/soak.py --faults: which faults it stages, and which answers count as errors (no root, no database)."""

from bench.soak import FaultCycle, fault_cycle, is_error
from tests.faults.scenario import DATABASES, FAULTS


def test_the_cycle_stages_every_database_and_fault_but_the_long_stop_once():
    pairs = [(database, fault.name) for database, fault in fault_cycle()]
    expected = {(db, name) for db in DATABASES for name in FAULTS if name != "stopped 60 s"}
    assert sorted(pairs) == sorted(expected)
    for i in range(len(pairs)):  # any five in a row (five minutes) hit every kind of fault and every database
        row = (pairs + pairs)[i : i + 5]
        assert {name for _, name in row} == set(FAULTS) - {"stopped 60 s"} and {db for db, _ in row} == set(DATABASES)


def test_errors_are_all_but_200_and_catalog_503s_until_5_s_after_the_fault():
    faults = FaultCycle(stack=None, every=60, duration=600)
    faults.schedule = [
        {"database": "catalog_db", "fault": "frozen 10 s", "start_s": 30.0, "healed_s": 40.0},
        {"database": "user_db", "fault": "frozen 10 s", "start_s": 90.0, "healed_s": 100.0},
    ]
    assert not is_error((29.5, 0.8, 503), faults)  # under way when the fault began
    assert not is_error((44.9, 0.01, 503), faults)
    assert is_error((45.1, 0.01, 503), faults)
    assert is_error((95.0, 0.01, 503), faults)  # user_db down: degraded, never 503
    assert not is_error((95.0, 0.01, "200-degraded"), faults)
    assert is_error((35.0, 0.01, 500), faults) and is_error((35.0, 30.0, "ReadTimeout"), faults)
    assert is_error((95.0, 0.01, "200-degraded"), None)  # the plain soak: only full answers
