"""A/B experiments: assignment of users to variants, attribution of outcomes, the report."""
