"""The human docs at ``GET /api`` (Swagger UI) and the document at ``GET /api-json``.

The docs work without internet access: the page, its stylesheet, Swagger UI's script
and the small init script all come from this server (``/api/static/...``), read from the
installed ``swagger_ui_bundle`` package. The page has no inline script, so a strict
Content-Security-Policy (``script-src 'self'``) can be put in front of it.
"""

from __future__ import annotations

import functools
import html

from swagger_ui_bundle import swagger_ui_path

from flamel_usage.core.errors import Refusal
from flamel_usage.http import guards, security
from flamel_usage.http.context import Services
from flamel_usage.http.openapi import document as openapi
from flamel_usage.http.routing import Request, Response

#: Where the page loads its assets from; the app routes ``/api/static/{name}`` to ``api_static``.
STATIC_PREFIX = "/api/static/"
#: The URL the init script points Swagger UI at.
DOCUMENT_URL = "/api-json"

_DOCS_HEADERS = (
    (b"content-type", b"text/html; charset=utf-8"),
    *security.html_headers(security.DOCS_POLICY),
)


async def api_json(request: Request, services: Services) -> Response:
    return Response(200, openapi.openapi_json(), [(b"content-type", b"application/json")])


async def api_docs(request: Request, services: Services) -> Response:
    return Response(200, docs_page(), list(_DOCS_HEADERS))


async def api_static(request: Request, services: Services) -> Response:
    asset = docs_asset(request.params["name"])
    if asset is None:
        raise Refusal("not_found", "no such file")
    content, content_type = asset
    return Response(
        200,
        content,
        [(b"content-type", content_type.encode()), (b"cache-control", b"public, max-age=86400")],
    )


ROUTES = [
    guards.public("GET", DOCUMENT_URL, api_json),
    guards.public("GET", "/api", api_docs),
    guards.public("GET", STATIC_PREFIX + "{name}", api_static),
]


_INIT_JS = f"""\
// Starts Swagger UI on the /api page. Kept out of the page so that no inline script is
// needed; everything is loaded from this server, so the docs work offline.
window.addEventListener("load", function () {{
  window.ui = SwaggerUIBundle({{
    url: "{DOCUMENT_URL}",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  }});
}});
"""

_CSS = "text/css; charset=utf-8"
_JS = "text/javascript; charset=utf-8"
_PNG = "image/png"

#: The only names ``/api/static/`` serves, with their content types. ``None`` in the
#: third place means "from the swagger_ui_bundle package"; a string is inline content.
_ASSETS: dict[str, tuple[str, str | None]] = {
    "swagger-ui.css": (_CSS, None),
    "swagger-ui-bundle.js": (_JS, None),
    "favicon-32x32.png": (_PNG, None),
    "favicon-16x16.png": (_PNG, None),
    "init.js": (_JS, _INIT_JS),
}


@functools.cache
def docs_page() -> bytes:
    """The body of ``GET /api``: Swagger UI, every asset from ``/api/static/``."""
    title = html.escape(str(openapi.openapi_document()["info"]["title"]))
    s = STATIC_PREFIX
    page = f"""<!DOCTYPE html>
<html lang="ko">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{s}swagger-ui.css">
<link rel="icon" type="image/png" sizes="32x32" href="{s}favicon-32x32.png">
<link rel="icon" type="image/png" sizes="16x16" href="{s}favicon-16x16.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{s}swagger-ui-bundle.js"></script>
<script src="{s}init.js"></script>
</body>
</html>
"""
    return page.encode("utf-8")


def docs_asset(name: str) -> tuple[bytes, str] | None:
    """``(content, content type)`` for an allowlisted asset name, else ``None``.

    The name is only ever a key into ``_ASSETS``, never joined to a path unchecked, so
    ``../`` or absolute names cannot reach other files. The allowlist check comes
    before the cache so that arbitrary names cannot grow it.
    """
    if name not in _ASSETS:
        return None
    return _load_asset(name)


@functools.cache
def _load_asset(name: str) -> tuple[bytes, str]:
    content_type, inline = _ASSETS[name]
    if inline is not None:
        return inline.encode("utf-8"), content_type
    return (swagger_ui_path / name).read_bytes(), content_type
