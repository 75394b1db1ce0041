"""Access control: API keys, rate limits, CORS and security headers, registered with one call.

- API_KEYS set (comma-separated): every /api/ request needs one of them in X-API-Key,
  compared in constant time; /health and /health/ready stay open for container probes.
- METRICS_API_KEY set: /metrics needs that key in X-API-Key.
- RATE_LIMIT set (e.g. "100/second;2000/minute"): flask-limiter counts /api/ requests per
  API key, or per client address without one, and answers 429 with Retry-After. Counters
  live in each worker's memory (N workers then allow N times the limit: gunicorn.conf.py
  warns at start), or in Redis when RATE_LIMIT_STORAGE_URL is set (shared by every worker
  and instance; if Redis fails, the workers fall back to memory).
- CORS_ORIGINS set: those origins may call /api/ from a browser (GET, POST, X-API-Key,
  X-Request-ID) and read X-Model-Version, X-Request-ID and Retry-After.
- Every response carries headers that keep browsers from sniffing, framing or caching it.
- JSON nested deeper than the parser's recursion limit is a 400, like any other invalid JSON.
- A body over MAX_CONTENT_LENGTH is a 413, sent with Content-Length or streamed (chunked).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time

from flask import Flask, Request, request
from flask.json.provider import DefaultJSONProvider
from flask_cors import CORS
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from werkzeug.exceptions import RequestEntityTooLarge

from ml_service.errors import error_response
from settings import Settings

API_PREFIX = "/api/"
METRICS_PATH = "/metrics"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, except that a body nested too deeply to parse is invalid JSON (400), not a 500."""

    def loads(self, s, **kwargs):
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


class BoundedRequest(Request):
    """Flask's request, refusing a streamed body over the limit (413) instead of cutting it there.

    Werkzeug stops reading a body without Content-Length (Transfer-Encoding: chunked) at
    max_content_length and returns what it read, which then fails as invalid JSON (a 400): it
    cannot tell an over-long body from one of exactly the limit. A body that reaches the limit
    is one over it when the server's stream still has a byte to give.
    """

    def get_data(self, *args, **kwargs):
        data = super().get_data(*args, **kwargs)
        limit = self.max_content_length
        if limit is not None and self.content_length is None and isinstance(data, bytes) and len(data) >= limit:
            if self.environ["wsgi.input"].read(1):
                raise RequestEntityTooLarge()
        return data


def register_security(app: Flask, settings: Settings) -> None:
    """Install authentication, rate limiting, CORS, security headers and bounded JSON parsing on `app`."""
    app.request_class = BoundedRequest
    sort_keys = app.json.sort_keys
    app.json = BoundedJSONProvider(app)
    app.json.sort_keys = sort_keys
    api_keys = [key.encode() for key in settings.api_key_list]
    metrics_key = settings.metrics_api_key.encode()

    @app.before_request
    def require_api_key():
        if request.method == "OPTIONS":  # CORS preflights carry no credentials
            return None
        if request.path.startswith(API_PREFIX) and api_keys and not _matches(api_keys):
            return error_response(401, "unauthorized", "a valid X-API-Key header is required")
        if request.path == METRICS_PATH and metrics_key and not _matches([metrics_key]):
            return error_response(401, "unauthorized", "a valid X-API-Key header is required")
        return None

    if settings.rate_limit:
        _register_rate_limit(app, settings, api_keys)
    if settings.cors_origin_list:
        CORS(
            app,
            resources={r"/api/*": {"origins": list(settings.cors_origin_list)}},
            methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-API-Key", "X-Request-ID"],
            # Readable by the browser code: which model answered, the request id, when to retry.
            expose_headers=["X-Model-Version", "X-Request-ID", "Retry-After"],
            max_age=600,
        )

    @app.after_request
    def security_headers(response):
        # Each one the response does not set itself (one pass: setdefault scans every header for each)
        present = {name.lower() for name, _ in response.headers}
        for name, value in SECURITY_HEADERS.items():
            if name.lower() not in present:
                response.headers.add(name, value)
        return response


def _register_rate_limit(app: Flask, settings: Settings, api_keys: list[bytes]) -> None:
    def client_key() -> str:
        presented = request.headers.get("X-API-Key", "").encode()
        if presented and api_keys and _matches(api_keys):
            # A digest, not the key itself, goes to the counter storage (which may be Redis).
            return "key:" + hashlib.sha256(presented).hexdigest()[:32]
        return "addr:" + (get_remote_address() or "unknown")

    limiter = Limiter(
        client_key,
        app=app,
        default_limits=[settings.rate_limit],
        default_limits_exempt_when=lambda: not request.path.startswith(API_PREFIX),
        storage_uri=settings.rate_limit_storage_url or "memory://",
        strategy="moving-window",
        key_prefix="ml-service",
        # Redis unreachable: count in memory instead of failing requests.
        swallow_errors=True,
        in_memory_fallback_enabled=True,
    )

    @app.errorhandler(RateLimitExceeded)
    def rate_limited(error: RateLimitExceeded):
        current = limiter.current_limit
        wait = current.reset_at - time.time() if current is not None else 1
        return error_response(
            429,
            "too_many_requests",
            f"rate limit exceeded ({error.description}); retry after the time in Retry-After",
            retry_after=max(1, math.ceil(wait)),
        )


def _matches(keys: list[bytes]) -> bool:
    """Whether X-API-Key is one of `keys`; every key is compared, each in constant time."""
    presented = request.headers.get("X-API-Key", "").encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(presented, key)
    return found
