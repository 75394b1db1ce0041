"""The production app plus `GET /test/hang`, a request that never ends: a stand-in for a bug that
nothing bounds, to show that such a worker reports unhealthy and is replaced (test_liveness.py)."""

from __future__ import annotations

import os
import threading

from ml_service.wsgi import app


@app.get("/test/hang")
def hang():
    threading.Event().wait()  # forever


@app.get("/test/pid")
def pid():
    return {"pid": os.getpid()}
