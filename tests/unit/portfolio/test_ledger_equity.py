"""The account equity the ledger keeps incrementally equals a full recomputation, always."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from alpha_panda.domain.events import Charges, OrderFilled, derive_id
from alpha_panda.domain.values import Side
from alpha_panda.portfolio import PositionLedger

TOKENS = (738561, 341249, 2953217)

# each step is a fill (strategy, token, side, quantity, price, charges) or a mark (token, price)
steps = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(("s1", "s2")), st.sampled_from(TOKENS), st.sampled_from(list(Side)),
            st.integers(1, 50), st.integers(1, 4_000).map(lambda p: p * 5), st.integers(0, 500),
        ),
        st.tuples(st.sampled_from(TOKENS), st.integers(1, 4_000).map(lambda p: p * 5)),
    ),
    max_size=80,
)


def _fill(n: int, sid: str, token: int, side: Side, qty: int, price: int, fee: int) -> OrderFilled:
    order_id = derive_id(f"sig-{n}", "order")
    return OrderFilled(
        order_id=order_id, fill_id=derive_id(order_id, "fill", 0), strategy_id=sid,
        instrument_token=token, side=side, quantity=qty, price=price, cumulative_quantity=qty,
        leaves_quantity=0, average_price=price, charges=Charges(brokerage=fee), ts=n + 1,
    )


def _recomputed(ledger: PositionLedger) -> int:
    held = sum(p.quantity * p.mark_price for p in ledger.positions(open_only=True))
    return ledger.initial_cash + sum(ledger.cash(s) for s in ledger.strategies()) + held


@settings(max_examples=200, deadline=None)
@given(steps)
def test_equity_after_every_fill_and_mark_equals_a_recomputation(
    events: list[tuple[str, int, Side, int, int, int] | tuple[int, int]],
) -> None:
    ledger = PositionLedger(initial_cash=1_000_000_00)
    expected_curve = []
    for n, event in enumerate(events):
        if len(event) == 2:
            ledger.mark(*event)  # type: ignore[arg-type]
        else:
            ledger.apply_fill(_fill(n, *event))  # type: ignore[arg-type]
            expected_curve.append((n + 1, _recomputed(ledger)))
        assert ledger.equity() == _recomputed(ledger)
        assert ledger.cash() == ledger.initial_cash + sum(ledger.cash(s) for s in ledger.strategies())
    assert ledger.equity_curve() == expected_curve


@settings(max_examples=100, deadline=None)
@given(steps)
def test_a_ledger_without_cash_keeps_the_same_positions_and_pnl(
    events: list[tuple[str, int, Side, int, int, int] | tuple[int, int]],
) -> None:
    full = PositionLedger(initial_cash=1_000_000_00)
    lean = PositionLedger(0, keep_cash=False)
    for n, event in enumerate(events):
        for ledger in (full, lean):
            if len(event) == 2:
                ledger.mark(*event)  # type: ignore[arg-type]
            else:
                ledger.apply_fill(_fill(n, *event))  # type: ignore[arg-type]
    assert full.positions() == lean.positions()
    for scope in (None, "s1", "s2"):
        a, b = full.snapshot(scope), lean.snapshot(scope)
        assert (a.realized, a.unrealized, a.charges, a.gross_exposure, a.open_positions, a.fills) == (
            b.realized, b.unrealized, b.charges, b.gross_exposure, b.open_positions, b.fills)
    assert lean.equity_curve() == []
