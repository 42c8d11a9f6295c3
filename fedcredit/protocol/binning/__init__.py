"""Federated binning: the WOE/IV phase between alignment and training."""
