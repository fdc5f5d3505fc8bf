"""Zerodha login over HTTP: Kite redirects back to ``GET /auth/zerodha/callback``.

Set the app's redirect URL on the Kite developer console to
``http://HOST:PORT/auth/zerodha/callback``; ``GET /auth/zerodha/login`` sends the browser
to Kite's login page. The access token never appears in a response or a log line.
"""

from __future__ import annotations

import asyncio
import html
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from alpha_panda.adapters.zerodha.config import ZerodhaSettings, zerodha_settings
from alpha_panda.adapters.zerodha.session import (
    SessionStore,
    check_login_settings,
    complete_login,
    login_url,
    ns_to_ist,
)
from alpha_panda.domain.errors import (
    AlphaPandaError,
    AuthenticationError,
    BrokerUnavailable,
    ConfigurationError,
)

router = APIRouter(prefix="/auth/zerodha", tags=["auth"])


def get_zerodha_settings(request: Request) -> ZerodhaSettings:
    """The ``zerodha`` settings section of the running system (``run --data-dir`` puts the
    session file under its data directory), else of the environment (a dependency: tests
    override it)."""
    running = getattr(request.app.state, "app_settings", None)
    if running is not None:
        return zerodha_settings(running)
    from alpha_panda.settings import Settings

    return zerodha_settings(Settings())


Zs = Annotated[ZerodhaSettings, Depends(get_zerodha_settings)]


def _page(title: str, body: str, code: int) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(body)}</p></body></html>",
        status_code=code)


def _not_configured(exc: ConfigurationError) -> HTMLResponse:
    return _page("Zerodha is not configured",
                 f"{exc}. The README's 'Live trading on Zerodha' lists the settings; set "
                 "them and restart Alpha Panda.", 503)


@router.get("/login", include_in_schema=True, response_model=None,
            responses={503: {"description": "Zerodha is not configured"}})
async def login(settings: Zs) -> RedirectResponse | HTMLResponse:
    """Redirect the browser to Kite's login page for the configured API key."""
    try:
        check_login_settings(settings)  # (said now, not after the trader logged in at Kite)
        return RedirectResponse(login_url(settings), status_code=307)
    except ConfigurationError as exc:
        return _not_configured(exc)


@router.get("/callback", response_class=HTMLResponse)
async def callback(settings: Zs,
                   request_token: Annotated[str | None, Query()] = None,
                   status: Annotated[str | None, Query()] = None) -> HTMLResponse:
    """Kite's redirect after login: exchange the request token and store the session."""
    if status is not None and status != "success":
        return _page("Zerodha login failed", f"Kite reported status {status!r}.", 400)
    if not request_token:
        return _page("Zerodha login failed", "The redirect carried no request_token.", 400)
    try:
        session = await asyncio.to_thread(complete_login, settings, request_token)
    except AuthenticationError as exc:
        return _page("Zerodha login refused", str(exc), 401)
    except BrokerUnavailable as exc:
        return _page("Kite unreachable", str(exc), 502)
    except ConfigurationError as exc:
        return _not_configured(exc)
    expires = ns_to_ist(session.expires_ns).strftime("%Y-%m-%d %H:%M IST")
    return _page("Zerodha login complete",
                 f"Logged in as {session.user_id} ({session.user_name}); the session is valid "
                 f"until {expires}. You can close this page.", 200)


@router.get("/status")
async def status(settings: Zs) -> JSONResponse:
    """Whether a usable Kite session is stored: user, expiry and time left."""
    try:
        session = SessionStore.from_settings(settings).load()
    except AlphaPandaError as exc:
        return JSONResponse({"logged_in": False, "error": str(exc)})
    if session is None:
        return JSONResponse({"logged_in": False})
    body: dict[str, Any] = {
        "logged_in": not session.expired(), "user_id": session.user_id,
        "user_name": session.user_name,
        "expires_at": ns_to_ist(session.expires_ns).isoformat(),
        "time_left_s": round(session.time_left_s()),
    }
    return JSONResponse(body)
