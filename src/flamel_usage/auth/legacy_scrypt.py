"""Checks password hashes of the versions before argon2id: scrypt, in a format of our own.

``scrypt$<n>$<r>$<p>$<b64 salt>$<b64 key>``, standard base64, the password in UTF-8
(lone surrogates passed through). Verify only: a user's hash of this kind is replaced
by an argon2id one at their next successful login (``auth/credentials.py``), so this
module can go once no stored hash starts with ``scrypt$``.
"""

import base64
import binascii
import hashlib
import hmac
import re
from typing import NamedTuple

PREFIX = "scrypt$"
# A corrupted or hostile stored row must not be able to make one check run for minutes;
# OpenSSL's default memory cap (32 MiB) already bounds n * r.
_MAX_PARALLELISM = 16
_MIN_KEY_BYTES = 16
_POSITIVE_INT = re.compile(r"[1-9][0-9]{0,9}")


class _Params(NamedTuple):
    n: int
    r: int
    p: int


def verify(password: str, stored: str) -> bool:
    """Check ``password`` against a stored scrypt hash; False for anything malformed."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    params, salt, key = parsed
    secret = password.encode("utf-8", "surrogatepass")
    try:
        candidate = hashlib.scrypt(
            secret, salt=salt, n=params.n, r=params.r, p=params.p, dklen=len(key)
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(candidate, key)


def _parse(stored: str) -> tuple[_Params, bytes, bytes] | None:
    fields = stored.split("$")
    if len(fields) != 6 or fields[0] != PREFIX.rstrip("$"):
        return None
    params = _parse_params(fields[1:4])
    salt, key = _b64_decode(fields[4]), _b64_decode(fields[5])
    if params is None or not salt or key is None or len(key) < _MIN_KEY_BYTES:
        return None
    return params, salt, key


def _parse_params(fields: list[str]) -> _Params | None:
    n, r, p = (_positive_int(field) for field in fields)
    if n is None or r is None or p is None:
        return None
    if n < 2 or n & (n - 1) or p > _MAX_PARALLELISM:
        return None
    return _Params(n=n, r=r, p=p)


def _positive_int(text: str) -> int | None:
    # A strict pattern: int() would also take "+1", " 1", "1_0", non-ASCII digits, and raise
    # on thousands of digits.
    return int(text) if _POSITIVE_INT.fullmatch(text) else None


def _b64_decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeError, binascii.Error):
        return None
