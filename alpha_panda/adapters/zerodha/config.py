"""Settings of the Zerodha (Kite Connect) adapter: section ``zerodha`` of the app settings.

Environment: ``ALPHA_PANDA_ZERODHA__API_KEY``, ``ALPHA_PANDA_ZERODHA__API_SECRET``,
``ALPHA_PANDA_ZERODHA__SESSION_KEY`` ... Secrets are ``SecretStr``: they never appear in
logs, reprs or the effective-config dump.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from alpha_panda.domain.errors import ConfigurationError


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
    session_file: Path = Path("data/zerodha_session.enc")
    instruments_cache_dir: Path = Path("data/instruments")
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

    def redacted(self) -> dict[str, Any]:
        """The effective settings for logging: secrets shown only as set/unset."""
        out = self.model_dump()
        for name in ("api_secret", "session_key"):
            out[name] = "***" if getattr(self, name).get_secret_value() else ""
        return out


def zerodha_settings(settings: Any) -> ZerodhaSettings:
    """The ``zerodha`` section from the app settings (or a ``ZerodhaSettings`` as is)."""
    if isinstance(settings, ZerodhaSettings):
        return settings
    section = getattr(settings, "zerodha", settings)
    if isinstance(section, ZerodhaSettings):
        return section
    try:
        return ZerodhaSettings.model_validate(dict(section or {}))
    except ValidationError as exc:
        problems = "; ".join(f"zerodha.{'.'.join(map(str, e['loc']))}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigurationError(f"invalid Zerodha settings: {problems}") from exc
