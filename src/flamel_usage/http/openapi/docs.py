"""The OpenAPI document and the human-readable docs, served from the installed package."""

from __future__ import annotations

from flamel_usage.core.errors import Refusal
from flamel_usage.http import security
from flamel_usage.http.context import Services
from flamel_usage.http.openapi import document as openapi
from flamel_usage.http.routing import Request, Response

_DOCS_HEADERS = (
    (b"content-type", b"text/html; charset=utf-8"),
    *security.html_headers(security.DOCS_POLICY),
)


async def api_json(request: Request, services: Services) -> Response:
    return Response(200, openapi.openapi_json(), [(b"content-type", b"application/json")])


async def api_docs(request: Request, services: Services) -> Response:
    return Response(200, openapi.docs_page(), list(_DOCS_HEADERS))


async def api_static(request: Request, services: Services) -> Response:
    asset = openapi.docs_asset(request.params["name"])
    if asset is None:
        raise Refusal("not_found", "no such file")
    content, content_type = asset
    return Response(
        200,
        content,
        [(b"content-type", content_type.encode()), (b"cache-control", b"public, max-age=86400")],
    )


ROUTES = [
    ("GET", "/api-json", api_json),
    ("GET", "/api", api_docs),
    ("GET", "/api/static/{name}", api_static),
]
