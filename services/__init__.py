"""Recommendation logic (scoring, the service) and the offline jobs (refresh, import)."""
