"""API keys: made from a secure random source, recognisable, kept only as a hash.

A key is ``flm_`` and 43 URL-safe characters (256 random bits). Such a key cannot be
guessed, so a fast hash (SHA-256) is enough to make a stolen database useless for
calling the API, and it keeps the lookup on the hot path cheap. The first characters
are stored in clear as ``prefix`` so that people can tell their keys apart.
"""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "flm_"
_KEY_SHAPE = re.compile(r"flm_[A-Za-z0-9_-]{43}")
_SHOWN_CHARS = 12


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def key_prefix(key: str) -> str:
    return key[:_SHOWN_CHARS]


def is_well_formed(key: str) -> bool:
    """True when ``key`` could be one of ours; anything else is refused without a query."""
    return _KEY_SHAPE.fullmatch(key) is not None
