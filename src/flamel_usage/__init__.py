"""flamel-usage: the service behind Flamel's ``GET /api/users/me/usage`` and its credit ledger."""

__version__ = "0.1.0"
