"""fedcredit.psi."""
