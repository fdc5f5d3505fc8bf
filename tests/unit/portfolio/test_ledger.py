"""The position ledger equals an independent recomputation to the paisa, for any fills."""

from __future__ import annotations

from fractions import Fraction

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from alpha_panda.domain.events import Charges, OrderFilled, derive_id
from alpha_panda.domain.values import Product, Side
from alpha_panda.portfolio import PositionLedger

TOKENS = (738561, 341249)


def fill(n: int, side: Side, qty: int, price: int, *, strategy: str = "s1", token: int = TOKENS[0],
         charges: int = 0, ts: int = 0) -> OrderFilled:
    order_id = derive_id(f"sig-{n}", "order")
    return OrderFilled(
        order_id=order_id, fill_id=derive_id(order_id, "fill", 0), strategy_id=strategy,
        instrument_token=token, side=side, quantity=qty, price=price, cumulative_quantity=qty,
        leaves_quantity=0, average_price=price, charges=Charges(brokerage=charges), ts=ts or n,
    )


def test_long_round_trip_realizes_the_price_difference() -> None:
    ledger = PositionLedger(initial_cash=1_000_000_00)
    ledger.apply_fill(fill(1, Side.BUY, 10, 100_00))
    ledger.apply_fill(fill(2, Side.BUY, 10, 110_00))
    pos = ledger.position("s1", TOKENS[0])
    assert (pos.quantity, pos.cost_basis, pos.average_price) == (20, 2100_00, 105_00)
    ledger.mark(TOKENS[0], 120_00)
    assert pos.unrealized == 300_00
    ledger.apply_fill(fill(3, Side.SELL, 5, 120_00))
    assert pos.realized == 75_00  # 5 × (120 − 105)
    assert (pos.quantity, pos.average_price, pos.unrealized) == (15, 105_00, 225_00)
    snap = ledger.snapshot("s1")
    assert (snap.realized, snap.unrealized, snap.open_positions, snap.fills) == (75_00, 225_00, 1, 3)
    assert snap.gross_exposure == 15 * 120_00
    assert ledger.cash() == 1_000_000_00 - 2100_00 + 600_00


def test_mis_and_cnc_in_one_instrument_are_two_positions() -> None:
    ledger = PositionLedger(initial_cash=1_000_000_00)
    mis = Product.MIS
    ledger.apply_fill(fill(1, Side.BUY, 10, 100_00))  # delivery
    ledger.apply_fill(msgspec.structs.replace(fill(2, Side.BUY, 5, 110_00), product=mis))
    ledger.apply_fill(msgspec.structs.replace(fill(3, Side.SELL, 5, 112_00), product=mis))
    cnc, intraday = ledger.position("s1", TOKENS[0]), ledger.position("s1", TOKENS[0], mis)
    # the intraday round trip realizes 5 × (112 − 110); merged, it would have sold at the
    # average of both (103.33) and realized ₹43.35, leaving the holding at 106.67
    assert (intraday.quantity, intraday.realized, intraday.product) == (0, 10_00, mis)
    assert (cnc.quantity, cnc.average_price, cnc.realized) == (10, 100_00, 0)
    ledger.mark(TOKENS[0], 120_00)
    assert (cnc.unrealized, intraday.unrealized) == (200_00, 0)
    assert [(p.product, p.quantity) for p in ledger.positions()] == [(Product.CNC, 10), (mis, 0)]
    snap = ledger.snapshot("s1")
    assert (snap.realized, snap.unrealized, snap.open_positions, snap.fills) == (10_00, 200_00, 1, 3)
    assert ledger.last_price("s1", TOKENS[0]) == 120_00 and ledger.last_price("s2", TOKENS[0]) is None


def test_short_positions_and_crossing_through_zero() -> None:
    ledger = PositionLedger()
    ledger.apply_fill(fill(1, Side.SELL, 10, 200_00))
    pos = ledger.position("s1", TOKENS[0])
    assert (pos.quantity, pos.average_price) == (-10, 200_00)
    ledger.apply_fill(fill(2, Side.BUY, 15, 190_00))  # cover 10 (+₹100), go long 5 @ 190
    assert pos.realized == 100_00
    assert (pos.quantity, pos.average_price, pos.cost_basis) == (5, 190_00, 950_00)


def test_average_cost_rounding_is_released_exactly_when_flat() -> None:
    ledger = PositionLedger()
    ledger.apply_fill(fill(1, Side.BUY, 1, 100_00))
    ledger.apply_fill(fill(2, Side.BUY, 2, 100_05))  # average 100.0333…
    ledger.apply_fill(fill(3, Side.SELL, 1, 101_00))  # basis released 100.03 (rounded)
    pos = ledger.position("s1", TOKENS[0])
    assert pos.realized == 97
    ledger.apply_fill(fill(4, Side.SELL, 2, 101_00))
    assert pos.quantity == 0 and pos.cost_basis == 0
    assert pos.realized == 3 * 101_00 - (100_00 + 2 * 100_05)  # exactly the cash flows


def test_a_redelivered_fill_is_booked_once() -> None:
    ledger = PositionLedger()
    f = fill(1, Side.BUY, 10, 100_00, charges=20_00)
    ledger.apply_fill(f)
    ledger.apply_fill(f)
    assert ledger.position("s1", TOKENS[0]).quantity == 10
    assert ledger.snapshot(None).charges == 20_00


def test_cash_and_equity_per_strategy_and_account() -> None:
    ledger = PositionLedger(initial_cash=100_000_00, strategy_cash={"s1": 50_000_00})
    ledger.apply_fill(fill(1, Side.BUY, 10, 100_00, charges=5_00, ts=11))
    ledger.apply_fill(fill(2, Side.SELL, 4, 50_00, strategy="s2", token=TOKENS[1], ts=12))
    assert ledger.cash("s1") == 50_000_00 - 1000_00 - 5_00
    assert ledger.cash("s2") == 200_00
    assert ledger.cash() == 100_000_00 - 1000_00 - 5_00 + 200_00
    ledger.mark(TOKENS[0], 110_00)
    assert ledger.equity("s1") == ledger.cash("s1") + 1100_00
    assert ledger.equity() == ledger.cash() + 1100_00 - 200_00
    assert [ts for ts, _ in ledger.equity_curve()] == [11, 12]
    assert ledger.summary("s1")["net_pnl"] == 100_00 - 5_00


fills_strategy = st.lists(
    st.tuples(
        st.sampled_from(("s1", "s2")), st.sampled_from(TOKENS), st.sampled_from(list(Side)),
        st.integers(1, 500), st.integers(1, 40_000).map(lambda p: p * 5), st.integers(0, 3000),
    ),
    max_size=60,
)


def _reference(events: list[tuple[str, int, Side, int, int, int]], marks: dict[int, int]) -> dict[str, int]:
    """Weighted average cost with exact fractions; the closed basis rounded half away from 0."""
    qty: dict[tuple[str, int], int] = {}
    basis: dict[tuple[str, int], Fraction] = {}
    realized = 0
    charges = 0
    flow = 0
    for sid, token, side, q, price, fee in events:
        key = (sid, token)
        cur, b = qty.get(key, 0), basis.get(key, Fraction(0))
        signed = q if side is Side.BUY else -q
        flow += -signed * price - fee
        charges += fee
        if cur and (cur > 0) != (signed > 0):
            closed = min(q, abs(cur))
            exact = b * closed / abs(cur)
            released = int(abs(exact) + Fraction(1, 2)) * (1 if exact >= 0 else -1)
            realized += (closed if cur > 0 else -closed) * price - released
            b -= released
            cur += -closed if cur > 0 else closed
            signed += closed if signed < 0 else -closed
        cur += signed
        b += signed * price
        qty[key], basis[key] = cur, b
    unrealized = sum(qty[k] * marks[k[1]] - int(basis[k]) for k in qty if qty[k])
    return {"realized": realized, "unrealized": unrealized, "charges": charges, "flow": flow}


@settings(max_examples=200, deadline=None)
@given(fills_strategy, st.integers(1, 40_000).map(lambda p: p * 5))
def test_ledger_equals_an_independent_recomputation(events: list[tuple[str, int, Side, int, int, int]], mark: int) -> None:
    ledger = PositionLedger(initial_cash=0)
    for n, (sid, token, side, q, price, fee) in enumerate(events):
        ledger.apply_fill(fill(n, side, q, price, strategy=sid, token=token, charges=fee))
    marks = {t: mark + i * 5 for i, t in enumerate(TOKENS)}
    for token, price in marks.items():
        ledger.mark(token, price)
    ref = _reference(events, marks)
    snap = ledger.snapshot(None)
    assert (snap.realized, snap.unrealized, snap.charges) == (ref["realized"], ref["unrealized"], ref["charges"])
    assert snap.cash == ref["flow"]
    # realized + unrealized is exact whatever the rounding: cash flows plus the marked value
    held = sum(p.quantity * marks[p.instrument_token] for p in ledger.positions())
    assert snap.realized + snap.unrealized - snap.charges == ref["flow"] + held


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.integers(1, 40_000).map(lambda p: p * 5)), min_size=1, max_size=20),
       st.sampled_from(list(Side)))
def test_buy_then_sell_at_the_same_price_without_costs_is_zero_pnl(lots: list[tuple[int, int]], first: Side) -> None:
    ledger = PositionLedger()
    n = 0
    for q, price in lots:
        ledger.apply_fill(fill(n, first, q, price))
        ledger.apply_fill(fill(n + 1, first.opposite, q, price))
        n += 2
    snap = ledger.snapshot(None)
    assert (snap.realized, snap.unrealized, snap.charges, snap.open_positions) == (0, 0, 0, 0)
    assert snap.cash == ledger.initial_cash


def test_record_equity_adds_a_marked_point() -> None:
    ledger = PositionLedger(initial_cash=1000_00)
    ledger.apply_fill(fill(1, Side.BUY, 2, 100_00, ts=5))
    ledger.mark(TOKENS[0], 150_00)
    assert ledger.record_equity(9) == (9, 1000_00 + 100_00)
    assert ledger.equity_curve() == [(5, 1000_00), (9, 1100_00)]


def test_the_dp_charge_is_in_the_charges_cash_and_net_pnl() -> None:
    # Zerodha's DP charge (₹15.93 with GST) rides on a CNC sell from holdings
    ledger = PositionLedger(initial_cash=100_000_00)
    ledger.apply_fill(fill(1, Side.BUY, 10, 1000_00))
    sell = fill(2, Side.SELL, 10, 1000_00)
    ledger.apply_fill(msgspec.structs.replace(sell, charges=Charges(stt=10_00, dp=15_93)))
    pos = ledger.position("s1", TOKENS[0])
    assert pos.charges == 25_93 and pos.net_pnl == -25_93
    snap = ledger.snapshot()
    assert snap.charges == 25_93
    assert ledger.cash() == 100_000_00 - 25_93
    assert ledger.summary()["net_pnl"] == -25_93


@settings(max_examples=200, deadline=None)
@given(fills_strategy, st.lists(st.tuples(st.sampled_from(TOKENS),
                                          st.integers(1, 40_000).map(lambda p: p * 5))))
def test_a_snapshot_sums_its_positions_figures(
        events: list[tuple[str, int, Side, int, int, int]], marks: list[tuple[int, int]]) -> None:
    """Each snapshot, of a strategy or the account, is the sum of its positions' own
    figures (``Position``'s properties, which the snapshot's one pass inlines), whether or
    not a tick marked them since their last fill."""
    ledger = PositionLedger(initial_cash=1_000_000_00)
    for n, (sid, token, side, q, price, fee) in enumerate(events):
        ledger.apply_fill(fill(n, side, q, price, strategy=sid, token=token, charges=fee))
    for token, price in marks:
        ledger.mark(token, price)
    for sid in ("s1", "s2", None):
        mine = [p for p in ledger.positions() if sid is None or p.strategy_id == sid]
        held = [p for p in mine if p.quantity]
        snap = ledger.snapshot(sid)
        assert (snap.realized, snap.unrealized, snap.charges, snap.fills,
                snap.gross_exposure, snap.open_positions) == (
            sum(p.realized for p in mine), sum(p.unrealized for p in held),
            sum(p.charges for p in mine), sum(p.fills for p in mine),
            sum(p.exposure for p in held), len(held))
        if sid is not None:
            assert snap.equity == ledger.cash(sid) + sum(p.quantity * p.mark_price for p in held)
