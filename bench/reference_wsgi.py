"""The benchmark's server: the production app plus the original design's live SQL query.

`gunicorn -c ml_service/gunicorn.conf.py bench.reference_wsgi:app` serves every production
route unchanged and adds `GET /bench/live-sql/<user_id>`: the co-interaction recommendation
of the original design, computed live in SQL per request (for the user's positively engaged
media, find the other users who engaged with them positively and count what else those users
engaged with positively, minus what the user already interacted with). It is the reference
the precomputed neighbours replace; it is never part of the service.
"""

from __future__ import annotations

import os
from uuid import UUID

from flask import Blueprint, abort, current_app, jsonify
from psycopg_pool import ConnectionPool

from ml_service.wsgi import app

LIVE_SQL = """
    WITH mine AS (
        SELECT DISTINCT media_id
          FROM interaction
         WHERE user_id = %(user)s AND type IN ('LIKE', 'WATCH')
    ), neighbours AS (
        SELECT DISTINCT i.user_id
          FROM interaction i
          JOIN mine m ON m.media_id = i.media_id
         WHERE i.type IN ('LIKE', 'WATCH') AND i.user_id <> %(user)s
    )
    SELECT i.media_id, count(*) AS co_interactions
      FROM interaction i
      JOIN neighbours n ON n.user_id = i.user_id
     WHERE i.type IN ('LIKE', 'WATCH')
       AND i.media_id NOT IN (SELECT media_id FROM interaction WHERE user_id = %(user)s)
  GROUP BY i.media_id
  ORDER BY co_interactions DESC
     LIMIT %(limit)s
"""

bp = Blueprint("bench_reference", __name__)


@bp.get("/bench/live-sql/<user_id>")
def live_sql(user_id: str):
    """The original design's recommendation for one user, computed live. 200 · 404 bad id."""
    try:
        user = UUID(user_id)
    except ValueError:
        abort(404)
    # Not bounded by the request deadline (it takes seconds at 25M): not a stuck request either.
    current_app.extensions["ml_service.liveness"].finished()
    pool: ConnectionPool = current_app.extensions["bench_pool"]
    with pool.connection() as conn:
        rows = conn.execute(LIVE_SQL, {"user": user, "limit": 10}).fetchall()
    return jsonify({"user_id": str(user), "recommendations": [{"media_id": str(m), "score": c} for m, c in rows]})


# Its own small pool with no statement timeout: the live query takes seconds at 25M.
app.extensions["bench_pool"] = ConnectionPool(
    os.environ["ENGAGEMENT_DB_URL"], min_size=0, max_size=2, open=True,
    kwargs={"autocommit": True, "application_name": "ml-service-bench"},
)
app.register_blueprint(bp)
