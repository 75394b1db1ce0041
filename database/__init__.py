"""Data access: connection pools, repositories over the three databases, and the schema."""
