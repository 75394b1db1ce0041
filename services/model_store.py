"""The model a worker serves from: loaded into memory by a thread of its own, replaced when a refresh publishes."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

from database.deadline import Deadline
from database.experiment_repository import ExperimentRepository
from database.model_repository import LOAD_TIMEOUT_MS, ModelRepository
from database.pools import Unavailable
from database.records import Experiment, ModelData
from services.catalog_sync import CatalogSync
from services.errors import ModelUnavailable
from services.shared_models import SharedModels

log = logging.getLogger(__name__)

# While no model is loaded, the loader tries again this often (seconds).
RETRY_WITHOUT_MODEL = 1.0
# Seconds the loader's version check may take (off the request path).
CHECK_TIMEOUT = 5.0


class ModelStore:
    """Holds the current ModelData (and the running experiment, with the one model its variants
    may serve besides it); no request ever waits for the model database.

    `start()` runs a daemon thread that checks the published version every `reload_interval`
    seconds (every RETRY_WITHOUT_MODEL while none is loaded), with or without traffic, and
    swaps in a newer model once it is fully loaded (readers keep the old object until their
    request ends). When the model database fails, the model in memory keeps serving. With a
    `catalog_sync`, the same thread adds the catalog's new media to the model right after each
    load and every `sync_interval` seconds (services/catalog_sync.py).
    """

    def __init__(
        self,
        repository: ModelRepository,
        reload_interval: float,
        max_age_hours: float = 0.0,
        catalog_sync: CatalogSync | None = None,
        sync_interval: float = 60.0,
        experiments: ExperimentRepository | None = None,
        shared: SharedModels | None = None,
    ) -> None:
        self._repository = repository
        self._shared = shared
        self._experiments = experiments
        self._experiment: Experiment | None = None
        self._variant_models: dict[int, ModelData] = {}  # version -> model, for the experiment's variants
        self._reload_interval = reload_interval
        self._catalog_sync = catalog_sync
        self._sync_interval = sync_interval
        self._synced_at = float("-inf")  # time.monotonic() of the last catalog sync
        self._max_age = timedelta(hours=max_age_hours) if max_age_hours > 0 else None
        self._model: ModelData | None = None
        self._attempted = threading.Event()  # the first load attempt has ended, either way
        self._stop = threading.Event()
        self._listeners: list[Callable[[ModelData], None]] = []

    @property
    def loaded(self) -> ModelData | None:
        """The model in memory, None before the first successful load."""
        return self._model

    def current(self) -> ModelData:
        """The model to serve from; ModelUnavailable when none is loaded (never waits)."""
        model = self._model
        if model is None:
            raise ModelUnavailable("no recommendation model is available yet; run the refresh job", retry_after=5)
        return model

    @property
    def experiment(self) -> Experiment | None:
        """The running experiment as last read (None: none runs)."""
        return self._experiment

    def variant_model(self, version: int) -> ModelData | None:
        """The kept model `version` an experiment's variant serves: the serving model when it is
        that version, None when this worker has not loaded it (yet)."""
        model = self._model
        if model is not None and model.info.version == version:
            return model
        return self._variant_models.get(version)

    @property
    def stale(self) -> bool:
        """The loaded model was built longer than MODEL_MAX_AGE_HOURS ago (the refresh job is not running)."""
        model = self._model
        if model is None or self._max_age is None:
            return False
        return datetime.now(timezone.utc) - model.info.built_at > self._max_age

    def on_load(self, listener: Callable[[ModelData], None]) -> None:
        """Call `listener(model)` from the loader thread each time it swaps a model in."""
        self._listeners.append(listener)

    def start(self, wait: float) -> None:
        """Start the loader; return after its first attempt, or after `wait` seconds."""
        threading.Thread(target=self._run, name="model-loader", daemon=True).start()
        self._attempted.wait(wait)

    def close(self) -> None:
        """Stop the loader."""
        self._stop.set()

    def reload(self) -> ModelData | None:
        """Load the serving model now if its version differs from the one in memory (a newer
        one after a refresh, an older one after a rollback)."""
        version = self._repository.serving_version(Deadline.after(CHECK_TIMEOUT))
        current = self._model
        if version is not None and (current is None or current.info.version != version):
            model = self._load(version)
            if model is not None:
                self._synced_at = float("-inf")  # the new model lacks what the catalog gained since its build
                self._model = model
                log.info(
                    "model %s loaded", model.info.version,
                    extra={"model_version": model.info.version, "previous_version": current and current.info.version},
                )
                for listener in self._listeners:
                    listener(model)
        if self._experiments is not None:
            self._reload_experiment()
        if self._shared is not None:
            self._shared.remove_stale([m for m in (self._model, *self._variant_models.values()) if m is not None])
        return self._model

    def _load(self, version: int) -> ModelData | None:
        """Model `version` from the model database (mapped from the machine's file of it when shared)."""
        def load() -> ModelData | None:
            return self._repository.load(Deadline.after(LOAD_TIMEOUT_MS / 1000), version)

        return load() if self._shared is None else self._shared.version(version, load)

    def _extend(self, model: ModelData) -> ModelData:
        """`model` with the catalog's new media (services/catalog_sync.py), shared when it changed."""
        extended = self._catalog_sync.extend(model)
        if extended is model or self._shared is None:
            return extended
        return self._shared.share(extended)

    def _reload_experiment(self) -> None:
        """Read the running experiment; load the models its variants serve, forget the others."""
        experiment = self._experiments.running(Deadline.after(CHECK_TIMEOUT))
        wanted = set(experiment.model_versions if experiment is not None else ())
        serving = self._model.info.version if self._model is not None else None
        models = {v: m for v, m in self._variant_models.items() if v in wanted and v != serving}
        for version in sorted(wanted - set(models) - {serving}):
            model = self._load(version)
            if model is None:
                log.warning("model %s of experiment %s is not kept; its variant gets the serving model",
                            version, experiment.name)
                continue
            if self._catalog_sync is not None:
                model = self._extend(model)
            models[version] = model
            log.info("model %s loaded for experiment %s", version, experiment.name,
                     extra={"variant_model_version": version})
        self._variant_models = models
        if experiment != self._experiment:
            log.info("experiment %s", f"{experiment.name} running" if experiment else "none running",
                     extra={"experiment": experiment and experiment.name})
        self._experiment = experiment

    def sync_catalog(self) -> ModelData | None:
        """Add the catalog's new media to the model in memory now (see CatalogSync)."""
        model = self._model
        if model is not None and self._catalog_sync is not None:
            self._synced_at = time.monotonic()
            self._model = self._extend(model)  # only this thread replaces the model
            self._variant_models = {v: self._extend(m) for v, m in self._variant_models.items()}
        return self._model

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.reload()
            except Unavailable as error:  # the database's own log line says why, once per outage
                log.debug("could not check for a new model: %s", error)
            except Exception:
                log.exception("model reload failed; serving the model in memory")
            if time.monotonic() - self._synced_at >= self._sync_interval:
                try:
                    self.sync_catalog()
                except Unavailable as error:
                    log.debug("could not look for new media: %s", error)
                except Exception:
                    log.exception("catalog sync failed; serving the model in memory")
            self._attempted.set()
            wait = min(self._reload_interval, self._sync_interval)
            self._stop.wait(wait if self._model is not None else RETRY_WITHOUT_MODEL)
