"""fedcredit.cli."""
