"""fedcredit: vertical federated credit scoring without pooling data."""

__version__ = "0.1.0"
