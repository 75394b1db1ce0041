"""New titles before the next refresh: media added to catalog_db after a model was built join
that model's arrays, recommendable by genre match (no neighbours, popularity 0).

The model loader (services/model_store.py) calls `CatalogSync.extend` every
CATALOG_SYNC_INTERVAL seconds and right after loading a model: one query lists the live ids
(16 bytes each), and one more describes the new ones, if any. Requests never scan the catalog.
"""

from __future__ import annotations

import logging

from database.catalog_repository import CatalogRepository
from database.deadline import Deadline
from database.records import ModelData
from services.scoring import media_indices

log = logging.getLogger(__name__)

# Seconds one sync's queries may take (off the request path).
SYNC_TIMEOUT = 10.0


class CatalogSync:
    """Adds the catalog's live media that a model does not know to (a copy of) that model."""

    def __init__(self, catalog: CatalogRepository) -> None:
        self._catalog = catalog

    def extend(self, model: ModelData) -> ModelData:
        """`model` with the live media it does not know appended (the same object when none)."""
        deadline = Deadline.after(SYNC_TIMEOUT)
        ids = self._catalog.live_media_ids(deadline)
        _, known = media_indices(model, ids)
        new = ids[~known]
        if not len(new):
            return model
        media = self._catalog.media_by_ids(new, deadline)
        extended = model.with_media(sorted(media.values(), key=lambda m: m.id.bytes))
        log.info(
            "catalog sync: %d new media recommendable by genre",
            extended.appended - model.appended,
            extra={"model_version": model.info.version, "new_media": extended.appended},
        )
        return extended
