"""An immediate market order takes a shorter path through ``submit``: same events, same order."""

from __future__ import annotations

from dataclasses import asdict
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.domain.values import Product, Side, Validity
from alpha_panda.execution.config import ExecutionConfig
from alpha_panda.execution.orders import order_id_for
from alpha_panda.execution.paper import PaperExchange

T0 = 1_704_080_700_000_000_000  # 2024-01-01 09:15 IST

signals = st.lists(
    st.tuples(
        st.sampled_from(list(Side)), st.integers(1, 500), st.integers(1, 40_000).map(lambda p: p * 5),
        st.sampled_from([Product.CNC, Product.NRML]), st.sampled_from(list(Validity)),
        st.integers(0, 10**13),
    ),
    min_size=1, max_size=20,
)


@settings(max_examples=60, deadline=None)
@given(signals, st.booleans(), st.sampled_from([0, 3, Decimal("2.5")]), st.integers(0, 4))
def test_the_shortcut_equals_the_general_path(
    sigs: list[tuple[Side, int, int, Product, Validity, int]], costs: bool, bps: int | Decimal,
    jitter: int,
) -> None:
    config = ExecutionConfig(costs=costs, slippage_bps=bps, slippage_jitter_bps=jitter)
    fast, general = PaperExchange(config, seed=3), PaperExchange(config, seed=3)
    general._immediate = False  # every order through the general path
    for ex in (fast, general):
        ex.on_tick(MarketTick(instrument_token=5, last_price=100_00, ts=T0))
    for n, (side, qty, hint, product, validity, dt) in enumerate(sigs):
        signal = Signal(strategy_id="s", instrument_token=5, side=side, quantity=qty,
                        product=product, validity=validity, price_hint=hint)
        signal_id = f"sig-{n}"
        assert fast.submit(signal_id, signal, T0 + dt) == general.submit(signal_id, signal, T0 + dt)
        order_id = order_id_for(signal_id)
        a, b = fast.order(order_id), general.order(order_id)
        assert a is not None and b is not None and asdict(a) == asdict(b)
    assert fast.open_orders() == general.open_orders() == []
