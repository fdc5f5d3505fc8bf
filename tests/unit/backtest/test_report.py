"""The HTML report's charts state the summary's figures."""

from __future__ import annotations

import re

import numpy as np

from alpha_panda.backtest.report import render_html
from alpha_panda.backtest.result import BacktestResult
from alpha_panda.marketdata.files import TickColumns


def test_the_drawdown_chart_falls_from_the_initial_equity_as_max_drawdown_does() -> None:
    # ₹10,00,000 at the start; the first sample is ₹10,000 down, the rest recover part of it
    equity = [(1_000, 9_90_000_00, 0), (2_000, 9_95_000_00, 0), (3_000, 9_94_000_00, 0)]
    summary = {"initial_equity": "1000000.00", "max_drawdown": "10000.00"}
    result = BacktestResult(summary=summary, equity=equity)
    ticks = TickColumns(ts=np.array([1_000, 3_000], dtype=np.int64),
                        instrument_token=np.array([1, 1], dtype=np.int64),
                        last_price=np.array([100_00, 100_00], dtype=np.int64),
                        volume=np.array([0, 0], dtype=np.int64))
    page = render_html(result, ticks)
    chart = page.split("<h2>Drawdown (₹)</h2>", 1)[1].split("</svg>", 1)[0]
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", chart)
    # the chart's lowest point (its lower label) is the summary's max_drawdown
    assert labels[1] == "-10000.00"
