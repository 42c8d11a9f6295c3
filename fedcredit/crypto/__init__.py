"""fedcredit.crypto."""
