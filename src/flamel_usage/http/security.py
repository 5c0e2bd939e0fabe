"""Security headers: what every response carries, and what an HTML page adds.

Every response is ``nosniff`` (the app adds it); HTML also gets a Content-Security-Policy
that forbids framing, inline scripts and third-party resources, ``X-Frame-Options`` for
browsers that predate ``frame-ancestors``, and a ``Referrer-Policy`` that keeps our URLs
off other sites.
"""

from __future__ import annotations

from flamel_usage.http.routing import Request

Header = tuple[bytes, bytes]

NOSNIFF: Header = (b"x-content-type-options", b"nosniff")

#: The sign-in and usage pages: our own files only, nothing inline.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: The API docs (Swagger UI, served from the package): its icons are ``data:`` URLs, it
#: fetches ``/api-json`` (and "Try it out" reaches this origin only), and inline styles
#: are allowed for what it renders; scripts stay ``'self'`` only.
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def html_headers(policy: str) -> tuple[Header, ...]:
    """The headers an HTML response adds to every response's ``nosniff``."""
    return (
        (b"content-security-policy", policy.encode()),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    )


def same_origin(request: Request) -> bool:
    """True unless an ``Origin`` header is present and names another origin than ours.

    The guard every state-changing request of a signed-in browser passes (pages and API):
    a browser always sends ``Origin`` on a cross-site POST or DELETE.
    """
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "").strip().lower()
    scheme = "https" if request.is_https else "http"
    return bool(host) and origin.strip().lower() == f"{scheme}://{host}"
