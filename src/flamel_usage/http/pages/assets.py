"""The pages' static files (``http/pages/static/``): served from the package, from an
allowlist, each linked with its content's hash so a browser may keep it for good.

``pages.js`` is the one script and is never inline, so the pages' strict
Content-Security-Policy holds. It only rewrites the reset time from the billing time
zone into the browser's own and makes the copy button of a new API key work; every page
works without it.
"""

from __future__ import annotations

import functools
import hashlib
from importlib import resources

from flamel_usage.core.errors import Refusal
from flamel_usage.http.context import Services
from flamel_usage.http.routing import Request, Response

#: Every file served, with its media type. A name is only ever looked up here, never
#: joined to a path, so no request can reach another file of the package.
ASSETS = {
    "pages.css": "text/css; charset=utf-8",
    "pages.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}


@functools.cache
def _asset(name: str) -> tuple[bytes, str]:
    """``(content, version)`` of an allowlisted file, read once per process."""
    static = resources.files("flamel_usage.http.pages").joinpath("static")
    content = static.joinpath(name).read_bytes()
    return content, hashlib.sha256(content).hexdigest()[:12]


def asset_url(name: str) -> str:
    """The file's URL, versioned by its content so it can be cached for good."""
    return f"/static/{name}?v={_asset(name)[1]}"


async def static_file(request: Request, services: Services) -> Response:
    name = request.params["name"]
    if name not in ASSETS:
        raise Refusal("not_found", "no such file")
    content, version = _asset(name)
    versioned = request.query_value("v") == version
    cache = b"public, max-age=31536000, immutable" if versioned else b"no-cache"
    return Response(
        200, content, [(b"content-type", ASSETS[name].encode()), (b"cache-control", cache)]
    )
