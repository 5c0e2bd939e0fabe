"""What a page answers with: a rendered page, a redirect, a cookie.

Every page is ``no-store`` (it shows one person's account) and carries the strict
Content-Security-Policy of ``http/security.py``: the templates hold no inline script or
style, so the policy can forbid both.
"""

from __future__ import annotations

from collections.abc import Iterable

from flamel_usage.http import security
from flamel_usage.http.context import Services
from flamel_usage.http.routing import Request, Response

Header = tuple[bytes, bytes]

_PAGE_HEADERS = (
    (b"content-type", b"text/html; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"vary", b"Accept-Language, Cookie"),
    *security.html_headers(security.PAGE_POLICY),
)


def page(status: int, html: str, headers: Iterable[Header] = ()) -> Response:
    return Response(status, html.encode("utf-8"), [*_PAGE_HEADERS, *headers])


def redirect(location: str, headers: Iterable[Header] = ()) -> Response:
    """``303 See Other``: a form's answer, so that a reload does not post it again."""
    return Response(
        303, b"", [(b"location", location.encode()), (b"cache-control", b"no-store"), *headers]
    )


def to_sign_in(services: Services, headers: Iterable[Header] = ()) -> Response:
    """The redirect of a signed-out visitor: to our sign-in page, or to the platform's
    (``FLAMEL_LOGIN_URL``) when sessions are the platform's."""
    login_url = services.settings.login_url  # set whenever the store is external
    return redirect(login_url if services.sessions.external and login_url else "/", headers)


def set_cookie(
    request: Request, name: str, value: str, max_age: int | None, same_site: str
) -> Header:
    """An HttpOnly cookie for the whole site; ``Secure`` when the request came over
    HTTPS; for the browser's session when ``max_age`` is None."""
    secure = "; Secure" if request.is_https else ""
    lifetime = "" if max_age is None else f"; Max-Age={max_age}"
    attributes = f"Path=/{lifetime}; HttpOnly; SameSite={same_site}{secure}"
    return (b"set-cookie", f"{name}={value}; {attributes}".encode())
