"""``alpha-panda auth login|status``: the daily Kite Connect login.

``login`` prints Kite's login URL; after logging in, Kite redirects to your redirect URL
with ``request_token=...`` in the address: paste the token (or the whole address). The
API's ``/auth/zerodha/callback`` does the same when it is the redirect URL.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs, urlparse

import typer

from alpha_panda.adapters.zerodha.config import ZerodhaSettings, zerodha_settings
from alpha_panda.adapters.zerodha.session import (
    SessionStore,
    check_login_settings,
    complete_login,
    login_url,
    ns_to_ist,
)
from alpha_panda.domain.errors import AlphaPandaError

app = typer.Typer(help="Log in to Zerodha Kite Connect and inspect the session.",
                  no_args_is_help=True)


DataDirOpt = Annotated[Path | None, typer.Option(
    "--data-dir", help="the data directory the session is kept in, as the run's --data-dir "
                       "(default: ALPHA_PANDA_DATA_DIR, else ./data)")]


def _settings(data_dir: Path | None = None) -> ZerodhaSettings:
    from alpha_panda.cli.settings import load_settings
    from alpha_panda.observability.logging import configure_logging

    settings = load_settings()
    if data_dir is not None:  # (a run started with --data-dir keeps its session there)
        settings = settings.model_copy(update={"data_dir": data_dir})
    # warnings (a session read from its old place) to stderr: stdout may be --json
    configure_logging(json=settings.log_format == "json", level="WARNING")
    return zerodha_settings(settings)


def request_token_from(text: str) -> str:
    """The request token from a pasted token or the whole redirect address."""
    text = text.strip()
    if "request_token=" in text:
        values = parse_qs(urlparse(text).query).get("request_token") or \
            parse_qs(text.split("?", 1)[-1]).get("request_token")
        if values:
            return values[0]
    return text


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


@app.command()
def login(request_token: Annotated[str | None, typer.Option(
        "--request-token", help=("the request_token (or redirect URL) from Kite's redirect "
              "(default: print the login URL and prompt for it)"))] = None,
          data_dir: DataDirOpt = None) -> None:
    """Exchange a request token for a session and store it encrypted."""
    settings = _settings(data_dir)
    try:
        # what the login needs, before the trader logs in at Kite and pastes its token
        check_login_settings(settings)
        url = login_url(settings)
        if request_token is None:
            typer.echo(f"Open this URL, log in, then paste the request_token:\n\n  {url}\n", err=True)
            request_token = typer.prompt("request_token (or the redirect URL)")
        session = complete_login(settings, request_token_from(request_token))
    except AlphaPandaError as exc:
        raise _fail(str(exc)) from exc
    expires = ns_to_ist(session.expires_ns).strftime("%Y-%m-%d %H:%M IST")
    typer.echo(f"Logged in as {session.user_id} ({session.user_name}); valid until {expires}.")


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
           data_dir: DataDirOpt = None) -> None:
    """Show the stored session: user, expiry, time left. Exit 1 when none is usable."""
    settings = _settings(data_dir)
    try:
        session = SessionStore.from_settings(settings).load()
    except AlphaPandaError as exc:
        if as_json:  # (a script reading stdout found nothing there to parse)
            typer.echo(json.dumps({"logged_in": False}))
        raise _fail(str(exc)) from exc
    if session is None:
        if as_json:
            typer.echo(json.dumps({"logged_in": False}))
        raise _fail("no Zerodha session; run `alpha-panda auth login`")
    left = session.time_left_s()
    # (live trading refuses a session of another API key: so does this, as not logged in)
    same_key = session.api_key == settings.api_key
    info = {"logged_in": left > 0 and same_key, "user_id": session.user_id,
            "user_name": session.user_name, "api_key": session.api_key,
            "expires_at": ns_to_ist(session.expires_ns).isoformat(), "time_left_s": round(left)}
    if as_json:
        typer.echo(json.dumps(info))
    else:
        hours, rem = divmod(int(left), 3600)
        typer.echo(f"user:      {session.user_id} ({session.user_name})")
        typer.echo(f"api key:   {session.api_key}")
        typer.echo(f"expires:   {ns_to_ist(session.expires_ns):%Y-%m-%d %H:%M} IST")
        typer.echo(f"time left: {hours}h {rem // 60:02d}m" if left > 0 else "time left: expired")
    if not same_key:
        raise _fail(f"the stored Zerodha session is for API key {session.api_key!r}, not the "
                    f"configured {settings.api_key!r} (ALPHA_PANDA_ZERODHA__API_KEY): live "
                    "trading refuses it; run `alpha-panda auth login`")
    if left <= 0:
        raise _fail("the Zerodha session has expired; run `alpha-panda auth login`")
