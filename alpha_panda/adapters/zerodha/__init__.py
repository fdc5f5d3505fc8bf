"""Zerodha Kite Connect: ticker feed, session auth, REST client, orders, instruments.

Everything that talks to Kite (or its binary formats) lives here; the pure order logic
is in ``alpha_panda.execution.zerodha``. Public API:

- ``parse_ticker_frame(frame) -> list[MarketTick]`` / ``encode_ticker_frame`` (binary ticks)
- ``ZerodhaSettings`` (section ``zerodha``), ``zerodha_settings(app_settings)``
- ``login_url``, ``complete_login``, ``require_live_session``, ``KiteSession``, ``SessionStore``
- ``KiteRestClient`` (async kiteconnect), ``RateLimiter``, ``InstrumentMaster``
- ``KiteTickerClient`` (async websocket), ``POSTBACKS`` (order-update hub)
- ``ZerodhaOrderSync`` (order events from Kite's books, reconciliation)

The settings and the frame codec load eagerly; the rest on first use, so importing the
settings does not pull in kiteconnect and websockets.
"""

from __future__ import annotations

import importlib
from typing import Any

from alpha_panda.adapters.zerodha.config import ZerodhaSettings, zerodha_settings
from alpha_panda.adapters.zerodha.ticker_codec import encode_ticker_frame, parse_ticker_frame

_LAZY = {
    "KiteRestClient": "client", "OrderRefused": "client",
    "InstrumentMaster": "instruments", "KiteInstrument": "instruments",
    "ReconcileReport": "order_sync", "ZerodhaOrderSync": "order_sync",
    "RateLimiter": "rate_limit",
    "KiteSession": "session", "SessionStore": "session", "complete_login": "session",
    "login_url": "session", "require_live_session": "session", "session_expiry_ns": "session",
    "POSTBACKS": "ticker", "KiteTickerClient": "ticker",
}

__all__ = [
    "POSTBACKS", "InstrumentMaster", "KiteInstrument", "KiteRestClient", "KiteSession",
    "KiteTickerClient", "OrderRefused", "RateLimiter", "ReconcileReport", "SessionStore",
    "ZerodhaOrderSync", "ZerodhaSettings", "complete_login", "encode_ticker_frame", "login_url",
    "parse_ticker_frame", "require_live_session", "session_expiry_ns", "zerodha_settings",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
