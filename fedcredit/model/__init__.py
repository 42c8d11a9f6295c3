"""fedcredit.model."""
