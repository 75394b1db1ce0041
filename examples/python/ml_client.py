"""ml-service client for Python backends (requests).

    python ml_client.py http://localhost:5000 USER_ID OTHER_USER_ID

Copy the MlServiceClient class into your code; main() shows a single call, the next page,
a batch call, a filtered row, "more like this", "because you watched" and error handling.
Only 503 is retried (with backoff, honouring Retry-After): every other error means the
request itself must change.
"""

from __future__ import annotations

import sys
import time
import uuid
from urllib.parse import quote

import requests


class MlServiceError(Exception):
    """A JSON error answer: {"error": {"code", "message", "details"?}}."""

    def __init__(self, status: int, code: str, message: str, request_id: str | None) -> None:
        super().__init__(f"{status} {code}: {message} (request id {request_id})")
        self.status, self.code, self.message, self.request_id = status, code, message, request_id


class MlServiceClient:
    """Calls ml-service with timeouts, a request id per call and retries on 503 only."""

    def __init__(self, base_url: str, timeout: float = 2.0, max_retries: int = 3, backoff: float = 0.2) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (3.05, timeout)  # (connect, read) seconds
        self.max_retries = max_retries
        self.backoff = backoff
        self.session = requests.Session()  # keeps connections alive between calls

    def recommendations(self, user_id: str, limit: int = 10, offset: int = 0, **row) -> dict:
        """One page of recommendations for one user.

        A row's filters and exclusions are keyword arguments named as in the API: media_type and
        genres (lists: a media passes with any of them), release_year_min, release_year_max,
        exclude (up to 200 media ids), diversity (0-1); and because=<a media the user liked or
        watched> for the row "Because you watched" it. A list is sent as one parameter per value;
        None leaves a parameter out.
        """
        params = {"limit": limit, "offset": offset, **row}
        return self._call("GET", f"/api/recommendations/{quote(user_id, safe='')}", params=params)

    def batch(self, user_ids: list[str], limit: int = 10, offset: int = 0, **row) -> dict:
        """One page for each of 1-50 users: {"results": {user_id: page}, "total_users": n}.

        The same row keyword arguments as recommendations() but because, sent in the JSON body.
        """
        body = {"user_ids": user_ids, "limit": limit, "offset": offset, **row}
        return self._call("POST", "/api/recommendations/batch", json={k: v for k, v in body.items() if v is not None})

    def similar(self, media_id: str, limit: int = 10, offset: int = 0, user_id: str | None = None) -> dict:
        """"More like this": {"media": the media, "similar": [items], ...}; with user_id, ordered for
        that user and without what they interacted with. 404 not_found for a media the catalog lacks."""
        params = {"limit": limit, "offset": offset, "user_id": user_id}  # None is left out
        return self._call("GET", f"/api/media/{quote(media_id, safe='')}/similar", params=params)

    def _call(self, method: str, path: str, **kwargs) -> dict:
        request_id = uuid.uuid4().hex  # the same id on every retry: one line per attempt in the service log
        for attempt in range(self.max_retries + 1):
            response = self.session.request(
                method, self.base_url + path, headers={"X-Request-ID": request_id}, timeout=self.timeout, **kwargs
            )
            if response.status_code == 503 and attempt < self.max_retries:
                retry_after = float(response.headers.get("Retry-After", 0))
                time.sleep(min(max(retry_after, self.backoff * 2**attempt), 10.0))
                continue
            if response.ok:
                return response.json()
            try:
                error = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                error = {"code": "http_error", "message": response.text[:200]}
            raise MlServiceError(response.status_code, error["code"], error["message"], response.headers.get("X-Request-ID"))
        raise AssertionError("unreachable")


def canonical_id(user_id: str) -> str:
    """A user id as the service writes it (lower-case, with dashes): batch results are keyed by it."""
    return str(uuid.UUID(user_id))


def main(base_url: str, user_id: str, other_user_id: str) -> int:
    client = MlServiceClient(base_url)

    page = client.recommendations(user_id, limit=5)
    experiment = page["experiment"]  # {name, variant} while an A/B experiment runs: log it beside your metrics
    variant = f"{experiment['name']}/{experiment['variant']}" if experiment else "none"
    print(f"single {page['user_id']} count={page['count']} first={page['recommendations'][0]['media_id']} experiment={variant}")

    following = client.recommendations(user_id, limit=5, offset=5)  # the next page: offset += limit
    print(f"page offset={following['offset']} count={following['count']} first={following['recommendations'][0]['media_id']}")

    batch = client.batch([user_id, other_user_id], limit=5)  # results are keyed by canonical_id(user id)
    counts = " ".join(f"{uid}:{batch['results'][canonical_id(uid)]['count']}" for uid in (user_id, other_user_id))
    print(f"batch total_users={batch['total_users']} {counts}")

    shown = [item["media_id"] for item in page["recommendations"]]  # what the page shows already
    row = {"genres": ["Comedy", "Romance"], "release_year_min": 1990, "exclude": shown, "diversity": 0.5}
    comedies = client.recommendations(user_id, limit=5, **row)  # a row: "Comedies since 1990"
    print(f"row count={comedies['count']} first={comedies['recommendations'][0]['media_id']}")

    rows = client.batch([user_id, other_user_id], limit=5, **row)  # the same row for several users
    firsts = " ".join(f"{uid}:{result['recommendations'][0]['media_id']}" for uid, result in rows["results"].items())
    print(f"batch row {firsts}")

    seed = page["recommendations"][0]  # "More like this" on its title page, ordered for this user
    like = client.similar(seed["media_id"], limit=5, user_id=user_id)
    print(f"similar \"{like['media']['title']}\" count={like['count']} first={like['similar'][0]['media_id']}")

    watched = next(media for item in page["recommendations"] for media in item["because"])  # {media_id, title}
    because = client.recommendations(user_id, limit=5, because=watched["media_id"])  # "Because you watched <title>"
    print(f"because \"{watched['title']}\" count={because['count']} first={because['recommendations'][0]['media_id']}")

    try:
        client.recommendations("not-a-user-id")
    except MlServiceError as error:  # 400: fix the request, do not retry
        print(f"error {error.status} {error.code}")
    return 0


def cli(argv: list[str]) -> int:
    """Run main() on BASE_URL USER_ID OTHER_USER_ID; a usage line and exit status 2 otherwise."""
    try:
        base_url, user_id, other_user_id = argv
        user_id, other_user_id = canonical_id(user_id), canonical_id(other_user_id)
    except ValueError:  # not three arguments, or an id that is not a UUID
        print("usage: python ml_client.py BASE_URL USER_ID OTHER_USER_ID (user ids are UUIDs, in any case)", file=sys.stderr)
        return 2
    return main(base_url, user_id, other_user_id)


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
