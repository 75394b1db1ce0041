"""When a request reached this worker: its deadline counts from then, time spent queued included.

A Gunicorn gthread worker accepts connections in its main thread and queues them for its
request threads. A request queued behind others that wait on a hung database has already
used part of its time when it starts; counting its deadline from that start would let the
answer take up to twice the deadline. `DeadlineThreadWorker` (gunicorn.conf.py's worker class)
notes when each connection was queued, and `arrived_at()` gives that time to the request.
Outside Gunicorn (the Flask test client, the evaluation) a request arrives when it starts.
"""

from __future__ import annotations

import threading
import time

from gunicorn.workers.gthread import ThreadWorker

_current = threading.local()


def arrived_at() -> float:
    """time.monotonic() when the current request was queued in this worker (now, outside Gunicorn)."""
    at = getattr(_current, "at", None)
    return time.monotonic() if at is None else at


class DeadlineThreadWorker(ThreadWorker):
    """Gunicorn's gthread worker, noting when each request was queued for a thread."""

    def enqueue_req(self, conn):
        conn.ml_queued_at = time.monotonic()
        super().enqueue_req(conn)

    def handle_request(self, req, conn):
        _current.at = getattr(conn, "ml_queued_at", None)
        try:
            return super().handle_request(req, conn)
        finally:
            _current.at = None
