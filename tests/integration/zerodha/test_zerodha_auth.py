"""The daily Kite login against the fake, with the official client; expiry; the store."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from alpha_panda.adapters.zerodha.client import KiteRestClient
from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.session import (
    IST,
    KiteSession,
    SessionStore,
    complete_login,
    login_url,
    require_live_session,
    session_expiry_ns,
)
from alpha_panda.domain.errors import AuthenticationError
from alpha_panda.testing.fake_kite import FakeKite

_NS = 10**9


def _ns(*args: int) -> int:
    return int(datetime(*args, tzinfo=IST).timestamp()) * _NS  # type: ignore[misc,arg-type]


@pytest.mark.parametrize("login, expiry", [
    ((2026, 11, 24, 9, 15), (2026, 11, 25, 6, 0)),
    ((2026, 11, 24, 23, 59), (2026, 11, 25, 6, 0)),
    ((2026, 11, 24, 5, 59), (2026, 11, 24, 6, 0)),  # before the 06:00 flush: dies at 06:00
    ((2026, 11, 24, 6, 0), (2026, 11, 25, 6, 0)),
    ((2026, 12, 31, 10, 0), (2027, 1, 1, 6, 0)),
])
def test_tokens_expire_at_six_ist_after_login(login: tuple[int, ...],
                                              expiry: tuple[int, ...]) -> None:
    assert session_expiry_ns(_ns(*login)) == _ns(*expiry)


def test_login_exchanges_the_request_token_and_stores_the_session_encrypted(
        settings: ZerodhaSettings, fake: FakeKite) -> None:
    url = login_url(settings)
    assert url.startswith(settings.login_url) and f"api_key={fake.api_key}" in url
    session = complete_login(settings, "fake_request_token")
    assert session.user_id == fake.user_id and session.user_name == "Fake Trader"
    assert session.access_token in fake.access_tokens
    assert session.expires_ns == session_expiry_ns(session.login_ns)
    blob = settings.session_path.read_bytes()
    assert session.access_token.encode() not in blob and fake.user_id.encode() not in blob
    assert settings.session_path.stat().st_mode & 0o077 == 0
    assert session.access_token not in repr(session) and session.access_token not in str(session)
    assert require_live_session(settings) == session


def test_a_wrong_api_secret_fails_the_checksum(settings: ZerodhaSettings) -> None:
    bad = settings.model_copy(update={"api_secret": SecretStr("not the secret")})
    with pytest.raises(AuthenticationError, match="checksum"):
        complete_login(bad, "fake_request_token")
    assert not settings.session_path.exists()


def test_a_request_token_works_once(settings: ZerodhaSettings) -> None:
    complete_login(settings, "fake_request_token")
    with pytest.raises(AuthenticationError, match="refused"):
        complete_login(settings, "fake_request_token")


def test_live_trading_refuses_a_missing_or_expired_session(settings: ZerodhaSettings) -> None:
    with pytest.raises(AuthenticationError, match="alpha-panda auth login"):
        require_live_session(settings)
    session = complete_login(settings, "fake_request_token")
    with pytest.raises(AuthenticationError, match="expired.*alpha-panda auth login"):
        require_live_session(settings, now_ns=session.expires_ns)
    assert require_live_session(settings, now_ns=session.expires_ns - 1) == session


def test_a_session_file_under_another_key_is_refused(settings: ZerodhaSettings,
                                                     tmp_path: Path) -> None:
    complete_login(settings, "fake_request_token")
    other = settings.model_copy(update={"session_key": SecretStr("another key")})
    with pytest.raises(AuthenticationError, match="cannot be decrypted"):
        require_live_session(other)


def test_a_fernet_key_or_passphrase_both_work(tmp_path: Path) -> None:
    from cryptography.fernet import Fernet

    s = KiteSession(user_id="U", user_name="N", api_key="k", access_token="t", login_ns=1,
                    expires_ns=2)
    for key in (Fernet.generate_key().decode(), "just words"):
        store = SessionStore(tmp_path / f"{len(key)}.enc", key)
        store.save(s)
        assert store.load() == s


async def test_an_expired_token_becomes_an_authentication_error(
        settings: ZerodhaSettings, session: KiteSession, fake: FakeKite) -> None:
    kite = KiteRestClient(settings, session.access_token)
    try:
        assert (await kite.profile())["user_id"] == fake.user_id
        fake.expire_tokens()  # Kite's 06:00 flush
        with pytest.raises(AuthenticationError, match="auth login"):
            await kite.orders()
    finally:
        await kite.close()
