"""Password hashes: a correct password verifies, nothing else does, stored strings keep
their documented formats (argon2id now, the scrypt of earlier versions still checked),
a broken stored string is a failed login, not a crash, and a login upgrades an older
hash to today's."""

import base64
import hashlib

import argon2
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamel_usage.auth.passwords import (
    hash_password,
    needs_rehash,
    verify_password,
    verify_password_dummy,
)
from flamel_usage.db.gateway import Database
from tests.factories import Factory

# Each hash costs ~40 ms, so hypothesis examples that really hash are kept few.
FEW = settings(max_examples=10, deadline=None)
ANY_TEXT = st.text(
    st.one_of(
        st.characters(exclude_categories=()),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    )
)
PASSWORD = "correct horse battery staple"
#: OWASP's first choice for argon2id: 19 MiB, 2 passes, 1 lane; 16-byte salt, 32-byte hash.
OWASP = argon2.Parameters(
    type=argon2.Type.ID,
    version=19,
    salt_len=16,
    hash_len=32,
    time_cost=2,
    memory_cost=19456,
    parallelism=1,
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _scrypt_hash(password: str, salt: bytes = bytes(range(16))) -> str:
    """A hash as the versions before argon2id stored it, built from its documented format."""
    key = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${_b64(salt)}${_b64(key)}"


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password(PASSWORD)


@pytest.fixture(scope="module")
def stored_scrypt() -> str:
    return _scrypt_hash(PASSWORD)


# --- argon2id ------------------------------------------------------------------------------


def test_correct_password_verifies(stored: str, stored_scrypt: str) -> None:
    assert verify_password(PASSWORD, stored)
    assert verify_password(PASSWORD, stored_scrypt)


@pytest.mark.parametrize(
    "wrong",
    [
        "",
        "correct horse battery stapl",
        "correct horse battery staple ",
        "Correct horse battery staple",
    ],
)
def test_wrong_password_fails(stored: str, stored_scrypt: str, wrong: str) -> None:
    assert not verify_password(wrong, stored)
    assert not verify_password(wrong, stored_scrypt)


def test_stored_format_is_argon2id_with_owasp_parameters(stored: str) -> None:
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert argon2.extract_parameters(stored) == OWASP
    assert not needs_rehash(stored)


def test_same_password_gets_a_fresh_salt() -> None:
    first, second = hash_password("same"), hash_password("same")
    assert first.split("$")[4] != second.split("$")[4]
    assert verify_password("same", first)
    assert verify_password("same", second)


def test_verifies_a_hash_made_by_argon2_directly() -> None:
    # Pins the encoding of stored rows: the password in UTF-8, a standard PHC string.
    made = argon2.PasswordHasher.from_parameters(OWASP).hash("pässwörd")
    assert verify_password("pässwörd", made)
    assert not verify_password("passwort", made)


def test_honours_parameters_recorded_in_the_stored_string() -> None:
    # Rows made with other costs keep working after a parameter change, and are upgraded.
    cheaper = argon2.PasswordHasher(time_cost=3, memory_cost=12288, parallelism=1)
    made = cheaper.hash("pw")
    assert verify_password("pw", made)
    assert needs_rehash(made)


@FEW
@given(password=ANY_TEXT)
def test_any_password_round_trips(password: str) -> None:
    assert verify_password(password, hash_password(password))


def test_lone_surrogate_passwords_are_distinct() -> None:
    stored = hash_password("\ud800")
    assert verify_password("\ud800", stored)
    assert not verify_password("\udc00", stored)
    assert not verify_password("\ufffd", stored)


def _replace_field(stored: str, index: int, value: str) -> str:
    fields = stored.split("$")
    fields[index] = value
    return "$".join(fields)


def _flip_first_byte(b64_text: str) -> str:
    padded = b64_text + "=" * (-len(b64_text) % 4)
    raw = bytearray(base64.b64decode(padded))
    raw[0] ^= 1
    return _b64(bytes(raw)).rstrip("=")


@pytest.mark.parametrize("index", [4, 5])
def test_tampered_argon2_salt_or_hash_fails(stored: str, index: int) -> None:
    tampered = _replace_field(stored, index, _flip_first_byte(stored.split("$")[index]))
    assert not verify_password(PASSWORD, tampered)


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (1, "argon2i"),
        (1, "argon2d"),
        (1, "ARGON2ID"),
        (2, "v=16"),
        (2, "v=99"),
        (3, "m=19456,t=3,p=1"),  # another cost: another hash
        (3, "m=65537,t=2,p=1"),  # past the memory bound: never computed
        (3, "m=4194304,t=2,p=1"),  # 4 GiB
        (3, "m=19456,t=9,p=1"),  # past the passes bound
        (3, "m=19456,t=100000,p=1"),
        (3, "m=19456,t=2,p=9"),  # past the lanes bound
        (3, "m=19456,t=2,p=0"),
        (3, "m=0,t=2,p=1"),
        (3, "m=19456,t=2"),
        (3, "m=-1,t=2,p=1"),
        (3, "m=١٩٤٥٦,t=2,p=1"),  # Arabic-Indic digits
        (4, ""),
        (4, "not base64!"),
        (5, ""),
        (5, "AAAA"),  # too short to be a real hash
        (5, "ÄÄÄÄ"),
    ],
)
def test_malformed_argon2_fields_fail(stored: str, index: int, value: str) -> None:
    assert not verify_password(PASSWORD, _replace_field(stored, index, value))


def test_extra_or_missing_fields_fail(stored: str, stored_scrypt: str) -> None:
    for good in (stored, stored_scrypt):
        assert not verify_password(PASSWORD, good + "$")
        assert not verify_password(PASSWORD, good.rpartition("$")[0])


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "$",
        "$$$$$",
        "scrypt",
        "scrypt$16384$8$1$",
        "$argon2id$",
        "$argon2id$v=19$m=19456,t=2,p=1$",
        "plaintext-password",
        "\ud800",
    ],
)
def test_garbage_stored_strings_fail(garbage: str) -> None:
    assert not verify_password(garbage, garbage)


@given(password=ANY_TEXT, stored=ANY_TEXT)
def test_verify_never_raises_on_arbitrary_strings(password: str, stored: str) -> None:
    assert verify_password(password, stored) is False


@settings(max_examples=50, deadline=None)
@given(
    kind=st.sampled_from(["argon2id", "argon2i", "argon2", ""]),
    version=st.text("v=0123456789", max_size=5),
    costs=st.text("mtp=,0123456789-", max_size=16),
    salt=st.text("AB=+/ $", max_size=8),
    digest=st.text("AB=+/ ", max_size=48),
)
def test_verify_never_raises_on_near_miss_argon2_rows(
    kind: str, version: str, costs: str, salt: str, digest: str
) -> None:
    stored = f"${kind}${version}${costs}${salt}${digest}"
    assert isinstance(verify_password("pw", stored), bool)


def test_dummy_always_fails() -> None:
    assert verify_password_dummy(PASSWORD) is False
    assert verify_password_dummy("") is False


def test_dummy_does_the_same_argon2_work_as_a_real_check(
    stored: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same parameters, so the same memory and passes, whatever the password."""
    checked: list[argon2.Parameters] = []
    real_verify = argon2.PasswordHasher.verify

    def spy(self: argon2.PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        text = hash.decode() if isinstance(hash, bytes) else hash
        checked.append(argon2.extract_parameters(text))
        return real_verify(self, hash, password)

    monkeypatch.setattr(argon2.PasswordHasher, "verify", spy)
    verify_password("guess", stored)
    verify_password_dummy("guess")
    assert checked == [OWASP, OWASP]


# --- hashes of the versions before argon2id: scrypt ---------------------------------------


def test_verifies_a_scrypt_hash_built_independently_from_the_documented_format() -> None:
    salt = bytes(range(16))
    key = hashlib.scrypt("pässwörd".encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    stored = f"scrypt$16384$8$1${_b64(salt)}${_b64(key)}"
    assert verify_password("pässwörd", stored)
    assert not verify_password("passwort", stored)
    assert needs_rehash(stored)


def test_honours_scrypt_parameters_recorded_in_the_stored_string() -> None:
    salt = b"0123456789abcdef"
    key = hashlib.scrypt(b"pw", salt=salt, n=2**10, r=4, p=2, dklen=24)
    assert verify_password("pw", f"scrypt$1024$4$2${_b64(salt)}${_b64(key)}")


def test_a_lone_surrogate_scrypt_password_verifies() -> None:
    salt = bytes(16)
    secret = "\ud800".encode("utf-8", "surrogatepass")
    key = hashlib.scrypt(secret, salt=salt, n=2**10, r=8, p=1, dklen=32)
    stored = f"scrypt$1024$8$1${_b64(salt)}${_b64(key)}"
    assert verify_password("\ud800", stored)
    assert not verify_password("\udc00", stored)


@pytest.mark.parametrize("index", [4, 5])
def test_tampered_scrypt_salt_or_key_fails(stored_scrypt: str, index: int) -> None:
    field = stored_scrypt.split("$")[index]
    tampered = _replace_field(stored_scrypt, index, _b64(_flipped(field)))
    assert not verify_password(PASSWORD, tampered)


def _flipped(b64_text: str) -> bytes:
    raw = bytearray(base64.b64decode(b64_text))
    raw[0] ^= 1
    return bytes(raw)


@pytest.mark.parametrize(("index", "value"), [(1, "8192"), (2, "4"), (3, "2")])
def test_tampered_scrypt_parameters_fail(stored_scrypt: str, index: int, value: str) -> None:
    assert not verify_password(PASSWORD, _replace_field(stored_scrypt, index, value))


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (0, "bcrypt"),
        (0, "SCRYPT"),
        (1, "16385"),  # not a power of two
        (1, "1"),
        (1, "0"),
        (1, "-16384"),
        (1, "016384"),
        (1, "+16384"),
        (1, " 16384"),
        (1, "1_6384"),
        (1, "١٦٣٨٤"),  # Arabic-Indic digits, which int() would accept
        (1, "9" * 5000),  # int() would raise on this many digits
        (1, "1073741824"),  # 2**30: far past the memory cap
        (2, "0"),
        (2, "999999999"),
        (3, "0"),
        (3, "17"),  # would make one check take seconds
        (3, ""),
        (4, ""),
        (4, "not base64!"),
        (4, "AAAA="),
        (5, ""),
        (5, _b64(bytes(8))),  # too short to be a real key
        (5, "AAAA AAAA"),
        (5, "ÄÄÄÄ"),
    ],
)
def test_malformed_scrypt_fields_fail(stored_scrypt: str, index: int, value: str) -> None:
    assert not verify_password(PASSWORD, _replace_field(stored_scrypt, index, value))


@settings(max_examples=50, deadline=None)
@given(
    n=st.text("0123456789-+ ", max_size=12),
    r=st.text("0123456789", max_size=4),
    p=st.text("0123456789", max_size=3),
    salt=st.text("AB=+/ $", max_size=8),
    key=st.text("AB=+/ ", max_size=48),
)
def test_verify_never_raises_on_near_miss_scrypt_rows(
    n: str, r: str, p: str, salt: str, key: str
) -> None:
    assert isinstance(verify_password("pw", f"scrypt${n}${r}${p}${salt}${key}"), bool)


# --- a login upgrades an older hash --------------------------------------------------------


async def _stored_hash(db: Database, user_id: int) -> str:
    async with db.read() as conn:
        stored: str = await conn.fetchval("SELECT password_hash FROM users WHERE id = ?", user_id)
    return stored


async def _set_hash(db: Database, user_id: int, stored: str) -> None:
    async with db.transaction() as conn:
        await conn.execute("UPDATE users SET password_hash = ? WHERE id = ?", stored, user_id)


async def _login(client: httpx.AsyncClient, email: str, password: str) -> int:
    response = await client.post("/api/auth/login", json={"email": email, "password": password})
    client.cookies.clear()
    return response.status_code


@pytest.mark.parametrize("older", ["scrypt", "argon2id-cheaper"])
async def test_a_login_upgrades_an_older_hash_to_argon2id(
    client: httpx.AsyncClient, db: Database, factory: Factory, older: str
) -> None:
    user = await factory.user()
    cheaper = argon2.PasswordHasher(time_cost=3, memory_cost=12288, parallelism=1)
    before = _scrypt_hash(PASSWORD) if older == "scrypt" else cheaper.hash(PASSWORD)
    await _set_hash(db, user.id, before)

    assert await _login(client, user.email, "not the password") == 401
    assert await _stored_hash(db, user.id) == before  # a failed login changes nothing

    assert await _login(client, user.email, PASSWORD) == 200
    after = await _stored_hash(db, user.id)
    assert argon2.extract_parameters(after) == OWASP
    assert verify_password(PASSWORD, after)

    assert await _login(client, user.email, PASSWORD) == 200  # and it goes on working
    assert await _stored_hash(db, user.id) == after  # a current hash is left as it is
    assert await _login(client, user.email, "not the password") == 401


async def test_a_current_hash_is_not_rewritten_at_login(
    client: httpx.AsyncClient, db: Database, factory: Factory
) -> None:
    user = await factory.user(password=PASSWORD)
    before = await _stored_hash(db, user.id)
    assert await _login(client, user.email, PASSWORD) == 200
    assert await _stored_hash(db, user.id) == before
