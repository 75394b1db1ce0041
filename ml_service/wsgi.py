"""WSGI entry point for Gunicorn: `ml_service.wsgi:app` (imported in each worker, after the fork)."""

import logging

from ml_service.app import create_app
from ml_service.config import Settings

settings = Settings.from_env()
logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
app = create_app(settings)
