"""A self-contained HTML report of a backtest: inline SVG, no scripts from anywhere, works
offline. Equity curve, drawdown, trades on the price chart, the trade list. Deterministic:
the same result renders the same bytes (timings are left out)."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import numpy as np

from alpha_panda.backtest.metrics import FIGURES
from alpha_panda.backtest.result import BacktestResult, rupees
from alpha_panda.domain.values import to_paise
from alpha_panda.marketdata.files import TickColumns
from alpha_panda.marketdata.instruments import symbol_of

IST = timezone(timedelta(hours=5, minutes=30))
W, H, PAD = 900, 220, 40
MAX_POINTS = 1500
MAX_TRADES = 2000
MAX_CHARTS = 12  # instruments charted, the most traded first


def _ist(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1e9, IST).strftime("%Y-%m-%d %H:%M:%S")


def _scale(values: Sequence[float], lo: float, hi: float, size: int, flip: bool) -> list[float]:
    span = (hi - lo) or 1.0
    out = [(v - lo) / span * (size - 2 * PAD) + PAD for v in values]
    return [size - v for v in out] if flip else out


def _chart(title: str, xs: Sequence[int], ys: Sequence[int], colour: str,
           marks: Sequence[tuple[int, int, str]] = ()) -> str:
    if len(xs) < 2:
        return f"<h2>{html.escape(title)}</h2><p>not enough data</p>"
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    for _, y, _ in marks:
        y0, y1 = min(y0, y), max(y1, y)
    px = _scale(xs, x0, x1, W, False)
    py = _scale(ys, y0, y1, H, True)
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py, strict=True))
    parts = [f'<polyline fill="none" stroke="{colour}" stroke-width="1.2" points="{points}"/>']
    if marks:
        mx = _scale([m[0] for m in marks], x0, x1, W, False)
        my = _scale([m[1] for m in marks], y0, y1, H, True)
        for a, b, (_, _, side) in zip(mx, my, marks, strict=True):
            if side == "BUY":
                parts.append(f'<path d="M{a:.1f},{b + 2:.1f} l-4,7 h8 z" fill="#1a7f37"/>')
            else:
                parts.append(f'<path d="M{a:.1f},{b - 2:.1f} l-4,-7 h8 z" fill="#cf222e"/>')
    labels = (f'<text x="4" y="{PAD - 8}">{html.escape(rupees(int(y1)))}</text>'
              f'<text x="4" y="{H - PAD + 16}">{html.escape(rupees(int(y0)))}</text>'
              f'<text x="{PAD}" y="{H - 6}">{_ist(x0)}</text>'
              f'<text x="{W - 190}" y="{H - 6}">{_ist(x1)}</text>')
    return (f'<h2>{html.escape(title)}</h2><svg viewBox="0 0 {W} {H}" width="100%" '
            f'role="img" aria-label="{html.escape(title)}">'
            f'<rect width="{W}" height="{H}" fill="#fff" stroke="#ddd"/>{"".join(parts)}'
            f"{labels}</svg>")


def _downsample(xs: np.ndarray, ys: np.ndarray) -> tuple[list[int], list[int]]:
    step = max(1, -(-len(xs) // MAX_POINTS))
    idx = np.arange(0, len(xs), step)
    if len(xs) and idx[-1] != len(xs) - 1:
        idx = np.append(idx, len(xs) - 1)
    return xs[idx].tolist(), ys[idx].tolist()


def _cell(value: object) -> str:
    """A summary value as HTML: a mapping (rejections by reason, their messages, each
    strategy's figures) one ``key: value`` line each."""
    if isinstance(value, dict):
        return "<br>".join(html.escape(f"{k}: {_line(v)}") for k, v in value.items())
    return html.escape("n/a" if value is None else str(value))


def _line(value: object) -> str:
    if isinstance(value, dict):  # a strategy's figures
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def _positions(result: BacktestResult) -> str:
    """Each position's figures at the end: what made (or lost) the money, where."""
    if not result.positions:
        return ""
    head = ("<tr><th>strategy</th><th>instrument</th><th>product</th><th>qty</th>"
            "<th>avg price ₹</th><th>realized ₹</th><th>unrealized ₹</th><th>charges ₹</th>"
            "<th>fills</th></tr>")
    rows = "".join(
        f"<tr><td>{html.escape(str(p['strategy_id']))}</td>"
        f"<td>{html.escape(symbol_of(int(p['instrument_token'])) or str(p['instrument_token']))}"
        f"</td><td>{p['product']}</td><td>{p['quantity']}</td><td>{p['average_price']}</td>"
        f"<td>{p['realized']}</td><td>{p['unrealized']}</td><td>{p['charges']}</td>"
        f"<td>{p['fills']}</td></tr>"
        for p in result.positions)
    return f"<h2>Positions</h2><table>{head}{rows}</table>"


def render_html(result: BacktestResult, ticks: TickColumns, title: str = "Backtest") -> str:
    """The report page for ``result`` of a run over ``ticks``."""
    s = result.to_dict(timings=False)
    ts = [t for t, _, _ in result.equity]
    eq = [e for _, e, _ in result.equity]
    # from the initial equity, as max_drawdown: a fall before the first sample is one too
    initial = s.get("initial_equity")
    peak, dd = (None if initial is None else to_paise(initial)), []
    for e in eq:
        peak = e if peak is None or e > peak else peak
        dd.append(e - peak)
    traded = Counter(f.instrument_token for f in result.fills).most_common()
    sections = [_chart("Equity (₹)", ts, eq, "#0969da"), _chart("Drawdown (₹)", ts, dd, "#cf222e"),
                _positions(result)]
    for token, fills in traded[:MAX_CHARTS]:
        mask = ticks.instrument_token == token
        xs, ys = _downsample(ticks.ts[mask], ticks.last_price[mask])
        marks = [(f.ts, f.price, f.side.value) for f in result.fills
                 if f.instrument_token == token][:MAX_TRADES]
        name = symbol_of(token) or str(token)
        sections.append(_chart(f"Trades on {name} ({token}): {fills} fills", xs, ys, "#57606a",
                               marks))
    if len(traded) > MAX_CHARTS:
        sections.append(f"<p>charted: the {MAX_CHARTS} most traded of {len(traded)} "
                        "instruments</p>")
    rows = "".join(
        f"<tr><td>{_ist(f.ts)}</td><td>{html.escape(f.strategy_id)}</td>"
        f"<td>{html.escape(symbol_of(f.instrument_token) or str(f.instrument_token))}</td>"
        f'<td class="{f.side.value.lower()}">{f.side.value}</td><td>{f.quantity}</td>'
        f"<td>{rupees(f.price)}</td><td>{rupees(f.charges.total)}</td></tr>"
        for f in result.fills[:MAX_TRADES]
    )
    more = (f"<p>showing the first {MAX_TRADES} of {len(result.fills)} fills</p>"
            if len(result.fills) > MAX_TRADES else "")
    summary = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{_cell(v)}</td>"
        f'<td class="what">{html.escape(FIGURES.get(k, ""))}</td></tr>'
        for k, v in s.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#1f2328;max-width:960px}}
table{{border-collapse:collapse;margin:8px 0}}td,th{{border:1px solid #d0d7de;padding:3px 8px;
text-align:right}}th{{text-align:left;background:#f6f8fa}}.buy{{color:#1a7f37}}.sell{{color:#cf222e}}
svg text{{font:11px monospace;fill:#57606a}}td.what{{text-align:left;color:#57606a}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{summary}</table>
{"".join(sections)}
<h2>Trades</h2>{more}
<table><tr><th>time (IST)</th><th>strategy</th><th>instrument</th><th>side</th><th>qty</th>
<th>price ₹</th><th>charges ₹</th></tr>{rows}</table>
</body></html>
"""
