"""Settings from the environment."""

import pytest

from settings import ConfigError, Settings

URLS = {"USER_DB_URL": "postgresql:///u", "CATALOG_DB_URL": "postgresql:///c", "ENGAGEMENT_DB_URL": "postgresql:///e"}


def test_missing_database_urls_are_named_in_the_error():
    with pytest.raises(ConfigError, match="CATALOG_DB_URL, ENGAGEMENT_DB_URL"):
        Settings.from_env({"USER_DB_URL": "postgresql:///u"})


def test_model_tables_default_to_the_engagement_database():
    assert Settings.from_env(URLS).databases.model == "postgresql:///e"
    assert Settings.from_env({**URLS, "MODEL_DB_URL": "postgresql:///m"}).databases.model == "postgresql:///m"


def test_values_are_parsed_to_the_field_types():
    settings = Settings.from_env({**URLS, "CONTENT_WEIGHT": "0.5", "POOL_MAX_SIZE": "8", "LOG_LEVEL": "DEBUG"})
    assert (settings.content_weight, settings.pool_max_size, settings.log_level) == (0.5, 8, "DEBUG")


def test_defaults_are_the_documented_weights():
    settings = Settings.from_env(URLS)
    assert (settings.content_weight, settings.collaborative_weight) == (0.1, 0.9)


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("POOL_MAX_SIZE", "many", "POOL_MAX_SIZE='many' is not a valid int"),
        ("POOL_MIN_SIZE", "9", "POOL_MIN_SIZE <= POOL_MAX_SIZE"),
        ("NEIGHBOURS_K", "0", "NEIGHBOURS_K"),
        ("CONTENT_WEIGHT", "-1", "CONTENT_WEIGHT"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL='LOUD' is not one of"),
        ("NEIGHBOURS_SHRINKAGE", "-1", "NEIGHBOURS_SHRINKAGE"),
        ("NEIGHBOURS_USER_DAMPING", "-0.5", "NEIGHBOURS_USER_DAMPING"),
        ("NEIGHBOURS_USER_CAP", "-1", "NEIGHBOURS_USER_CAP"),
        ("HISTORY_WEIGHTING", "loud", "HISTORY_WEIGHTING"),
    ],
)
def test_malformed_values_fail_at_start_up(name, value, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({**URLS, name: value})
