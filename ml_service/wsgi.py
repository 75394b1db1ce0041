"""WSGI entry point for Gunicorn: `ml_service.wsgi:app` (imported in each worker, after the fork)."""

from ml_service.app import create_app
from ml_service.request_log import configure_logging
from settings import Settings

settings = Settings.from_env()
configure_logging(settings.log_level)
app = create_app(settings)
