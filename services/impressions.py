"""Recording what was shown: a bounded in-memory queue per worker, written by a background thread.

A request only appends its pages to the queue (no query, no wait). The writer thread copies
them to ml.impressions in batches (one binary COPY each) every FLUSH_INTERVAL seconds, or
sooner when a batch is full. While the model database is slow or down the queue fills; beyond
its capacity the oldest impressions are dropped and counted, and writing resumes by itself
when the database is back. Once per UTC day (and at its first write) the writer prepares the
day's partitions and drops those past the retention (ml.prepare_impression_partitions).
"""

from __future__ import annotations

import collections
import logging
import threading
from datetime import date, datetime, timezone
from typing import Callable, Iterable

from database.experiment_repository import ExperimentRepository
from database.records import Impression
from services.recommendation_service import Recommendations, SimilarMedia

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0  # seconds between writes while impressions arrive
BATCH = 5_000  # impressions per COPY at most
CLOSE_TIMEOUT = 2.0  # seconds a stopping worker spends writing what it still holds


class ImpressionLog:
    """A worker's impressions on their way to the model database (see the module docstring)."""

    def __init__(self, repository: ExperimentRepository, capacity: int, retention_days: int) -> None:
        self._repository = repository
        self._capacity = capacity
        self._retention_days = retention_days
        self._queue: collections.deque[Impression] = collections.deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._prepared: date | None = None  # the UTC day whose partitions were last prepared
        self._failing = False
        self._on_dropped: list[Callable[[int], None]] = []
        self._on_written: list[Callable[[int], None]] = []
        self.dropped = 0
        self.written = 0

    @property
    def enabled(self) -> bool:
        """Whether impressions are recorded (IMPRESSION_RETENTION_DAYS > 0)."""
        return self._retention_days > 0

    @property
    def pending(self) -> int:
        """Impressions waiting for the writer."""
        return len(self._queue)

    def observe(self, dropped: Callable[[int], None], written: Callable[[int], None]) -> None:
        """Call `dropped(n)` for impressions lost to a full queue, `written(n)` for those stored."""
        self._on_dropped.append(dropped)
        self._on_written.append(written)

    def record(self, impressions: Iterable[Impression]) -> None:
        """Queue `impressions` (never blocks on the database); drops the oldest beyond capacity."""
        if not self.enabled:
            return
        with self._lock:
            self._queue.extend(impressions)
            over = self._trim()
            full = len(self._queue) >= BATCH
        if over:
            self._dropped(over)
        if full:
            self._wake.set()

    def start(self) -> None:
        """Start the writer thread."""
        if self.enabled:
            threading.Thread(target=self._run, name="impression-writer", daemon=True).start()

    def close(self) -> None:
        """Stop the writer, then write what is queued (giving up after CLOSE_TIMEOUT seconds)."""
        self._stop.set()
        self._wake.set()
        if self.enabled and self._queue:
            done = threading.Thread(target=self._final_flush, name="impression-final-flush", daemon=True)
            done.start()
            done.join(CLOSE_TIMEOUT)

    def _final_flush(self) -> None:
        try:
            self.flush()
        except Exception as error:
            log.warning("%d impressions not written at shutdown: %s", len(self._queue), error)

    def flush(self) -> int:
        """Write the queued impressions now, a batch at a time; the number written. On a failure
        the batch goes back to the front of the queue and the error is raised."""
        total = 0
        while self._queue:
            with self._lock:
                batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
            try:
                self._prepare(batch[0].shown_at.date())
                self._repository.write_impressions(batch)
            except BaseException:
                with self._lock:
                    self._queue.extendleft(reversed(batch))
                    over = self._trim()
                if over:
                    self._dropped(over)
                raise
            total += len(batch)
            self.written += len(batch)
            for listener in self._on_written:
                listener(len(batch))
        return total

    def _prepare(self, day: date) -> None:
        if self._prepared != day:
            self._repository.prepare_partitions(self._retention_days)
            self._prepared = day

    def _trim(self) -> int:
        """Drop the oldest impressions beyond capacity (the lock held); how many."""
        over = len(self._queue) - self._capacity
        for _ in range(max(over, 0)):
            self._queue.popleft()
        return max(over, 0)

    def _dropped(self, count: int) -> None:
        self.dropped += count
        for listener in self._on_dropped:
            listener(count)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_INTERVAL)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.flush()
            except Exception as error:  # the database's own log line says why, once per outage
                if not self._failing:
                    log.warning("impressions not written, kept in memory (%d queued): %s", len(self._queue), error)
                self._failing = True
            else:
                if self._failing:
                    log.info("impressions written again")
                self._failing = False


class RecordingRecommender:
    """Wraps the recommendation service: every answered page with a user goes to `impressions`."""

    def __init__(self, inner, impressions: ImpressionLog, request_id: Callable[[], str]) -> None:
        self._inner = inner
        self._impressions = impressions
        self._request_id = request_id

    def recommend(self, user_id, *args, **kwargs) -> Recommendations:
        """RecommendationService.recommend, recorded as row kind "because" or "recommendations"."""
        page = self._inner.recommend(user_id, *args, **kwargs)
        kind = "because" if kwargs.get("because") is not None else "recommendations"
        self._impressions.record([self._impression(page, kind, self._request_id())])
        return page

    def recommend_many(self, *args, **kwargs) -> dict:
        """RecommendationService.recommend_many, each user's page recorded under one request id."""
        pages = self._inner.recommend_many(*args, **kwargs)
        request_id = self._request_id()
        self._impressions.record(self._impression(page, "recommendations", request_id) for page in pages.values())
        return pages

    def similar(self, *args, **kwargs) -> SimilarMedia:
        """RecommendationService.similar, recorded ("similar") when it is ordered for a user."""
        page = self._inner.similar(*args, **kwargs)
        if page.user_id is not None:
            self._impressions.record([self._impression(page, "similar", self._request_id())])
        return page

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    @staticmethod
    def _impression(page: Recommendations | SimilarMedia, kind: str, request_id: str) -> Impression:
        tag = page.experiment
        return Impression(
            shown_at=datetime.now(timezone.utc),
            request_id=request_id,
            user_id=page.user_id,
            experiment=tag and tag.name,
            variant=tag and tag.variant,
            model_version=page.model_version,
            row_kind=kind,
            media_ids=tuple(item.media.id for item in page.items),
        )
