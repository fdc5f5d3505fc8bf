"""Settings of the Zerodha (Kite Connect) adapter: section ``zerodha`` of the app settings.

Environment: ``ALPHA_PANDA_ZERODHA__API_KEY``, ``ALPHA_PANDA_ZERODHA__API_SECRET``,
``ALPHA_PANDA_ZERODHA__SESSION_KEY`` ... Secrets are ``SecretStr``: they never appear in
logs, reprs or the effective-config dump.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError

from alpha_panda.domain.errors import ConfigurationError

SESSION_FILE = "zerodha_session.enc"
LEGACY_SESSION_FILE = Path("data") / SESSION_FILE
"""Where the session was stored before it followed the data directory: relative to the
directory a command ran in, so a cron job or a service run from elsewhere did not find it."""


class ZerodhaSettings(BaseModel):
    """Everything the Zerodha adapter needs; frozen, passed whole to the adapter only."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: str = ""
    api_secret: SecretStr = SecretStr("")
    session_key: SecretStr = SecretStr("")
    """Encrypts the stored session at rest: a Fernet key, or any passphrase (hashed to one)."""
    root_url: str = "https://api.kite.trade"
    login_url: str = "https://kite.zerodha.com/connect/login"
    ws_url: str = "wss://ws.kite.trade"
    session_file: Path | None = None
    """The encrypted session; default ``zerodha_session.enc`` in the data directory."""
    instruments_cache_dir: Path | None = None
    """The day's instrument list from Kite; default ``instruments/`` in the data directory."""
    live_enabled: bool = False
    """The explicit switch for live trading; the safe default is paper only."""
    max_workers: int = Field(default=4, ge=1, le=32)
    """Threads for the synchronous kiteconnect client (bounds concurrent REST calls)."""
    request_timeout_s: float = Field(default=7.0, gt=0)
    orders_per_second: int = Field(default=10, ge=1)
    orders_per_minute: int = Field(default=400, ge=1)
    orders_per_day: int = Field(default=5000, ge=1)
    requests_per_second: int = Field(default=10, ge=1)
    """Kite's limit for the other REST endpoints."""
    market_protection: int = Field(default=-1, ge=-1, le=100)
    """Sent with MARKET and SL-M orders, as Kite requires: -1 lets Kite choose, else a percent."""
    poll_interval_s: float = Field(default=2.0, gt=0)
    """Order-book polling, the fallback when websocket order postbacks are missed."""
    ticker_connections: int = Field(default=1, ge=1, le=3)
    ticker_queue_size: int = Field(default=10_000, ge=1)
    reconnect_max_delay_s: float = Field(default=30.0, gt=0)
    funds_interval_s: float = Field(default=300.0, gt=0)
    """How often the live engine reads the account's funds from Kite (written to the log
    when they changed, and at start)."""
    # The app's data directory, which the default paths are under (``in_data_dir``); not a
    # setting of this section, so no environment variable sets it.
    _data_dir: Path = PrivateAttr(default=Path("data"))

    def in_data_dir(self, data_dir: Path) -> ZerodhaSettings:
        """These settings with the default paths under ``data_dir`` (explicit paths win)."""
        out = self.model_copy()
        out._data_dir = Path(data_dir)
        return out

    @property
    def session_path(self) -> Path:
        return self.session_file or self._data_dir / SESSION_FILE

    @property
    def legacy_session_path(self) -> Path | None:
        """The session file's old default (``./data/...``), when the session file is the
        default and that is now elsewhere: a session stored there is still read."""
        if self.session_file is not None or self.session_path.resolve() == LEGACY_SESSION_FILE.resolve():
            return None
        return LEGACY_SESSION_FILE

    @property
    def instruments_dir(self) -> Path:
        return self.instruments_cache_dir or self._data_dir / "instruments"

    def redacted(self) -> dict[str, Any]:
        """The effective settings for logging: secrets shown only as set/unset."""
        out = self.model_dump()
        out["session_file"], out["instruments_cache_dir"] = self.session_path, self.instruments_dir
        for name in ("api_secret", "session_key"):
            out[name] = "***" if getattr(self, name).get_secret_value() else ""
        return out


def zerodha_settings(settings: Any) -> ZerodhaSettings:
    """The ``zerodha`` section from the app settings, its default paths under the app's
    ``data_dir`` (or a ``ZerodhaSettings`` as is)."""
    if isinstance(settings, ZerodhaSettings):
        return settings
    section = getattr(settings, "zerodha", settings)
    if not isinstance(section, ZerodhaSettings):
        try:
            section = ZerodhaSettings.model_validate(dict(section or {}))
        except ValidationError as exc:
            problems = "; ".join(f"zerodha.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors())
            raise ConfigurationError(f"invalid Zerodha settings: {problems}") from exc
    data_dir = getattr(settings, "data_dir", None)
    return section.in_data_dir(data_dir) if isinstance(data_dir, Path) else section
