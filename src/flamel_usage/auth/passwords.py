"""Password hashes that stay expensive to brute-force after a database leak.

argon2id through argon2-cffi (the reference C implementation), with the parameters the
OWASP Password Storage Cheat Sheet gives as its first choice for argon2id: 19 MiB of
memory, 2 passes, 1 lane. Memory-hard, so GPU and ASIC guessing gains little; about
40 ms of one core per hash or check, so async callers run it in a thread. A hash is a
PHC string (``$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>``) that records its own
parameters: they can be raised later, and every older hash, argon2id with other
parameters or the scrypt of earlier versions (``legacy_scrypt``), is still checked and
is replaced at the user's next successful login (``needs_rehash``).
"""

import asyncio
import base64

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from flamel_usage.auth import legacy_scrypt
from flamel_usage.core.errors import Refusal

_PARAMETERS = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=2,
    memory_cost=19 * 1024,  # KiB
    parallelism=1,
)
_HASHER = argon2.PasswordHasher.from_parameters(_PARAMETERS)
# A corrupted or hostile stored row must not be able to make one check run for minutes,
# while leaving room to raise the parameters above (RFC 9106's second choice, 64 MiB,
# t=3, p=4, fits).
_MAX_MEMORY_KIB = 64 * 1024
_MAX_TIME_COST = 8
_MAX_PARALLELISM = 8


def _secret(password: str) -> bytes:
    # surrogatepass: JSON bodies can carry lone surrogates and every str must hash.
    return password.encode("utf-8", "surrogatepass")


def hash_password(password: str) -> str:
    """Hash ``password`` with a fresh salt into an argon2id PHC string."""
    return _HASHER.hash(_secret(password))


def verify_password(password: str, stored: str) -> bool:
    """Check ``password`` against a stored hash of any scheme we wrote; False for
    anything malformed or too costly to check."""
    if stored.startswith(legacy_scrypt.PREFIX):
        return legacy_scrypt.verify(password, stored)
    if not _checkable(stored):
        return False
    try:
        return _HASHER.verify(stored, _secret(password))
    except (VerificationError, InvalidHashError):
        return False


def _checkable(stored: str) -> bool:
    """An argon2id hash whose recorded parameters are within the bounds above."""
    if not stored.isascii():
        return False
    try:
        found = argon2.extract_parameters(stored)
    except InvalidHashError:
        return False
    return (
        found.type is argon2.Type.ID
        and found.memory_cost <= _MAX_MEMORY_KIB
        and found.time_cost <= _MAX_TIME_COST
        and found.parallelism <= _MAX_PARALLELISM
    )


def needs_rehash(stored: str) -> bool:
    """Whether a hash that just verified is of an older scheme or other parameters,
    and so is to be replaced by ``hash_password`` of the same password."""
    if stored.startswith(legacy_scrypt.PREFIX):
        return True
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def verify_password_dummy(password: str) -> bool:
    """Spend what ``verify_password`` spends on a current hash, then fail.

    Login calls this when the email is unknown, so response time does not reveal which
    emails have accounts. The dummy hash has the current parameters, a zero salt and a
    zero digest, which no password hashes to.
    """
    verify_password(password, _dummy_hash())
    return False


def _dummy_hash() -> str:
    p = _PARAMETERS
    salt, digest = _b64(bytes(p.salt_len)), _b64(bytes(p.hash_len))
    costs = f"m={p.memory_cost},t={p.time_cost},p={p.parallelism}"
    return f"$argon2id$v={p.version}${costs}${salt}${digest}"


def _b64(raw: bytes) -> str:
    """PHC strings' base64: standard alphabet, no padding."""
    return base64.b64encode(raw).decode("ascii").rstrip("=")


MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


async def hash_new_password(password: str) -> str:
    """The stored form of a password a user is given, after the length rules.

    Hashed in a thread, before any transaction opens, so no lock waits on argon2.
    """
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise Refusal(
            "bad_request",
            f"password needs {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters",
        )
    return await asyncio.to_thread(hash_password, password)
