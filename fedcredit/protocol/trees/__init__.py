"""Federated gradient-boosted trees: the second model family (docs/TREES.md)."""
