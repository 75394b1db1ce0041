"""The model a worker serves from: loaded once into memory, replaced when a refresh publishes a new one."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

from database.model_repository import ModelRepository
from database.records import ModelData
from services.availability import Breaker, Unavailable
from services.errors import ModelUnavailable

log = logging.getLogger(__name__)

# While no model is loaded, requests retry loading at most this often (seconds).
RETRY_WITHOUT_MODEL = 1.0


class ModelStore:
    """Holds the current ModelData; a request never waits for a reload once a model is loaded.

    Every `reload_interval` seconds the first request to ask starts a background check of the
    published version and, if it changed, loads the new model and swaps the reference (readers
    keep the old object until their request ends). With a `breaker` (the model database's),
    no load is attempted while that database is marked unavailable: requests do not wait on it.
    """

    def __init__(
        self,
        repository: ModelRepository,
        reload_interval: float,
        clock: Callable[[], float] = time.monotonic,
        breaker: Breaker | None = None,
        max_age_hours: float = 0.0,
    ) -> None:
        self._repository = repository
        self._reload_interval = reload_interval
        self._clock = clock
        self._breaker = breaker
        self._max_age = timedelta(hours=max_age_hours) if max_age_hours > 0 else None
        self._model: ModelData | None = None
        self._lock = threading.Lock()
        self._checking = False
        self._last_check = float("-inf")

    @property
    def loaded(self) -> ModelData | None:
        """The model in memory, without loading or checking anything."""
        return self._model

    def current(self) -> ModelData:
        """The model to serve from; raises ModelUnavailable when none could be loaded."""
        model = self._model
        if model is None:
            return self._load_first()
        if self._clock() - self._last_check >= self._reload_interval:
            self._start_background_check()
        return model

    @property
    def stale(self) -> bool:
        """The loaded model was built longer than MODEL_MAX_AGE_HOURS ago (the refresh job is not running)."""
        model = self._model
        if model is None or self._max_age is None:
            return False
        return datetime.now(timezone.utc) - model.info.built_at > self._max_age

    def reload(self) -> ModelData | None:
        """Load the published model now if its version differs from the one in memory."""
        version = self._repository.current_version()
        current = self._model
        if version is not None and (current is None or current.info.version != version):
            model = self._repository.load()
            if model is not None:
                self._model = model
                log.info("model loaded", extra={"model_version": model.info.version})
        return self._model

    def _load_first(self) -> ModelData:
        with self._lock:
            if self._model is None and self._clock() - self._last_check >= RETRY_WITHOUT_MODEL:
                self._last_check = self._clock()
                try:
                    self._guarded_reload()
                except Unavailable as error:
                    log.warning("could not load the model: %s", error)
                except Exception:
                    log.exception("could not load the model")
        if self._model is None:
            raise ModelUnavailable("no recommendation model is available yet; run the refresh job", retry_after=5)
        return self._model

    def _start_background_check(self) -> None:
        with self._lock:
            if self._checking:
                return
            self._checking = True
            self._last_check = self._clock()
        threading.Thread(target=self._background_check, name="model-reload", daemon=True).start()

    def _guarded_reload(self) -> None:
        if self._breaker is None:
            self.reload()
        else:
            self._breaker.call(self.reload)

    def _background_check(self) -> None:
        try:
            self._guarded_reload()
        except Unavailable:
            log.warning("model database unavailable; serving the model in memory")
        except Exception:
            log.exception("model reload check failed; serving the model in memory")
        finally:
            self._checking = False
