"""Metrics (pure functions), baselines and the evaluation report."""
