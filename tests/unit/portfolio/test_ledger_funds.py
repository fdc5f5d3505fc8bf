"""A live account's cash is the broker's: unknown until reported, then the reported figure
(as of the start of its IST day) plus the fills of that day on, whatever the order they
are applied in (a rebuild reads the control topic before the fills)."""

from __future__ import annotations

import itertools
from datetime import date, time

from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import OrderFilled
from alpha_panda.domain.values import Side
from alpha_panda.portfolio import PositionLedger

D1, D2 = date(2025, 11, 24), date(2025, 11, 25)


def fill(n: int, side: Side, qty: int, price: int, ts: int) -> OrderFilled:
    return OrderFilled(order_id=f"o{n}", fill_id=f"f{n}", strategy_id="live", instrument_token=7,
                       side=side, quantity=qty, price=price, cumulative_quantity=qty,
                       leaves_quantity=0, average_price=price, ts=ts)


YESTERDAY = fill(1, Side.BUY, 10, 100_00, ist_ns(D1, time(10)))     # −₹1,000, settled into D2's cash
TODAY = fill(2, Side.BUY, 5, 200_00, ist_ns(D2, time(9, 30)))       # −₹1,000, before the report
LATER = fill(3, Side.SELL, 5, 210_00, ist_ns(D2, time(11)))         # +₹1,050
REPORT_AT = ist_ns(D2, time(10))
KITE_CASH = 4_99_000_00  # D2's start: D1's buy already debited


def test_cash_and_equity_are_unknown_until_the_broker_reports_them() -> None:
    ledger = PositionLedger(0, broker="zerodha", strategy_cash={"live": 0}, broker_funds=True)
    ledger.apply_fill(TODAY)
    account, strategy = ledger.snapshot(None), ledger.snapshot("live")
    assert account.cash is None and account.equity is None and not ledger.cash_known
    assert (account.realized, account.fills, account.gross_exposure) == (0, 1, 1_000_00)
    assert strategy.cash is None and strategy.equity is None
    assert ledger.strategies() == ["live"]


def test_reported_cash_plus_the_fills_of_its_day_in_any_order() -> None:
    expected = KITE_CASH - 1_000_00 + 1_050_00  # today's two fills on top, not yesterday's
    events = [("fill", YESTERDAY), ("fill", TODAY), ("fill", LATER), ("funds", None)]
    for order in itertools.permutations(events):
        ledger = PositionLedger(0, broker="zerodha", broker_funds=True)
        for kind, f in order:
            if kind == "funds":
                assert ledger.report_funds(KITE_CASH, REPORT_AT)
            else:
                assert f is not None
                ledger.apply_fill(f)
        assert ledger.cash() == expected, order
        ledger.mark(7, 210_00)
        snap = ledger.snapshot(None)
        assert snap.cash == expected and snap.equity == expected + 10 * 210_00  # 10 held, marked
        assert ledger.snapshot("live").cash is None


def test_an_older_report_does_not_replace_a_newer_one() -> None:
    ledger = PositionLedger(0, broker="zerodha", broker_funds=True)
    assert ledger.report_funds(KITE_CASH, REPORT_AT)
    assert not ledger.report_funds(1_00, REPORT_AT - 1)
    assert ledger.cash() == KITE_CASH and ledger.funds_reported_at == REPORT_AT


def test_a_paper_ledger_keeps_its_own_cash() -> None:
    ledger = PositionLedger(10_00_000_00, strategy_cash={"live": 10_00_000_00})
    assert not ledger.report_funds(1_00, REPORT_AT)
    ledger.apply_fill(TODAY)
    assert ledger.snapshot(None).cash == 10_00_000_00 - 1_000_00
    assert ledger.snapshot("live").cash == 10_00_000_00 - 1_000_00
