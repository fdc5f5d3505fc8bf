"""Zerodha Kite Connect: ticker feed, session auth, REST client, orders, instruments.

Everything that talks to Kite (or its binary formats) lives here; the pure order logic
is in ``alpha_panda.execution.zerodha``.
"""

from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.ticker_codec import encode_ticker_frame, parse_ticker_frame

__all__ = ["ZerodhaSettings", "encode_ticker_frame", "parse_ticker_frame"]
