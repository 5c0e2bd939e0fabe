"""Password hashes that stay expensive to brute-force after a database leak.

scrypt is memory-hard (16 MiB per guess at these settings), so GPU and ASIC guessing gains
little; it ships with Python, so no native extension is needed. Each hash records its own
parameters, so they can be raised later without invalidating stored passwords.
Each call costs tens of milliseconds of CPU: async callers should run it in a thread.
"""

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from flamel_usage.core.errors import Refusal

_SCHEME = "scrypt"
_SALT_BYTES = 16
_KEY_BYTES = 32
# A corrupted or hostile stored row must not be able to make one check run for minutes;
# OpenSSL's default memory cap (32 MiB) already bounds n * r.
_MAX_PARALLELISM = 16
_MIN_KEY_BYTES = 16
_POSITIVE_INT = re.compile(r"[1-9][0-9]{0,9}")


@dataclass(frozen=True)
class _Params:
    n: int
    r: int
    p: int


_CURRENT = _Params(n=2**14, r=8, p=1)


def _derive(password: str, salt: bytes, params: _Params, key_bytes: int) -> bytes:
    # surrogatepass: JSON bodies can carry lone surrogates and every str must hash.
    secret = password.encode("utf-8", "surrogatepass")
    return hashlib.scrypt(secret, salt=salt, n=params.n, r=params.r, p=params.p, dklen=key_bytes)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str) -> str:
    """Hash `password` with a fresh salt into `scrypt$n$r$p$<b64 salt>$<b64 key>`."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(password, salt, _CURRENT, _KEY_BYTES)
    params = f"{_CURRENT.n}${_CURRENT.r}${_CURRENT.p}"
    return f"{_SCHEME}${params}${_b64(salt)}${_b64(key)}"


def _positive_int(text: str) -> int | None:
    # A strict pattern: int() would also take "+1", " 1", "1_0", non-ASCII digits, and raise
    # on thousands of digits.
    return int(text) if _POSITIVE_INT.fullmatch(text) else None


def _parse_params(fields: list[str]) -> _Params | None:
    n, r, p = (_positive_int(field) for field in fields)
    if n is None or r is None or p is None:
        return None
    if n < 2 or n & (n - 1) or p > _MAX_PARALLELISM:
        return None
    return _Params(n=n, r=r, p=p)


def _b64_decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeError, binascii.Error):
        return None


def _parse(stored: str) -> tuple[_Params, bytes, bytes] | None:
    fields = stored.split("$")
    if len(fields) != 6 or fields[0] != _SCHEME:
        return None
    params = _parse_params(fields[1:4])
    salt, key = _b64_decode(fields[4]), _b64_decode(fields[5])
    if params is None or not salt or key is None or len(key) < _MIN_KEY_BYTES:
        return None
    return params, salt, key


def verify_password(password: str, stored: str) -> bool:
    """Check `password` against a `hash_password` result; False for anything malformed."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    params, salt, key = parsed
    try:
        candidate = _derive(password, salt, params, len(key))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(candidate, key)


def verify_password_dummy(password: str) -> bool:
    """Spend what `verify_password` spends, then fail.

    Login calls this when the email is unknown, so response time does not reveal which
    emails have accounts.
    """
    _derive(password, bytes(_SALT_BYTES), _CURRENT, _KEY_BYTES)
    return False


MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


async def hash_new_password(password: str) -> str:
    """The stored form of a password a user is given, after the length rules.

    Hashed in a thread, before any transaction opens, so no lock waits on scrypt.
    """
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise Refusal(
            "bad_request",
            f"password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
        )
    return await asyncio.to_thread(hash_password, password)
