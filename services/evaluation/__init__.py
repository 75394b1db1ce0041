"""Offline evaluation: temporal split, metrics, baselines and the run that compares them."""
