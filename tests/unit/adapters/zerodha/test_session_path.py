"""Where the Kite session is kept: in the data directory, whatever directory a command runs
in (a cron job or a service at 09:15 must find the session ``auth login`` stored)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from alpha_panda.adapters.zerodha.config import zerodha_settings
from alpha_panda.adapters.zerodha.session import KiteSession, SessionStore
from alpha_panda.settings import Settings

SESSION = KiteSession(user_id="AB1234", user_name="T", api_key="k", access_token="secret",
                      login_ns=1, expires_ns=2)


def _settings(**env: object) -> Settings:
    return Settings(zerodha={"session_key": SecretStr("pass"), **env})  # type: ignore[arg-type]


def test_the_session_and_instruments_default_to_the_data_directory(tmp_path: Path) -> None:
    zs = zerodha_settings(_settings().model_copy(update={"data_dir": tmp_path / "d"}))
    assert zs.session_path == tmp_path / "d" / "zerodha_session.enc"
    assert zs.instruments_dir == tmp_path / "d" / "instruments"
    assert zs.redacted()["session_file"] == tmp_path / "d" / "zerodha_session.enc"


def test_an_explicit_session_file_wins(tmp_path: Path) -> None:
    zs = zerodha_settings(_settings(session_file=tmp_path / "s.enc")
                          .model_copy(update={"data_dir": tmp_path / "d"}))
    assert zs.session_path == tmp_path / "s.enc"
    assert zs.legacy_session_path is None


def test_login_from_one_directory_is_found_from_another(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALPHA_PANDA_DATA_DIR", str(tmp_path / "data-x"))
    monkeypatch.setenv("ALPHA_PANDA_ZERODHA__SESSION_KEY", "pass")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    SessionStore.from_settings(zerodha_settings(Settings())).save(SESSION)
    assert (tmp_path / "data-x" / "zerodha_session.enc").is_file()
    assert not (tmp_path / "a" / "data").exists()
    monkeypatch.chdir(tmp_path / "b")
    assert SessionStore.from_settings(zerodha_settings(Settings())).load() == SESSION


def test_a_session_at_the_old_default_path_is_read_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    zs = zerodha_settings(_settings().model_copy(update={"data_dir": tmp_path / "elsewhere"}))
    SessionStore(Path("data/zerodha_session.enc"), "pass").save(SESSION)  # where it used to go
    with capture_logs() as logs:
        assert SessionStore.from_settings(zs).load() == SESSION
    [warning] = [e for e in logs if e["event"] == "zerodha.session_at_old_path"]
    assert f"mv {tmp_path}/data/zerodha_session.enc {tmp_path}/elsewhere/zerodha_session.enc" \
        in warning["detail"]
    SessionStore.from_settings(zs).save(SESSION)  # a new login writes the data directory
    assert (tmp_path / "elsewhere" / "zerodha_session.enc").is_file()


def test_auth_status_reads_the_session_in_the_data_directory(tmp_path: Path) -> None:
    env = {"ALPHA_PANDA_DATA_DIR": str(tmp_path / "data-x"),
           "ALPHA_PANDA_ZERODHA__SESSION_KEY": "pass", "PATH": "/usr/bin:/bin"}
    SessionStore(tmp_path / "data-x" / "zerodha_session.enc", "pass").save(SESSION)
    status = subprocess.run([sys.executable, "-m", "alpha_panda.cli", "auth", "status", "--json"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
                            check=False)
    assert '"user_id": "AB1234"' in status.stdout, status.stderr


def test_auth_takes_the_data_directory_a_run_was_given(tmp_path: Path) -> None:
    # `run --data-dir /srv/ap` keeps its session in /srv/ap, but `auth login` and
    # `auth status` had no --data-dir ("No such option"): the login went to ./data, where
    # the run did not look, and status could not tell whether the run had one
    from typer.testing import CliRunner

    from alpha_panda.cli import app

    SessionStore(tmp_path / "srv" / "zerodha_session.enc", "pass").save(SESSION)
    env = {"ALPHA_PANDA_DATA_DIR": str(tmp_path / "elsewhere"),
           "ALPHA_PANDA_ZERODHA__SESSION_KEY": "pass", "ALPHA_PANDA_ZERODHA__API_KEY": "k"}
    status = CliRunner().invoke(app, ["auth", "status", "--json", "--data-dir",
                                      str(tmp_path / "srv")], env=env)
    assert "No such option" not in status.output
    assert status.stdout.splitlines()[0].startswith('{"logged_in": false, "user_id": "AB1234"')
    assert status.exit_code == 1 and "session has expired" in status.stderr
    # without it, the environment's data directory, which has none
    default = CliRunner().invoke(app, ["auth", "status", "--json"], env=env)
    assert default.stdout == '{"logged_in": false}\n' and default.exit_code == 1


def test_auth_status_json_answers_on_stdout_when_the_session_cannot_be_read(
        tmp_path: Path) -> None:
    # without ALPHA_PANDA_ZERODHA__SESSION_KEY, or with another key than the login's, stdout
    # was empty: `auth status --json | jq .logged_in` failed to parse instead of saying false
    from typer.testing import CliRunner

    from alpha_panda.cli import app

    SessionStore(tmp_path / "zerodha_session.enc", "pass").save(SESSION)
    for key in ("", "another"):
        env = {"ALPHA_PANDA_ZERODHA__SESSION_KEY": key, "ALPHA_PANDA_ZERODHA__API_KEY": "k"}
        status = CliRunner().invoke(app, ["auth", "status", "--json", "--data-dir",
                                          str(tmp_path)], env=env)
        assert status.exit_code == 1 and status.stderr.startswith("error: ")
        assert status.stdout == '{"logged_in": false}\n'
