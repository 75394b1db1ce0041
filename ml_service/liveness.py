"""Is this worker still able to serve? A request stuck well past the deadline says it is not.

Every request's database work ends within REQUEST_DEADLINE_MS (database/deadline.py), so a
request still running STUCK_GRACE seconds later is stuck on something nothing bounds. Gunicorn
would never notice: a gthread worker's main thread keeps reporting alive while its request
threads hang. So `/health` answers 503 while any request is stuck, and under Gunicorn the
worker stops itself (gunicorn.conf.py), so that Gunicorn starts a fresh one in its place.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable

from flask import Flask

log = logging.getLogger(__name__)

# Seconds past the request deadline after which a running request counts as stuck.
STUCK_GRACE = 10.0
# Seconds between the monitor's looks at the running requests.
MONITOR_INTERVAL = 1.0


class Liveness:
    """The requests running in this process, and whether any has been running far too long."""

    def __init__(self, stuck_after: float) -> None:
        self.stuck_after = stuck_after
        self._running: dict[int, float] = {}  # thread id -> start (time.monotonic)

    def started(self) -> None:
        """The current thread has started a request."""
        self._running[threading.get_ident()] = time.monotonic()

    def finished(self) -> None:
        """The current thread's request has ended."""
        self._running.pop(threading.get_ident(), None)

    def stuck(self) -> int:
        """How many requests have been running longer than `stuck_after` seconds."""
        now = time.monotonic()
        return sum(now - started > self.stuck_after for started in list(self._running.values()))

    def monitor(self, on_stuck: Callable[[], None], exit_after: float) -> None:
        """Call `on_stuck` once when a request is stuck; end the process if it still runs `exit_after` s later."""

        def run() -> None:
            while not self.stuck():
                time.sleep(MONITOR_INTERVAL)
            log.error("a request has been running for over %.0f s: this worker cannot serve; stopping it", self.stuck_after)
            on_stuck()
            time.sleep(exit_after)  # the process would wait for the stuck thread at exit, forever
            log.error("worker did not stop within %.0f s; exiting", exit_after)
            os._exit(1)

        threading.Thread(target=run, name="liveness-monitor", daemon=True).start()


def register_liveness(app: Flask, deadline_seconds: float) -> Liveness:
    """Track every request of `app`; /health reads the result (app.extensions["ml_service.liveness"])."""
    liveness = Liveness(deadline_seconds + STUCK_GRACE)
    app.before_request(liveness.started)
    app.teardown_request(lambda _error: liveness.finished())
    app.extensions["ml_service.liveness"] = liveness
    return liveness
