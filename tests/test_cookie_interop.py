"""Our cookie signing against the real npm `cookie-signature` under Node.

The spec promises that a `connect.sid` signed by a Node front end is accepted here and
vice versa; only the real package can show that. Nothing is skipped: on a fresh clone the
pinned package is installed from tests/interop/package-lock.json, and a machine without
Node fails loudly instead of passing without having checked anything.
"""

import json
import subprocess
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamel_usage.auth.cookies import (
    new_session_id,
    session_cookie_value,
    session_id_from_cookie,
    sign,
    unsign,
)
from tests.node_packages import INTEROP_DIR, node_with_packages

ORACLE = INTEROP_DIR / "sign.js"
NODE_TIMEOUT_S = 60

VALUES = [
    "",
    "hello",
    "a.b.c",
    "ends with dot.",
    "with space; and=equals & 100%",
    "héllo wörld",
    "ключ",
    "🍪 cookie",
    "lone \ud800 surrogate",
    "x" * 5000,
    "Z0rTo-n4_uV8aQyF2wLpXk3eHs9bNc1m",  # express-session's uid-safe shape
    *(new_session_id() for _ in range(3)),
]
SECRETS = [
    "tobiiscool",
    "keyboard cat",
    "",
    "sécrét",
    "秘密の鍵",
    "🔑🔑",
    "\udfff lone surrogate",
    "s" * 300,  # longer than the HMAC block, so it is hashed first
]
CASES = [(value, secret) for value in VALUES for secret in SECRETS]


@pytest.fixture(scope="module")
def node() -> str:
    """Path to node, with tests/interop's pinned packages installed."""
    return node_with_packages()


def _run_node(node: str, requests: list[dict[str, str]]) -> list[Any]:
    """Run a batch of requests through sign.js in one Node process."""
    result = subprocess.run(
        [node, str(ORACLE)],
        input=json.dumps(requests),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=NODE_TIMEOUT_S,
        check=False,
        cwd=INTEROP_DIR,
    )
    if result.returncode != 0:
        pytest.fail(f"sign.js failed:\n{result.stderr}")
    answers = json.loads(result.stdout)
    assert isinstance(answers, list)
    assert len(answers) == len(requests)
    return answers


def _node_op(node: str, op: str, pairs: list[tuple[str, str]]) -> list[Any]:
    return _run_node(
        node, [{"op": op, "value": value, "secret": secret} for value, secret in pairs]
    )


def _tampered(signed: str) -> list[str]:
    value, _, mac = signed.rpartition(".")
    flipped_mac = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    return [
        f"{value}.{flipped_mac}",
        signed[:-1],
        signed + "A",
        signed + "=",
        f"{value}x.{mac}",
        value,
    ]


def test_known_vector_under_node(node: str) -> None:
    expected = "hello.DGDUkGlIkCzPz+C0B064FNgHdEjox7ch8tOBGslZ5QI"
    assert _node_op(node, "sign", [("hello", "tobiiscool")]) == [expected]
    assert sign("hello", "tobiiscool") == expected


def test_node_signed_values_unsign_here(node: str) -> None:
    node_signed = _node_op(node, "sign", CASES)
    for (value, secret), signed in zip(CASES, node_signed, strict=True):
        assert signed == sign(value, secret)
        assert unsign(signed, secret) == value


def test_our_signed_values_unsign_in_node(node: str) -> None:
    ours = [(sign(value, secret), secret) for value, secret in CASES]
    node_values = _node_op(node, "unsign", ours)
    assert node_values == [value for value, _ in CASES]


def test_node_rejects_our_tampered_signatures(node: str) -> None:
    tampered = [
        (forged, secret) for value, secret in CASES for forged in _tampered(sign(value, secret))
    ]
    assert set(_node_op(node, "unsign", tampered)) == {False}
    assert {unsign(forged, secret) for forged, secret in tampered} == {None}


def test_node_rejects_our_signature_under_another_secret(node: str) -> None:
    ours = [(sign(value, secret), secret + "!") for value, secret in CASES]
    assert set(_node_op(node, "unsign", ours)) == {False}


def test_session_cookie_is_byte_identical_to_express_session(node: str) -> None:
    ids = [new_session_id() for _ in range(5)] + ["a+b/c", "id with spaces", "ünï"]
    pairs = [(session_id, secret) for session_id in ids for secret in SECRETS[:6]]
    node_cookies = _node_op(node, "cookie", pairs)
    for (session_id, secret), cookie in zip(pairs, node_cookies, strict=True):
        assert session_cookie_value(session_id, secret) == cookie
        assert session_id_from_cookie(cookie, secret) == session_id


@settings(max_examples=15, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.text(st.characters(exclude_categories=())),
            st.text(st.characters(exclude_categories=())),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_arbitrary_text_signs_identically(node: str, pairs: list[tuple[str, str]]) -> None:
    assert _node_op(node, "sign", pairs) == [sign(value, secret) for value, secret in pairs]
