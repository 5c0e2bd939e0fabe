"""Session cookies that a Node/Express front end and this service can both read.

The front end and this service share the session secret, so `connect.sid` has to be
byte-for-byte what `express-session` writes: `s:` + `cookie-signature`'s `sign(id, secret)`
(value, a dot, unpadded standard base64 of HMAC-SHA256), URL-encoded the way
`encodeURIComponent` does it. Anything arriving in a Cookie header is attacker-controlled,
so every reading function here answers None rather than raising.

The device cookie is ours alone: a random device id and an HMAC that binds it to one
user, under the session secret, so that the sign-in throttle can tell a browser that
has signed in to an account before (``throttle``) and nobody can make one up. The user
id is in the MAC, not in the cookie.
"""

import base64
import hashlib
import hmac
import re
import secrets
from urllib.parse import quote, unquote_to_bytes

_SESSION_PREFIX = "s:"
# encodeURIComponent leaves these unescaped besides ASCII letters, digits and "-_.~",
# which quote() never escapes anyway.
_URI_COMPONENT_SAFE = "!*'()"
_BAD_PERCENT_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _node_utf8(text: str) -> bytes:
    """Encode `text` to the bytes Node hashes for the same JS string.

    Node writes lone UTF-16 surrogates as U+FFFD; doing the same keeps signatures equal
    for every str and means no input can make encoding raise.
    """
    utf16 = text.encode("utf-16-le", "surrogatepass")
    return utf16.decode("utf-16-le", "replace").encode("utf-8")


def _mac(value: str, secret: str) -> str:
    digest = hmac.new(_node_utf8(secret), _node_utf8(value), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii").rstrip("=")


def sign(value: str, secret: str) -> str:
    """Sign `value` exactly as npm `cookie-signature`'s `sign(value, secret)` does."""
    return f"{value}.{_mac(value, secret)}"


def unsign(signed: str, secret: str) -> str | None:
    """Return the value inside `signed` if its signature is valid for `secret`, else None.

    Splits at the last dot like `cookie-signature`, so values may themselves contain dots.
    """
    value, dot, received = signed.rpartition(".")
    if not dot:
        return None
    expected = _mac(value, secret).encode("ascii")
    if hmac.compare_digest(expected, received.encode("utf-8", "surrogatepass")):
        return value
    return None


def new_session_id() -> str:
    """Make an unguessable session id shaped like express-session's (uid-safe, 24 bytes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(24)).decode("ascii").rstrip("=")


def device_cookie_value(device_id: str, user_id: int, secret: str) -> str:
    """The device cookie for ``device_id`` (from ``new_session_id``) as ``user_id``'s."""
    return f"{device_id}.{_device_mac(device_id, user_id, secret)}"


def device_id_from_cookie(raw_value: str, user_id: int, secret: str) -> str | None:
    """The device id a device cookie carries if it was made for ``user_id``, else None."""
    device_id, dot, received = raw_value.rpartition(".")
    if not dot or not device_id:
        return None
    expected = _device_mac(device_id, user_id, secret).encode("ascii")
    if hmac.compare_digest(expected, received.encode("utf-8", "surrogatepass")):
        return device_id
    return None


def _device_mac(device_id: str, user_id: int, secret: str) -> str:
    # A context of its own, so that no session cookie's MAC is ever a device cookie's.
    return _mac(f"flamel-device\x00{user_id}\x00{device_id}", secret)


def session_cookie_value(session_id: str, secret: str) -> str:
    """Build the `connect.sid` value express-session would set for `session_id`."""
    return quote(_SESSION_PREFIX + sign(session_id, secret), safe=_URI_COMPONENT_SAFE)


def _decode_uri_component(raw: str) -> str | None:
    """Percent-decode like JS `decodeURIComponent`, but answer None where it would throw."""
    if _BAD_PERCENT_ESCAPE.search(raw):
        return None
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeError:
        return None


def session_id_from_cookie(raw_value: str, *secrets: str) -> str | None:
    """Return the session id carried by a raw `connect.sid` value, or None if it is forged,
    tampered with, signed with none of ``secrets`` or not a session cookie at all.

    Several secrets are tried in turn, as express-session tries its secret array, so that
    a secret can be rotated: cookies signed with one still listed keep working.
    """
    decoded = _decode_uri_component(raw_value)
    if decoded is None or not decoded.startswith(_SESSION_PREFIX):
        return None
    signed = decoded.removeprefix(_SESSION_PREFIX)
    for secret in secrets:
        session_id = unsign(signed, secret)
        if session_id:
            return session_id
    return None


def parse_cookie_header(header: str) -> dict[str, str]:
    """Split a `Cookie:` request header into name -> raw (still encoded) value.

    The first occurrence of a name wins, as in the `cookie` package Express uses, so both
    sides pick the same `connect.sid` when a client sends duplicates.
    """
    cookies: dict[str, str] = {}
    for pair in header.split(";"):
        name, eq, value = pair.partition("=")
        name = name.strip()
        if not eq or not name or name in cookies:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies[name] = value
    return cookies
