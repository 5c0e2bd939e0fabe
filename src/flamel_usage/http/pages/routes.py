"""The pages' routes: sign in, see your usage, sign out (here), manage your API keys
(``keys_page.py``), static files (``assets.py``); in English and Korean.

Everything works without JavaScript: plain HTML forms posting
``application/x-www-form-urlencoded``, answered with ``303 See Other``. The forms'
guards are in ``forms.py``, the HTML in the templates (``render.py``).

With the platform's session store (``auth.platform_sessions``) signing in and out is the
platform's: ``/login`` and ``/logout`` answer 404, a signed-out visitor is sent to
``FLAMEL_LOGIN_URL``, and the pages show no sign-out button.
"""

from __future__ import annotations

import functools

from flamel_usage.accounts.users import email_of
from flamel_usage.auth import cookies
from flamel_usage.auth import credentials as auth
from flamel_usage.core.errors import Refusal
from flamel_usage.db.gateway import DatabaseUnavailable
from flamel_usage.http import guards, security
from flamel_usage.http.api import usage as public
from flamel_usage.http.context import Services
from flamel_usage.http.pages import forms, keys_page, responses
from flamel_usage.http.pages.assets import static_file
from flamel_usage.http.pages.language import page_language
from flamel_usage.http.pages.render import (
    render_forbidden,
    render_login,
    render_unavailable,
    render_usage,
)
from flamel_usage.http.render import refusal_headers
from flamel_usage.http.routing import Handler, Request, Response
from flamel_usage.ledger.balances import read_usage
from flamel_usage.ledger.history import read_history


async def login_page(request: Request, services: Services) -> Response:
    language, headers = page_language(request)
    if await guards.signed_in_user(request, services, services.clock()) is not None:
        return responses.redirect("/usage", headers)
    if services.sessions.external:
        return responses.to_sign_in(services, headers)
    token, token_headers = forms.login_token(request)
    return responses.page(200, render_login(language, token), [*headers, *token_headers])


async def login_submit(request: Request, services: Services) -> Response:
    public.refuse_without_own_sign_in(services)
    language, _ = page_language(request)
    if not security.same_origin(request):
        return responses.page(403, render_forbidden(language))
    form = await forms.read_form(request)
    if not forms.login_token_ok(request, form):
        return responses.page(403, render_forbidden(language))
    token, _ = forms.login_token(request)
    email = form.get("email", "")
    password = form.get("password", "")
    if not email.strip() or not password:
        html = render_login(language, token, email=email, error="error_missing")
        return responses.page(400, html)
    secret = services.session_secret.reveal()
    try:
        signed_in = await auth.login(
            services.db,
            email,
            password,
            now=services.clock(),
            ttl_seconds=services.settings.session_ttl_seconds,
            client=guards.client_address(request, services),
            device_cookie=public.device_cookie(request),
            secret=secret,
            budget=services.login_budget,
        )
    except Refusal as refusal:
        services.metrics.auth_failure(refusal.reason)
        if refusal.reason == "invalid_credentials":
            html = render_login(language, token, email=email, error="error_credentials")
            return responses.page(401, html)
        if refusal.reason != "too_many_requests":
            raise
        html = render_login(language, token, email=email, error="error_throttled")
        return responses.page(429, html, refusal_headers(refusal))
    value = cookies.session_cookie_value(signed_in.session_id, secret)
    return responses.redirect(
        "/usage",
        [
            public.session_cookie_header(
                value, services.settings.session_ttl_seconds, request, services
            ),
            public.device_cookie_header(signed_in.device_cookie, request),
            forms.used_login_token(request),
        ],
    )


async def usage_page(request: Request, services: Services) -> Response:
    language, headers = page_language(request)
    now = services.clock()
    claim = await guards.session_claim(request, services, now)
    if claim is None:
        return responses.to_sign_in(services, headers)
    zone = services.settings.timezone
    async with services.db.read() as conn:  # one read: the numbers agree with each other
        user_id = await claim.user_id(conn, now)
        if user_id is None:
            return responses.to_sign_in(services, headers)
        email = await email_of(conn, user_id)
        usage = await read_usage(conn, user_id, now, zone)
        history = await read_history(
            conn,
            user_id,
            start=None,
            end=None,
            granularity="day",
            kinds=services.settings.operation_costs,
            now=now,
            zone=zone,
        )
    html = render_usage(
        language,
        usage,
        history=history,
        email=email,
        logout_csrf=forms.session_form_token(claim.session_id, services.session_secret.reveal()),
        zone_name=zone.key or str(zone),
        sign_out=not services.sessions.external,
    )
    return responses.page(200, html, headers)


async def logout_submit(request: Request, services: Services) -> Response:
    public.refuse_without_own_sign_in(services)
    language, _ = page_language(request)
    if not security.same_origin(request):
        return responses.page(403, render_forbidden(language))
    form = await forms.read_form(request)
    clear = public.session_cookie_header("", 0, request, services)
    found = guards.session_id(request, services)
    if found is None:  # no session to end: nothing a forged request could do
        return responses.redirect("/", [clear])
    if not forms.session_form_ok(found, services.session_secret.reveal(), form):
        return responses.page(403, render_forbidden(language))
    async with services.db.transaction() as conn:
        await auth.logout(conn, found)
    return responses.redirect("/", [clear])


def _outage_as_page(handler: Handler) -> Handler:
    """``handler``, with the database being unavailable answered by a page, in the
    reader's language, rather than the API's JSON envelope, which a browser would show
    raw. Status and ``Retry-After`` are the API's."""

    @functools.wraps(handler)
    async def page(request: Request, services: Services) -> Response:
        try:
            return await handler(request, services)
        except DatabaseUnavailable:
            language, _ = page_language(request)
            return responses.page(
                503, render_unavailable(language), refusal_headers(Refusal("service_unavailable"))
            )

    return page


#: Public to the router: a page checks the session itself, for its answer to a visitor
#: not signed in is a redirect to the sign-in page or the 403 page, not the API's envelope.
ROUTES = [
    guards.public("GET", "/", _outage_as_page(login_page)),
    guards.public("POST", "/login", _outage_as_page(login_submit)),
    guards.public("GET", "/usage", _outage_as_page(usage_page)),
    guards.public("POST", "/logout", _outage_as_page(logout_submit)),
    guards.public("GET", "/keys", _outage_as_page(keys_page.show)),
    guards.public("POST", "/keys", _outage_as_page(keys_page.create)),
    guards.public("GET", "/keys/{keyId}/revoke", _outage_as_page(keys_page.confirm_revoke)),
    guards.public("POST", "/keys/{keyId}/revoke", _outage_as_page(keys_page.revoke)),
    guards.public("GET", "/static/{name}", static_file),
]
