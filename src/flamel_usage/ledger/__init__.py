"""Balances, purchases and the append-only ledger that every balance can be recomputed from."""
