"""fedcredit.node."""
