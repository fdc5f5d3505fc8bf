"""`alpha-panda auth login|status` and the API's Kite redirect endpoint, against the fake."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.session import login_url, require_live_session
from alpha_panda.api.routes import auth as auth_routes
from alpha_panda.cli import auth as auth_cli
from alpha_panda.testing.fake_kite import FakeKite


@pytest.fixture
def env(settings: ZerodhaSettings, monkeypatch: pytest.MonkeyPatch) -> ZerodhaSettings:
    values = {"API_KEY": settings.api_key, "API_SECRET": settings.api_secret.get_secret_value(),
              "SESSION_KEY": settings.session_key.get_secret_value(),
              "ROOT_URL": settings.root_url, "LOGIN_URL": settings.login_url,
              "SESSION_FILE": str(settings.session_path)}
    for name, value in values.items():
        monkeypatch.setenv(f"ALPHA_PANDA_ZERODHA__{name}", value)
    return settings


def test_cli_login_with_a_pasted_redirect_url_then_status(env: ZerodhaSettings,
                                                          fake: FakeKite) -> None:
    runner = CliRunner()
    redirect = "http://127.0.0.1:8000/auth/zerodha/callback?action=login&status=success" \
               "&request_token=fake_request_token"
    result = runner.invoke(auth_cli.app, ["login"], input=redirect + "\n")
    assert result.exit_code == 0, result.output
    assert f"api_key={fake.api_key}" in result.output  # the login URL was printed
    assert "Logged in as AB1234" in result.output
    session = require_live_session(env)
    assert session.access_token not in result.output
    status = runner.invoke(auth_cli.app, ["status", "--json"])
    assert status.exit_code == 0
    info = json.loads(status.stdout)
    assert info["user_id"] == "AB1234" and info["logged_in"] and 0 < info["time_left_s"] <= 86_400


def test_cli_status_without_a_session_says_what_to_run(env: ZerodhaSettings) -> None:
    result = CliRunner().invoke(auth_cli.app, ["status"])
    assert result.exit_code == 1
    assert "alpha-panda auth login" in result.output


def test_cli_login_with_a_bad_token_fails_cleanly(env: ZerodhaSettings) -> None:
    result = CliRunner().invoke(auth_cli.app, ["login", "--request-token", "nope"])
    assert result.exit_code == 1 and "refused" in result.output


def test_the_api_callback_completes_the_login(settings: ZerodhaSettings, fake: FakeKite) -> None:
    app = FastAPI()
    app.include_router(auth_routes.router)
    app.dependency_overrides[auth_routes.get_zerodha_settings] = lambda: settings
    client = TestClient(app)
    assert client.get("/auth/zerodha/status").json() == {"logged_in": False}
    go = client.get("/auth/zerodha/login", follow_redirects=False)
    assert go.status_code == 307 and go.headers["location"].startswith(settings.login_url)
    assert client.get("/auth/zerodha/callback", params={"status": "cancelled"}).status_code == 400
    ok = client.get("/auth/zerodha/callback",
                    params={"request_token": "fake_request_token", "status": "success"})
    assert ok.status_code == 200 and "AB1234" in ok.text
    session = require_live_session(settings)
    assert session.access_token not in ok.text
    again = client.get("/auth/zerodha/callback", params={"request_token": "fake_request_token"})
    assert again.status_code == 401  # a request token works once
    status = client.get("/auth/zerodha/status").json()
    assert status["logged_in"] and status["user_id"] == "AB1234"


def test_the_api_login_without_zerodha_configured_says_what_to_set() -> None:
    app = FastAPI()
    app.include_router(auth_routes.router)
    app.dependency_overrides[auth_routes.get_zerodha_settings] = lambda: ZerodhaSettings()
    client = TestClient(app)
    for path, params in (("/auth/zerodha/login", {}),
                         ("/auth/zerodha/callback", {"request_token": "t", "status": "success"})):
        page = client.get(path, params=params, follow_redirects=False)
        assert page.status_code == 503, path
        assert "Zerodha is not configured" in page.text
        assert "is not set (ALPHA_PANDA_ZERODHA__API_" in page.text


def test_the_api_login_says_a_missing_session_key_before_sending_the_browser_to_kite(
        settings: ZerodhaSettings) -> None:
    # it redirected to Kite, and the callback after the login answered 503 for the key
    app = FastAPI()
    app.include_router(auth_routes.router)
    keyless = settings.model_copy(update={"session_key": SecretStr("")})
    app.dependency_overrides[auth_routes.get_zerodha_settings] = lambda: keyless
    page = TestClient(app).get("/auth/zerodha/login", follow_redirects=False)
    assert page.status_code == 503 and "ALPHA_PANDA_ZERODHA__SESSION_KEY" in page.text


@pytest.mark.parametrize("missing", ["SESSION_KEY", "API_SECRET"])
def test_cli_login_says_what_is_missing_before_sending_the_trader_to_kite(
        env: ZerodhaSettings, fake: FakeKite, monkeypatch: pytest.MonkeyPatch,
        missing: str) -> None:
    # it printed Kite's login URL and waited for the token; only after the trader had
    # logged in and pasted it did it say that the session key was not set
    monkeypatch.delenv(f"ALPHA_PANDA_ZERODHA__{missing}")
    result = CliRunner().invoke(auth_cli.app, ["login"], input="fake_request_token\n")
    assert result.exit_code == 1
    assert f"ALPHA_PANDA_ZERODHA__{missing}" in result.output
    assert "connect/login" not in result.output and "request_token" not in result.output
    assert ("POST", "/session/token") not in fake.requests


def test_the_fakes_login_page_gives_a_token_for_each_login(env: ZerodhaSettings,
                                                           fake: FakeKite) -> None:
    # its login URL answered 403 (TokenException) and its one request token worked once:
    # a second `auth login` against the same fake was refused
    runner = CliRunner()
    for _ in range(2):
        with urllib.request.urlopen(login_url(env), timeout=5) as page:
            redirect = page.read().decode()
        result = runner.invoke(auth_cli.app, ["login"], input=redirect)
        assert result.exit_code == 0, result.output
        assert "Logged in as AB1234" in result.output


def test_the_fake_process_prints_the_login_url_to_export() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "alpha_panda.testing.fake_kite",
                             "--tick-interval", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        served = json.loads(proc.stdout.readline())
        export = proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(10)
    # without it, `auth login` sent the trader to kite.zerodha.com with the fake's api key
    assert f"ALPHA_PANDA_ZERODHA__LOGIN_URL={served['login_url']} " in export


def test_cli_status_refuses_a_session_of_another_api_key(env: ZerodhaSettings, fake: FakeKite,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # it showed the session and exit 0, while `run` and preflight refused it as another key's
    runner = CliRunner()
    assert runner.invoke(auth_cli.app, ["login", "--request-token", "fake_request_token"]
                         ).exit_code == 0
    monkeypatch.setenv("ALPHA_PANDA_ZERODHA__API_KEY", "another_app")
    result = runner.invoke(auth_cli.app, ["status"])
    assert result.exit_code == 1
    assert "for API key 'fake_api_key', not the configured 'another_app'" in result.output
    status = runner.invoke(auth_cli.app, ["status", "--json"])
    assert status.exit_code == 1 and json.loads(status.stdout)["logged_in"] is False
