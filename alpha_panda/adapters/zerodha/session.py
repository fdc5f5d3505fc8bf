"""The daily Kite login: token exchange, expiry rule and the encrypted session store.

Kite access tokens die at 06:00 IST the day after login (every token is flushed then).
The session is stored encrypted with Fernet (key from settings); the access token and
the API secret are never logged and never shown by ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import structlog
from cryptography.fernet import Fernet, InvalidToken
from kiteconnect import KiteConnect
from kiteconnect import exceptions as kex

from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.domain.errors import AuthenticationError, BrokerUnavailable, ConfigurationError

log = structlog.get_logger(__name__)
IST = timezone(timedelta(hours=5, minutes=30), "IST")
_NS = 1_000_000_000
LOGIN_HINT = "run `alpha-panda auth login`"


class KiteSession(msgspec.Struct, frozen=True, kw_only=True):
    """A logged-in Kite session. ``access_token`` is secret: repr hides it."""

    user_id: str
    user_name: str
    api_key: str
    access_token: str
    login_ns: int
    expires_ns: int

    def __repr__(self) -> str:
        return (f"KiteSession(user_id={self.user_id!r}, user_name={self.user_name!r}, "
                f"expires={ns_to_ist(self.expires_ns).isoformat()}, access_token=***)")

    __str__ = __repr__

    def expired(self, now_ns: int | None = None) -> bool:
        return (time.time_ns() if now_ns is None else now_ns) >= self.expires_ns

    def time_left_s(self, now_ns: int | None = None) -> float:
        now = time.time_ns() if now_ns is None else now_ns
        return max(0.0, (self.expires_ns - now) / _NS)


def ns_to_ist(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / _NS, tz=IST)


def ist_wall_to_ns(value: datetime | str) -> int:
    """Kite's REST times are IST wall-clock without a zone ('2026-11-24 09:15:00')."""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=IST)
    return int(dt.timestamp()) * _NS + dt.microsecond * 1000


def session_expiry_ns(login_ns: int) -> int:
    """The first 06:00 IST strictly after the login instant."""
    login = ns_to_ist(login_ns)
    six = datetime.combine(login.date(), datetime.min.time(), IST).replace(hour=6)
    if six <= login:
        six += timedelta(days=1)
    return int(six.timestamp()) * _NS


def trading_day(now_ns: int | None = None) -> date:
    """The IST calendar date (Kite's order book and limits are per IST day)."""
    return ns_to_ist(time.time_ns() if now_ns is None else now_ns).date()


class SessionStore:
    """One encrypted file holding the current session; written atomically, mode 0600.

    ``legacy``: where an older version kept it. While there is none at ``path``, a session
    there is read, with a warning saying how to move it; a login writes ``path``."""

    def __init__(self, path: Path, key: str, *, legacy: Path | None = None) -> None:
        if not key:
            raise ConfigurationError(
                "zerodha.session_key is not set (ALPHA_PANDA_ZERODHA__SESSION_KEY): it encrypts "
                "the stored Kite session")
        self._path = path
        self._legacy = legacy
        self._fernet = Fernet(_fernet_key(key))

    @classmethod
    def from_settings(cls, settings: ZerodhaSettings) -> SessionStore:
        return cls(settings.session_path, settings.session_key.get_secret_value(),
                   legacy=settings.legacy_session_path)

    def save(self, session: KiteSession) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(self._path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(self._fernet.encrypt(msgspec.json.encode(session)))
        os.replace(tmp, self._path)

    def load(self) -> KiteSession | None:
        """The stored session, or None when there is none. A file that does not decrypt
        (another key, tampering) is an ``AuthenticationError``."""
        path = self._path
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            if self._legacy is None or not self._legacy.is_file():
                return None
            path = self._legacy
            blob = path.read_bytes()
            log.warning("zerodha.session_at_old_path",
                        detail=f"the Kite session was read from {path.resolve()}, relative to "
                               f"the current directory; move it into the data directory: "
                               f"mv {path.resolve()} {self._path.resolve()}")
        try:
            return msgspec.json.decode(self._fernet.decrypt(blob), type=KiteSession)
        except (InvalidToken, msgspec.DecodeError) as exc:
            raise AuthenticationError(
                f"the stored Kite session at {path} cannot be decrypted with the "
                f"configured session_key; {LOGIN_HINT}") from exc

    def clear(self) -> None:
        self._path.unlink(missing_ok=True)
        if self._legacy is not None:
            self._legacy.unlink(missing_ok=True)


def _fernet_key(key: str) -> bytes:
    raw = key.encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (ValueError, TypeError):
        pass  # not a Fernet key: derive one from the passphrase below
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


def _client(settings: ZerodhaSettings) -> KiteConnect:
    if not settings.api_key:
        raise ConfigurationError("zerodha.api_key is not set (ALPHA_PANDA_ZERODHA__API_KEY)")
    return KiteConnect(api_key=settings.api_key, root=settings.root_url,
                       timeout=settings.request_timeout_s)


def check_login_settings(settings: ZerodhaSettings) -> None:
    """``ConfigurationError`` naming the first setting a login needs and lacks (API key,
    API secret, session key), so it is said before the trader logs in at Kite."""
    if not settings.api_key:
        raise ConfigurationError("zerodha.api_key is not set (ALPHA_PANDA_ZERODHA__API_KEY)")
    if not settings.api_secret.get_secret_value():
        raise ConfigurationError("zerodha.api_secret is not set (ALPHA_PANDA_ZERODHA__API_SECRET)")
    SessionStore.from_settings(settings)  # (its key: it says what to set)


def login_url(settings: ZerodhaSettings) -> str:
    """The Kite login page for this API key; it redirects back with a ``request_token``."""
    kite = _client(settings)
    return f"{settings.login_url}?api_key={kite.api_key}&v={kite.kite_header_version}"


def complete_login(settings: ZerodhaSettings, request_token: str, *,
                   now_ns: int | None = None) -> KiteSession:
    """Exchange ``request_token`` (checksum with the API secret), verify the profile, and
    store the session encrypted. Blocking: call from a thread in async code."""
    check_login_settings(settings)
    secret = settings.api_secret.get_secret_value()
    store = SessionStore.from_settings(settings)
    kite = _client(settings)
    try:
        data: dict[str, Any] = kite.generate_session(request_token.strip(), api_secret=secret)
        profile: dict[str, Any] = kite.profile()
    except kex.TokenException as exc:
        raise AuthenticationError(f"Kite refused the login: {exc}; {LOGIN_HINT} again") from exc
    except kex.InputException as exc:
        raise AuthenticationError(f"Kite refused the request token: {exc}") from exc
    except (kex.KiteException, OSError) as exc:
        raise BrokerUnavailable(f"Kite login failed: {exc}") from exc
    if profile.get("user_id") != data.get("user_id"):
        raise AuthenticationError("Kite profile does not match the session's user")
    login = data.get("login_time")
    login_ns = ist_wall_to_ns(login) if login else (now_ns or time.time_ns())
    session = KiteSession(
        user_id=str(data["user_id"]), user_name=str(profile.get("user_name", "")),
        api_key=settings.api_key, access_token=str(data["access_token"]), login_ns=login_ns,
        expires_ns=session_expiry_ns(login_ns))
    store.save(session)
    return session


def require_live_session(settings: ZerodhaSettings, *, now_ns: int | None = None) -> KiteSession:
    """The stored session if it is usable for live trading, else ``AuthenticationError``
    with a message telling the operator what to run."""
    session = SessionStore.from_settings(settings).load()
    if session is None:
        raise AuthenticationError(f"no Zerodha session: {LOGIN_HINT} before live trading")
    if session.api_key != settings.api_key:
        raise AuthenticationError(f"the stored Zerodha session is for another API key; {LOGIN_HINT}")
    if session.expired(now_ns):
        raise AuthenticationError(
            f"the Zerodha session of {session.user_id} expired at "
            f"{ns_to_ist(session.expires_ns):%Y-%m-%d %H:%M} IST; {LOGIN_HINT}")
    return session
