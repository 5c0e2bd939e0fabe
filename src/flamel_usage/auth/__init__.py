"""Credentials: API keys, signed session cookies and password hashes."""
