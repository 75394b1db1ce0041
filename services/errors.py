"""Errors the service raises; the API turns each into a JSON error with its status and code."""

from __future__ import annotations


class ServiceError(Exception):
    """An error a client can be told about: HTTP status, a stable code and a safe message."""

    status = 500
    code = "internal_error"

    def __init__(
        self, message: str, *, retry_after: int | None = None, details: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.details = details  # per field, as for invalid input


class ModelUnavailable(ServiceError):
    """No recommendation model has been built yet, or it cannot be loaded."""

    status = 503
    code = "model_unavailable"


class DatabaseUnavailable(ServiceError):
    """A database the answer cannot do without (catalog_db) does not answer."""

    status = 503
    code = "database_unavailable"


class MediaNotFound(ServiceError):
    """The media asked about is not in the catalog (or was deleted)."""

    status = 404
    code = "not_found"


class NotInHistory(ServiceError):
    """A row "because you watched" a media the user has not liked or watched."""

    status = 404
    code = "not_found"
