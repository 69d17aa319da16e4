"""Signing in (the email and password of a console user) and out."""

from __future__ import annotations

import hmac
import ipaddress
import math
from datetime import timedelta

from aiohttp import web

from console import sessions
from console.pages import PREFIX, SESSION_COOKIE, SIGN_IN_COOKIE, form, show, signed_in, state
from console.sessions import SignInRefused, Viewer
from console.settings import Network
from web.context import context

ROUTES = web.RouteTableDef()


def _next(raw: str | None) -> str:
    """Where to go after signing in: a console path only (never another site)."""
    if raw and raw.startswith(PREFIX + "/") and not raw.startswith("//"):
        return raw
    return f"{PREFIX}/customers"


def client_address(request: web.Request, proxies: tuple[Network, ...]) -> str | None:
    """The address failed sign-ins are counted under: the connection's peer or, while that
    is a trusted proxy, the hop before it in `X-Forwarded-For` (read from the right, so a
    client cannot name itself)."""
    address = request.remote
    forwarded = ",".join(request.headers.getall("X-Forwarded-For", []))
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    while address is not None and hops:
        try:
            trusted = any(ipaddress.ip_address(address) in net for net in proxies)
        except ValueError:
            return address
        if not trusted:
            return address
        address = hops.pop()
    return address


def _sign_in_page(
    request: web.Request,
    token: str,
    *,
    email: str = "",
    error: str | None = None,
    status: int = 200,
) -> web.Response:
    response = show(
        request,
        None,
        "sign_in.html",
        status=status,
        csrf_token=token,
        email=email,
        error=error,
        next=_next(request.query.get("next")),
    )
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        path=f"{PREFIX}/sign-in",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )
    return response


@ROUTES.get(f"{PREFIX}/sign-in")
async def sign_in_form(request: web.Request) -> web.Response:
    return _sign_in_page(request, request.cookies.get(SIGN_IN_COOKIE) or sessions.new_token())


@ROUTES.post(f"{PREFIX}/sign-in")
async def sign_in(request: web.Request) -> web.StreamResponse:
    data = await request.post()
    cookie = request.cookies.get(SIGN_IN_COOKIE, "")
    sent = data.get("csrf_token")
    fresh = sessions.new_token()
    if not cookie or not isinstance(sent, str) or not hmac.compare_digest(sent, cookie):
        return _sign_in_page(
            request,
            fresh,
            error="The form expired or was not sent from this page: sign in again.",
            status=403,
        )
    email, password = str(data.get("email", "")).strip(), str(data.get("password", ""))
    if not email or not password:
        return _sign_in_page(
            request, cookie, email=email, error="Enter your email and password.", status=422
        )
    lifetime = timedelta(seconds=state(request).settings.session_seconds)
    try:
        address = client_address(request, state(request).settings.proxies)
        token = await sessions.sign_in(context(request).db, email, password, lifetime, address)
    except SignInRefused as exc:
        if exc.wait is not None:
            seconds = math.ceil(exc.wait.total_seconds())
            source = "for this email" if exc.throttled == "email" else "from your network address"
            message = f"Too many failed sign-ins {source}: wait {seconds} s, then try again."
            return _sign_in_page(request, cookie, email=email, error=message, status=429)
        message = "That email and password do not match a console user."
        return _sign_in_page(request, cookie, email=email, error=message, status=401)
    response = web.HTTPSeeOther(_next(str(data.get("next", ""))))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        path=PREFIX,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="Lax",
        secure=request.secure,
    )
    response.del_cookie(SIGN_IN_COOKIE, path=f"{PREFIX}/sign-in")
    raise response


@ROUTES.post(f"{PREFIX}/sign-out")
@signed_in
async def sign_out(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    await form(request, viewer)
    async with context(request).db.acquire() as conn:
        await sessions.sign_out(conn, request.cookies[SESSION_COOKIE])
    response = web.HTTPSeeOther(f"{PREFIX}/sign-in")
    response.del_cookie(SESSION_COOKIE, path=PREFIX)
    raise response
