"""fedcredit.data."""
