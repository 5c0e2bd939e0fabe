"""Signed session cookies must match express-session/cookie-signature exactly and must
never raise on whatever a client puts in a Cookie header."""

import re
import string
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flamel_usage.auth.cookies import (
    new_session_id,
    parse_cookie_header,
    session_cookie_value,
    session_id_from_cookie,
    sign,
    unsign,
)

SECRET = "keyboard cat"
# Any str at all, with lone surrogates made common: JSON and surrogateescape can produce them.
ANY_TEXT = st.text(
    st.one_of(
        st.characters(exclude_categories=()),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    )
)
ENCODE_URI_COMPONENT_KEEPS = set(string.ascii_letters + string.digits + "-_.!~*'()")


def test_sign_matches_cookie_signature_known_vector() -> None:
    # The example from cookie-signature's own README.
    assert sign("hello", "tobiiscool") == "hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI"


def test_sign_drops_base64_padding() -> None:
    mac = sign("hello", "tobiiscool").rpartition(".")[2]
    assert len(mac) == 43
    assert "=" not in mac


def test_unsign_known_vector() -> None:
    signed = "hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI"
    assert unsign(signed, "tobiiscool") == "hello"
    assert unsign(signed, "luna") is None


@given(value=ANY_TEXT, secret=ANY_TEXT)
def test_unsign_round_trips_sign(value: str, secret: str) -> None:
    assert unsign(sign(value, secret), secret) == value


def test_unsign_splits_at_last_dot() -> None:
    assert unsign(sign("a.b.c", SECRET), SECRET) == "a.b.c"


def test_lone_surrogates_sign_like_node_replacement_character() -> None:
    # Node hashes a lone surrogate as U+FFFD; the signed text keeps the original value.
    mac = sign("\ufffd", "\ufffd").rpartition(".")[2]
    assert sign("\ud800", "\udfff") == "\ud800." + mac


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s[:-1],  # truncated mac
        lambda s: s + "A",
        lambda s: s + "=",  # padding that sign() strips
        lambda s: s[:-1] + ("A" if s[-1] != "A" else "B"),
        lambda s: "H" + s[1:],
        lambda s: s.replace(".", ". ", 1),
        lambda s: s.rpartition(".")[0],
        lambda s: s.rpartition(".")[0] + ".",
    ],
)
def test_unsign_rejects_tampering(tamper: Callable[[str], str]) -> None:
    assert unsign(tamper(sign("hello", SECRET)), SECRET) is None


def test_unsign_rejects_every_single_character_change() -> None:
    signed = sign("session-id", SECRET)
    for i, char in enumerate(signed):
        replacement = "x" if char != "x" else "y"
        assert unsign(signed[:i] + replacement + signed[i + 1 :], SECRET) is None


def test_unsign_rejects_other_secret() -> None:
    assert unsign(sign("hello", SECRET), SECRET + " ") is None


@pytest.mark.parametrize("garbage", ["", ".", "..", "no-dot", "hello.", ".mac", "\ud800.\udc00"])
def test_unsign_rejects_garbage(garbage: str) -> None:
    assert unsign(garbage, SECRET) is None


@given(signed=ANY_TEXT, secret=ANY_TEXT)
def test_unsign_never_raises(signed: str, secret: str) -> None:
    assert unsign(signed, secret) in (None, signed.rpartition(".")[0])


def test_new_session_id_is_32_url_safe_chars() -> None:
    ids = {new_session_id() for _ in range(1000)}
    assert len(ids) == 1000
    for session_id in ids:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", session_id)


def test_session_cookie_value_matches_express_session() -> None:
    # Computed with cookie-signature 1.0.7 and encodeURIComponent under Node 20.
    expected = "s%3Aa%2Bb%2Fc.6XtBs6SClRtnxuRJVaDBXu6StSMXCcgPz8%2BCmN1cH0w"
    assert session_cookie_value("a+b/c", "x") == expected


@given(session_id=st.text())
def test_session_cookie_value_only_uses_uri_component_characters(session_id: str) -> None:
    value = session_cookie_value(session_id, SECRET)
    assert value.startswith("s%3A")
    assert set(value) <= ENCODE_URI_COMPONENT_KEEPS | {"%"}


@given(session_id=st.text(), secret=st.text())
def test_session_id_round_trips_through_cookie(session_id: str, secret: str) -> None:
    cookie = session_cookie_value(session_id, secret)
    assert session_id_from_cookie(cookie, secret) == (session_id or None)


def test_session_id_from_cookie_accepts_real_session_id() -> None:
    session_id = new_session_id()
    assert session_id_from_cookie(session_cookie_value(session_id, SECRET), SECRET) == session_id


def test_session_id_from_cookie_accepts_unencoded_value() -> None:
    # Some clients send the cookie back decoded; decodeURIComponent leaves it unchanged.
    assert session_id_from_cookie("s:" + sign("abc", SECRET), SECRET) == "abc"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "s%3A",
        sign("abc", SECRET),  # signed but missing the s: prefix
        "j%3A" + sign("abc", SECRET),
        "s%3Aabc",
        "s%3Aabc.",
        "%",
        "s%3Aabc%",
        "s%3Aabc%zz",
        "s%3Aabc%C3",  # truncated UTF-8
        "s%3Aabc%ED%A0%80",  # an encoded surrogate, which decodeURIComponent refuses
        "s%3Aabc%C0%AF",  # overlong UTF-8
        session_cookie_value("abc", SECRET) + "\ud800",  # not encodable, so not decodable
    ],
)
def test_session_id_from_cookie_rejects(raw: str) -> None:
    assert session_id_from_cookie(raw, SECRET) is None


def test_session_id_from_cookie_rejects_other_secret() -> None:
    assert session_id_from_cookie(session_cookie_value("abc", SECRET), "other") is None


def test_session_id_from_cookie_rejects_tampered_id() -> None:
    cookie = session_cookie_value("abc", SECRET)
    assert session_id_from_cookie(cookie.replace("abc", "abd"), SECRET) is None


@given(raw=ANY_TEXT, secret=ANY_TEXT)
def test_session_id_from_cookie_never_raises(raw: str, secret: str) -> None:
    session_id = session_id_from_cookie(raw, secret)
    assert session_id is None or isinstance(session_id, str)


def test_parse_cookie_header_typical() -> None:
    header = "connect.sid=s%3Aabc.def; theme=dark;lang=en"
    assert parse_cookie_header(header) == {
        "connect.sid": "s%3Aabc.def",
        "theme": "dark",
        "lang": "en",
    }


def test_parse_cookie_header_first_occurrence_wins() -> None:
    assert parse_cookie_header("a=1; a=2; b=3; b=4") == {"a": "1", "b": "3"}


def test_parse_cookie_header_strips_whitespace_and_quotes() -> None:
    header = '  a = "quoted value" ;b=  plain  ; c="; d=""'
    assert parse_cookie_header(header) == {"a": "quoted value", "b": "plain", "c": '"', "d": ""}


def test_parse_cookie_header_keeps_equals_inside_value() -> None:
    assert parse_cookie_header("token=a=b==") == {"token": "a=b=="}


@pytest.mark.parametrize("header", ["", ";", ";;", "novalue", "=orphan", " = ", "a", "; ;=;"])
def test_parse_cookie_header_skips_malformed_pairs(header: str) -> None:
    assert parse_cookie_header(header) == {}


def test_parse_cookie_header_keeps_good_pairs_next_to_bad_ones() -> None:
    assert parse_cookie_header("junk; =x; a=1; ;b") == {"a": "1"}


@given(header=ANY_TEXT)
def test_parse_cookie_header_never_raises(header: str) -> None:
    cookies = parse_cookie_header(header)
    assert all(name and name == name.strip() for name in cookies)
