"""Where a webhook may be sent: https, to a public address (SSRF protection).

A URL is checked when its endpoint is registered and again before every send, since a
name can resolve elsewhere later (DNS rebinding); a send then connects to the address
that was checked, not to whatever the name resolves to a moment later.
``FLAMEL_WEBHOOK_ALLOW_PRIVATE`` lifts both rules, for tests and private networks.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from flamel_usage.core.errors import Refusal

MAX_URL_LENGTH = 2048


@dataclass(frozen=True, slots=True)
class Target:
    """Where to connect for a URL: ``address`` is None when nothing was checked (private
    addresses allowed), and the URL is then used as it is."""

    url: str
    host: str
    address: str | None


def _refused(message: str) -> Refusal:
    return Refusal("bad_request", f"url: {message}")


def checked_shape(url: str, *, allow_private: bool) -> tuple[str, int | None]:
    """The host and port of a URL of an allowed shape, else ``bad_request``."""
    if len(url) > MAX_URL_LENGTH or any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise _refused(f"at most {MAX_URL_LENGTH} characters, without spaces or controls")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _refused("not a URL") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        raise _refused("must be https (plain http only with FLAMEL_WEBHOOK_ALLOW_PRIVATE)")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise _refused("needs a host, and no user or password")
    if parts.fragment:
        raise _refused("must not have a fragment")
    return parts.hostname, port


def _private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def public_target(url: str, *, allow_private: bool) -> Target:
    """The URL's target, with every address its host resolves to checked to be public.

    ``bad_request`` for a URL of another shape, a host that does not resolve, or one
    that resolves to a private, loopback, link-local (169.254.169.254, the cloud metadata
    service), or otherwise non-public address.
    """
    host, port = checked_shape(url, allow_private=allow_private)
    if allow_private:
        return Target(url, host, None)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(
            host, port or 443, type=socket.SOCK_STREAM
        )
    except (OSError, UnicodeError):
        raise _refused(f"the host {host!r} does not resolve") from None
    addresses = [str(info[4][0]) for info in found]
    if not addresses or any(_private(address) for address in addresses):
        raise _refused(
            f"the host {host!r} resolves to a private, loopback or link-local address"
            " (allowed only with FLAMEL_WEBHOOK_ALLOW_PRIVATE)"
        )
    return Target(url, host, addresses[0])
