"""Each service's ``handle_batch`` leaves the state and outputs of ``handle`` event by event."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from alpha_panda.domain.events import (
    Envelope,
    KillSwitchSet,
    MarketTick,
    OrderFilled,
    Payload,
    Signal,
    new_envelope,
)
from alpha_panda.domain.values import Side
from alpha_panda.portfolio import PositionLedger
from alpha_panda.risk import RiskConfig, RiskEngine, RiskLimits
from alpha_panda.services.portfolio import PortfolioHandler
from alpha_panda.services.risk_manager import RiskHandler, limits_read_marks
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import Record

REC = Record("t", 0, 0, None, b"")
S = 1_000_000_000


def _events(seed: int) -> list[Envelope[Payload]]:
    """Ticks of 3 instruments (30 s apart at times) and fills of 2 strategies, interleaved."""
    rng = random.Random(seed)
    out: list[Envelope[Payload]] = []
    ts = 0
    prices = {7: 10_000, 8: 20_000, 9: 5_000}
    n_fill = 0
    for n in range(400):
        ts += rng.choice((S // 10, S, 30 * S))
        if rng.random() < 0.1:
            token = rng.choice((7, 8))
            side = rng.choice((Side.BUY, Side.SELL))
            n_fill += 1
            fill = OrderFilled(order_id=f"o{n_fill}", fill_id=f"f{n_fill}",
                               strategy_id=rng.choice(("a", "b")), instrument_token=token,
                               side=side, quantity=rng.randint(1, 5), price=prices[token],
                               cumulative_quantity=1, leaves_quantity=0,
                               average_price=prices[token], ts=ts)
            out.append(new_envelope(fill, id=f"fill{n}", ts=ts, source="t", key="k",
                                    broker="paper"))
        else:
            token = rng.choice((7, 8, 9))
            prices[token] += rng.choice((-5, 0, 5))
            tick = MarketTick(instrument_token=token, last_price=prices[token], ts=ts)
            out.append(new_envelope(tick, id=f"tick{n}", ts=ts, source="t", key=str(token)))
    return out


def _portfolio() -> PortfolioHandler:
    return PortfolioHandler("paper", PositionLedger(1_000_000_00), snapshot_interval_ns=60 * S)


def _ids(emits: Sequence[Emit]) -> list[tuple[str, Any]]:
    return [(e.envelope.id, e.envelope.data) for e in emits]


def test_portfolio_batches_give_the_same_ledger_snapshots_and_outputs() -> None:
    for seed in range(5):
        events = _events(seed)
        one = _portfolio()
        expected = [x for e in events for x in _ids(one.handle(e, REC))]
        assert len(expected) > 10  # fills and periodic snapshots both happen
        rng = random.Random(seed)
        bulk = _portfolio()
        got: list[tuple[str, Any]] = []
        i = 0
        while i < len(events):
            size = rng.randint(1, 60)
            chunk = events[i:i + size]
            for _k, emits in bulk.handle_batch(chunk, [REC] * len(chunk)):
                got += _ids(emits)
            i += size
        assert got == expected
        assert bulk.snapshot(None) == one.snapshot(None)
        assert bulk.ledger.equity() == one.ledger.equity()
        assert bulk.as_of == one.as_of


def _risk_events(seed: int) -> list[Envelope[Payload]]:
    """Ticks, signals (some without a price hint), their fills, then a flattening kill switch."""
    rng = random.Random(seed)
    out: list[Envelope[Payload]] = []
    prices = {7: 10_000, 8: 20_000}
    ts = 0
    for n in range(300):
        ts += S
        token = rng.choice((7, 8))
        r = rng.random()
        if r < 0.1:
            sig = Signal(strategy_id="a", instrument_token=token, side=rng.choice(list(Side)),
                         quantity=rng.randint(1, 3),
                         price_hint=None if rng.random() < 0.5 else prices[token])
            out.append(new_envelope(sig, id=f"sig{n}", ts=ts, source="t", key="k",
                                    broker="paper"))
        elif r < 0.15:
            fill = OrderFilled(order_id=f"o{n}", fill_id=f"f{n}", strategy_id="a",
                               instrument_token=token, side=rng.choice(list(Side)), quantity=2,
                               price=prices[token], cumulative_quantity=2, leaves_quantity=0,
                               average_price=prices[token], ts=ts)
            out.append(new_envelope(fill, id=f"fill{n}", ts=ts, source="t", key="k",
                                    broker="paper"))
        else:
            prices[token] += rng.choice((-500, 0, 500))
            tick = MarketTick(instrument_token=token, last_price=prices[token], ts=ts)
            out.append(new_envelope(tick, id=f"tick{n}", ts=ts, source="t", key=str(token)))
    out.append(new_envelope(KillSwitchSet(active=True, flatten=True), id="kill", ts=ts + S,
                            source="t", key="paper", broker="paper"))
    return out


def test_risk_batches_without_mark_limits_decide_and_flatten_as_tick_by_tick() -> None:
    config = RiskConfig(strategies={"a": RiskLimits.from_mapping(
        {"max_order_notional": 45_000, "max_position": 6}, "test")})
    assert not limits_read_marks(config, "paper")
    assert limits_read_marks(config, "zerodha")
    for seed in range(5):
        events = _risk_events(seed)
        one = RiskHandler("paper", RiskEngine(config, broker="paper"))
        expected = [x for e in events for x in _ids(one.handle(e, REC))]
        bulk = RiskHandler("paper", RiskEngine(config, broker="paper"), every_tick=False)
        rng = random.Random(seed)
        got: list[tuple[str, Any]] = []
        i = 0
        while i < len(events):
            size = rng.randint(1, 40)
            chunk = events[i:i + size]
            for _k, emits in bulk.handle_batch(chunk, [REC] * len(chunk)):
                got += _ids(emits)
            i += size
        assert got == expected
        assert any(x[0].startswith("sig") is False for x in got)  # flatten orders came out
        assert bulk.validated == one.validated and bulk.rejected == one.rejected > 0


def test_flatten_orders_go_in_at_the_markets_time_not_the_requests_wall_clock() -> None:
    """A simulated market runs days ahead of the wall clock once it has gone through a
    session (or behind it, from 09:15 whatever the hour): the operator's request carries the
    wall clock, and flatten orders stamped with it were stale (rejected, with a latency) or
    waited hours of market time for a tick to fill."""
    market = 1_797_000_000 * S  # the simulated market's time: days past the request's
    wall = market - 3 * 24 * 3600 * S
    risk = RiskHandler("paper", RiskEngine(RiskConfig(), broker="paper"))
    tick = MarketTick(instrument_token=7, last_price=10_000, ts=market)
    fill = OrderFilled(order_id="o1", fill_id="f1", strategy_id="a", instrument_token=7,
                       side=Side.BUY, quantity=3, price=10_000, cumulative_quantity=3,
                       leaves_quantity=0, average_price=10_000, ts=market)
    risk.handle(new_envelope(tick, id="t1", ts=market, source="sim", key="7"), REC)
    risk.handle(new_envelope(fill, id="f1", ts=market, source="t", key="k", broker="paper"), REC)
    kill = new_envelope(KillSwitchSet(active=True, flatten=True), id="kill", ts=wall,
                        source="api", key="kill_switch", broker="paper")
    emits = risk.handle(kill, REC)
    assert [(e.envelope.data.side, e.envelope.data.quantity) for e in emits] == [(Side.SELL, 3)]
    assert [e.envelope.ts for e in emits] == [market]
    # no tick seen yet (a fresh start): the request's own time
    fresh = RiskHandler("paper", RiskEngine(RiskConfig(), broker="paper"))
    fresh.handle(new_envelope(fill, id="f1", ts=market, source="t", key="k", broker="paper"), REC)
    assert [e.envelope.ts for e in fresh.handle(kill, REC)] == [wall]


def test_only_the_risk_managers_own_flatten_orders_pass_the_kill_switch() -> None:
    # A strategy may call its exit "flatten": it is still a strategy's order, and was
    # validated (and placed) while the switch was on.
    risk = RiskHandler("paper", RiskEngine(RiskConfig(), broker="paper"))
    fill = OrderFilled(order_id="o1", fill_id="f1", strategy_id="a", instrument_token=7,
                       side=Side.BUY, quantity=3, price=10_000, cumulative_quantity=3,
                       leaves_quantity=0, average_price=10_000, ts=1)
    risk.handle(new_envelope(fill, id="f1", ts=1, source="t", key="k", broker="paper"), REC)
    kill = new_envelope(KillSwitchSet(active=True, flatten=True), id="kill", ts=2,
                        source="api", key="kill_switch", broker="paper")
    (own,) = risk.handle(kill, REC)
    exit_ = Signal(strategy_id="a", instrument_token=7, side=Side.SELL, quantity=3,
                   reason="flatten:kill_switch")
    mine = risk.handle(new_envelope(exit_, id="s1", ts=3, source="strategy-runner", key="k",
                                    broker="paper"), REC)
    assert [(e.topic, e.envelope.data.reason_code) for e in mine] == [
        ("paper.signals.rejected", "KILL_SWITCH")]
    (passed,) = risk.handle(own.envelope, REC)
    assert passed.topic == "paper.signals.validated" and passed.envelope.data.flatten
