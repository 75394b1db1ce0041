"""Container health check without curl: `python -m ml_service.healthcheck` exits 0 when /health answers 200.

It calls the port Gunicorn binds (BIND, default 0.0.0.0:5000) on the loopback interface.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def health_url(bind: str) -> str:
    """The /health URL on this host for a Gunicorn BIND value such as 0.0.0.0:5000 or [::]:8000."""
    port = bind.rsplit(":", 1)[1] if ":" in bind else "5000"
    return f"http://127.0.0.1:{port}/health"


def main() -> int:
    """0 when /health answers 200 within 3 seconds, else 1 (with the reason on stderr)."""
    url = health_url(os.environ.get("BIND", "0.0.0.0:5000"))
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as error:
        print(f"unhealthy: {url}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
