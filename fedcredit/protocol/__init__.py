"""fedcredit.protocol."""
