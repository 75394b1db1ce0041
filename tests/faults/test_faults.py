"""Real database faults under the production defaults (tests/faults/scenario.py).

Every fault on every database: user_db, catalog_db, engagement_db (which holds the model
tables) each stopped 15 s and 60 s, restarted, frozen 10 s, cut off by the network 10 s and
slowed 10 s, under steady traffic from 6 clients to Gunicorn with the production config (4
workers × 2 threads, nothing tuned). The three databases' faults run at the same time on three
separate stacks, so the matrix takes about three minutes. Required of each fault: no answer
slower than the request deadline + 0.5 s; only 200 (degraded) answers for user_db and
engagement_db, 200 or 503 with Retry-After for catalog_db; every worker back to full answers
within 5 s of the fault's end, without a restart.
"""

from __future__ import annotations

import pytest

from tests.faults.hosts import network_namespaces_work
from tests.faults.scenario import TABLE_HEADER, run_matrix

pytestmark = pytest.mark.e2e


def test_every_fault_on_every_database_is_answered_in_time_and_recovered_from(tmp_path):
    reason = network_namespaces_work()
    assert reason is None, f"the fault matrix cannot run here: {reason}"
    tmp_path.chmod(0o755)  # the database hosts run as an unprivileged user
    rows = run_matrix(tmp_path)
    print("\n" + TABLE_HEADER + "\n" + "\n".join(row.markdown() for row in rows))
    problems = [f"{row.database} {row.fault}: {problem}" for row in rows for problem in row.problems]
    assert len(rows) == 18
    assert not problems, "\n".join(problems)
