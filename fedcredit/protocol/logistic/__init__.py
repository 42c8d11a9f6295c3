"""Logistic regression: the first model family."""
