"""fedcredit.data: load and validate party CSV files; write synthetic institutions.

``load_party_csv`` refuses bad files with one-line DataErrors naming file, line and
column; ``standardize`` z-scores columns; ``write_institutions`` writes a lender, an
e-commerce and a payments file sharing a configurable part of their customers.
"""

from fedcredit.data.loader import MAX_ABS_VALUE, PartyData, load_party_csv, standardize
from fedcredit.data.synthetic import write_institutions

__all__ = ["MAX_ABS_VALUE", "PartyData", "load_party_csv", "standardize", "write_institutions"]
