"""Evaluation: the task format, built-in suites from real benchmark items, and scoring."""
