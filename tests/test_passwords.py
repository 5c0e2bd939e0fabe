"""Password hashes: a correct password verifies, nothing else does, stored strings keep
their documented format, and a broken stored string is a failed login, not a crash."""

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamel_usage.auth.passwords import hash_password, verify_password, verify_password_dummy

# Each hash costs ~50 ms, so hypothesis examples that really hash are kept few.
FEW = settings(max_examples=10, deadline=None)
ANY_TEXT = st.text(
    st.one_of(
        st.characters(exclude_categories=()),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    )
)


@pytest.fixture(scope="module")
def stored() -> str:
    return hash_password("correct horse battery staple")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def test_correct_password_verifies(stored: str) -> None:
    assert verify_password("correct horse battery staple", stored)


@pytest.mark.parametrize(
    "wrong",
    [
        "",
        "correct horse battery stapl",
        "correct horse battery staple ",
        "Correct horse battery staple",
    ],
)
def test_wrong_password_fails(stored: str, wrong: str) -> None:
    assert not verify_password(wrong, stored)


def test_stored_format(stored: str) -> None:
    scheme, n, r, p, salt, key = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert len(base64.b64decode(salt, validate=True)) == 16
    assert len(base64.b64decode(key, validate=True)) == 32


def test_same_password_gets_a_fresh_salt() -> None:
    first, second = hash_password("same"), hash_password("same")
    assert first.split("$")[4] != second.split("$")[4]
    assert verify_password("same", first)
    assert verify_password("same", second)


def test_verifies_a_hash_built_independently_from_the_documented_format() -> None:
    # Pins the encoding of stored rows: UTF-8 password, standard base64 salt and key.
    salt = bytes(range(16))
    key = hashlib.scrypt("pässwörd".encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    stored = f"scrypt$16384$8$1${_b64(salt)}${_b64(key)}"
    assert verify_password("pässwörd", stored)
    assert not verify_password("passwort", stored)


def test_honours_parameters_recorded_in_the_stored_string() -> None:
    # Older or newer rows with other costs must keep working after a parameter change.
    salt = b"0123456789abcdef"
    key = hashlib.scrypt(b"pw", salt=salt, n=2**10, r=4, p=2, dklen=24)
    assert verify_password("pw", f"scrypt$1024$4$2${_b64(salt)}${_b64(key)}")


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
    raw = bytearray(base64.b64decode(b64_text))
    raw[0] ^= 1
    return _b64(bytes(raw))


@pytest.mark.parametrize("index", [4, 5])
def test_tampered_salt_or_key_fails(stored: str, index: int) -> None:
    tampered = _replace_field(stored, index, _flip_first_byte(stored.split("$")[index]))
    assert not verify_password("correct horse battery staple", tampered)


@pytest.mark.parametrize(("index", "value"), [(1, "8192"), (2, "4"), (3, "2")])
def test_tampered_parameters_fail(stored: str, index: int, value: str) -> None:
    assert not verify_password("correct horse battery staple", _replace_field(stored, index, value))


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
def test_malformed_fields_fail(stored: str, index: int, value: str) -> None:
    assert not verify_password("correct horse battery staple", _replace_field(stored, index, value))


@pytest.mark.parametrize(
    "garbage",
    ["", "$", "$$$$$", "scrypt", "scrypt$16384$8$1$", "plaintext-password", "\ud800"],
)
def test_garbage_stored_strings_fail(garbage: str) -> None:
    assert not verify_password(garbage, garbage)


def test_extra_or_missing_fields_fail(stored: str) -> None:
    assert not verify_password("correct horse battery staple", stored + "$")
    assert not verify_password("correct horse battery staple", stored.rpartition("$")[0])


@given(password=ANY_TEXT, stored=ANY_TEXT)
def test_verify_never_raises_on_arbitrary_strings(password: str, stored: str) -> None:
    assert verify_password(password, stored) is False


@settings(max_examples=50, deadline=None)
@given(
    n=st.text("0123456789-+ ", max_size=12),
    r=st.text("0123456789", max_size=4),
    p=st.text("0123456789", max_size=3),
    salt=st.text("AB=+/ $", max_size=8),
    key=st.text("AB=+/ ", max_size=48),
)
def test_verify_never_raises_on_near_miss_rows(n: str, r: str, p: str, salt: str, key: str) -> None:
    assert isinstance(verify_password("pw", f"scrypt${n}${r}${p}${salt}${key}"), bool)


def test_dummy_always_fails() -> None:
    assert verify_password_dummy("correct horse battery staple") is False
    assert verify_password_dummy("") is False


def test_dummy_does_the_same_scrypt_work_as_a_real_check(
    stored: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int, int, int, int]] = []
    real_scrypt = hashlib.scrypt

    def spy(password: bytes, *, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
        calls.append((len(salt), n, r, p, dklen))
        return real_scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen)

    monkeypatch.setattr(hashlib, "scrypt", spy)
    verify_password("guess", stored)
    verify_password_dummy("guess")
    assert len(calls) == 2
    assert calls[0] == calls[1]
