"""The one error root of fedcredit and its few subclasses.

The CLI turns any ``FedCreditError`` into one clear line and a non-zero exit;
anything else is a bug and keeps its traceback.
"""


class FedCreditError(Exception):
    """Root of every error fedcredit raises on purpose."""


class ConfigError(FedCreditError):
    """A federation file, option or command line is wrong."""


class DataError(FedCreditError):
    """A data file is wrong; the message names file, row and column."""


class CryptoError(FedCreditError):
    """A key, ciphertext or encoding is invalid (too small, out of range, wrong scale)."""


class ProtocolError(FedCreditError):
    """A peer sent something the protocol does not allow (wrong job, stale round, replay)."""


class StorageError(FedCreditError):
    """A file or folder could not be written or read (full disk, permissions, a file in the way)."""


class QuotaError(FedCreditError):
    """A party refused a request past a limit the federation file sets (a scoring quota)."""


class PartyUnavailableError(FedCreditError):
    """A party did not answer in time or refused the connection."""

    def __init__(self, party: str, detail: str) -> None:
        super().__init__(f"party {party!r} is unavailable: {detail}")
        self.party = party
        self.detail = detail
