"""Metrics and aggregation. Knows nothing of tasks, models or files."""
