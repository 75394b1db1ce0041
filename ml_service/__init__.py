"""ml-service: hybrid media recommendations over the user, catalog and engagement databases."""

__version__ = "0.1.0"
SERVICE_NAME = "ml-service"
