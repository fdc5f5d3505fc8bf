"""Zerodha Kite Connect: ticker feed, session auth, REST client, orders, instruments.

Everything that talks to Kite (or its binary formats) lives here; the pure order logic
is in ``alpha_panda.execution.zerodha``. Public API:

- ``parse_ticker_frame(frame) -> list[MarketTick]`` / ``encode_ticker_frame`` (binary ticks)
- ``ZerodhaSettings`` (section ``zerodha``), ``zerodha_settings(app_settings)``
- ``login_url``, ``complete_login``, ``require_live_session``, ``KiteSession``, ``SessionStore``
- ``KiteRestClient`` (async kiteconnect), ``RateLimiter``, ``InstrumentMaster``
- ``KiteTickerClient`` (async websocket), ``POSTBACKS`` (order-update hub)
- ``ZerodhaOrderSync`` (order events from Kite's books, reconciliation)
"""

from alpha_panda.adapters.zerodha.client import KiteRestClient, OrderRefused
from alpha_panda.adapters.zerodha.config import ZerodhaSettings, zerodha_settings
from alpha_panda.adapters.zerodha.instruments import InstrumentMaster, KiteInstrument
from alpha_panda.adapters.zerodha.order_sync import ReconcileReport, ZerodhaOrderSync
from alpha_panda.adapters.zerodha.rate_limit import RateLimiter
from alpha_panda.adapters.zerodha.session import (
    KiteSession,
    SessionStore,
    complete_login,
    login_url,
    require_live_session,
    session_expiry_ns,
)
from alpha_panda.adapters.zerodha.ticker import POSTBACKS, KiteTickerClient
from alpha_panda.adapters.zerodha.ticker_codec import encode_ticker_frame, parse_ticker_frame

__all__ = [
    "POSTBACKS", "InstrumentMaster", "KiteInstrument", "KiteRestClient", "KiteSession",
    "KiteTickerClient", "OrderRefused", "RateLimiter", "ReconcileReport", "SessionStore",
    "ZerodhaOrderSync", "ZerodhaSettings", "complete_login", "encode_ticker_frame", "login_url",
    "parse_ticker_frame", "require_live_session", "session_expiry_ns", "zerodha_settings",
]
