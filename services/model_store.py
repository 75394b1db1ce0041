"""The model a worker serves from: loaded once into memory, replaced when a refresh publishes a new one."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from database.model_repository import ModelRepository
from database.records import ModelData
from services.errors import ModelUnavailable

log = logging.getLogger(__name__)

# While no model is loaded, requests retry loading at most this often (seconds).
RETRY_WITHOUT_MODEL = 1.0


class ModelStore:
    """Holds the current ModelData; a request never waits for a reload once a model is loaded.

    Every `reload_interval` seconds the first request to ask starts a background check of the
    published version and, if it changed, loads the new model and swaps the reference (readers
    keep the old object until their request ends).
    """

    def __init__(
        self,
        repository: ModelRepository,
        reload_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._repository = repository
        self._reload_interval = reload_interval
        self._clock = clock
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
                    self.reload()
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

    def _background_check(self) -> None:
        try:
            self.reload()
        except Exception:
            log.exception("model reload check failed; serving the model in memory")
        finally:
            self._checking = False
