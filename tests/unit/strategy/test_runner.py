from __future__ import annotations

import random
from datetime import date, time
from typing import ClassVar

import msgspec

from alpha_panda.domain.clock import ist_ns
from alpha_panda.domain.events import (
    Charges,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderSubmitted,
    Signal,
)
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.strategy.base import (
    Bar,
    CancelOrder,
    Context,
    Strategy,
    StrategyParams,
    _Book,
    _Clock,
)
from alpha_panda.strategy.config import StrategyConfig, config_from_mapping
from alpha_panda.strategy.runner import DEFAULT_STRATEGY_CASH, StrategyRunner, signal_ids


class Boom(Strategy):
    """Raises on its third tick."""

    def setup(self) -> None:
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.n += 1
        if self.n == 3:
            raise RuntimeError("kaboom")
        return None


class EveryTick(Strategy):
    """Buys one on every tick; remembers what it saw, per instance."""

    warmup = 2

    def setup(self) -> None:
        self.seen: list[int] = []

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.seen.append(tick.last_price)
        return [ctx.buy(1)]


class Liar(Strategy):
    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        return [ctx.buy(1, instrument_token=999)]


class Bare(Strategy):
    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        return ctx.buy(1)  # type: ignore[return-value]  # forgot the list


class BarCounter(Strategy):
    bar_seconds: ClassVar[int] = 1

    def setup(self) -> None:
        self.bars: list[Bar] = []

    def on_bar(self, bar: Bar, ctx: Context) -> list[Signal] | None:
        self.bars.append(bar)
        return None


def cfg(sid: str, cls: type[Strategy] | str, tokens: list[int], **params: int) -> StrategyConfig:
    name = cls if isinstance(cls, str) else f"{__name__}:{cls.__name__}"
    return config_from_mapping({"id": sid, "strategy": name, "instruments": tokens, "params": params})


def tick(token: int, price: int, ts: int = 0) -> MarketTick:
    return MarketTick(instrument_token=token, last_price=price, ts=ts)


def test_ticks_reach_only_the_strategies_of_that_instrument_with_state_per_instrument() -> None:
    runner = StrategyRunner([cfg("e", EveryTick, [1, 2])])
    for i in range(4):
        runner.on_tick(tick(1, 100 + i))
    runner.on_tick(tick(2, 500))
    runner.on_tick(tick(3, 700))  # nobody trades 3
    slots = runner._slots["e"]
    assert [s.strategy.seen for s in slots] == [[100, 101, 102, 103], [500]]


def test_signals_before_warmup_are_dropped_then_fill_in_id_and_price_hint() -> None:
    runner = StrategyRunner([cfg("e", EveryTick, [1])])
    out = [runner.on_tick(tick(1, p)) for p in (100, 105, 110)]
    assert out[0] == [] and out[1] == []
    [sig] = out[2]
    assert (sig.strategy_id, sig.instrument_token, sig.side, sig.quantity) == ("e", 1, Side.BUY, 1)
    assert sig.price_hint == 110
    assert runner.position("e", 1) == 1
    assert runner.statuses()[0].dropped_in_warmup == 2


def test_a_strategy_that_raises_is_taken_out_and_the_others_go_on() -> None:
    runner = StrategyRunner([cfg("boom", Boom, [1]), cfg("e", EveryTick, [1])])
    emitted = [len(runner.on_tick(tick(1, 100))) for _ in range(6)]
    assert emitted == [0, 0, 1, 1, 1, 1]
    boom, ok = runner.statuses()
    assert boom.state == "FAILED" and "kaboom" in (boom.error or "")
    assert "RuntimeError" in (boom.traceback or "")
    assert ok.state == "ACTIVE" and ok.signals == 4
    assert runner.failures == 1


class ZeroBars(Strategy):
    """Bars of its ``bar_seconds`` parameter, which its ``Params`` lets be 0."""

    class Params(StrategyParams):
        bar_seconds: int = 60

    def on_bar(self, bar: Bar, ctx: Context) -> list[Signal] | None:
        return None


def test_a_strategy_whose_bars_cannot_be_built_fails_alone() -> None:
    # bar_seconds: 0 passed its Params (and ``strategy check``); the runner raised building
    # its bars, and no strategy ran: the backtest, and every strategy of a run, stopped.
    runner = StrategyRunner([cfg("bars", ZeroBars, [1], bar_seconds=0), cfg("e", EveryTick, [1])])
    bars, ok = runner.statuses()
    assert (bars.state, bars.error) == ("FAILED", "ValueError: bar interval must be positive")
    assert runner.take_halted() == [("bars", "ValueError: bar interval must be positive")]
    assert [len(runner.on_tick(tick(1, 100))) for _ in range(3)] == [0, 0, 1]
    assert ok.state == "ACTIVE"


def test_a_signal_for_another_instrument_fails_the_strategy() -> None:
    runner = StrategyRunner([cfg("liar", Liar, [1])])
    assert runner.on_tick(tick(1, 100)) == []
    assert runner.statuses()[0].state == "FAILED"
    assert "999" in (runner.statuses()[0].error or "")


def test_returning_a_bare_signal_fails_only_that_strategy() -> None:
    runner = StrategyRunner([cfg("bare", Bare, [1]), cfg("e", EveryTick, [1])])
    out = [runner.on_tick(tick(1, 100)) for _ in range(3)]
    assert [len(o) for o in out] == [0, 0, 1]
    assert "expected a list of Signals" in (runner.statuses()[0].error or "")


class Averager(Strategy):
    """Bids at its average, a float: the mistake of a strategy doing arithmetic on indicators."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        mean = (tick.last_price + 101) / 2
        return [ctx.buy(1, order_type=OrderType.LIMIT, limit_price=mean // 1)]  # type: ignore[arg-type]


class Hinted(Strategy):
    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        return [Signal(strategy_id="h", instrument_token=1, side=Side.BUY, quantity=1,
                       price_hint=tick.last_price * 1.001)]  # type: ignore[arg-type]


class Stringly(Strategy):
    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        return [Signal(strategy_id="s", instrument_token=1, side="BUY",  # type: ignore[arg-type]
                       quantity=1)]


def test_a_signal_of_the_wrong_types_fails_its_strategy_with_a_clear_error() -> None:
    # Signal is not checked when built: a float price went through the backtest and was
    # dead-lettered by the pipeline's risk manager, which the strategy never knew.
    runner = StrategyRunner([cfg("avg", Averager, [1]), cfg("s", Stringly, [1]),
                             cfg("h", Hinted, [1]), cfg("e", EveryTick, [1])])
    out = [runner.on_tick(tick(1, 100)) for _ in range(3)]
    assert [len(o) for o in out] == [0, 0, 1]  # the other strategy goes on
    avg, stringly, hinted, ok = runner.statuses()
    assert hinted.state == "FAILED" and "price_hint 100.1" in (hinted.error or "")
    assert avg.state == "FAILED" and avg.error == (
        "StrategyError: strategy 'avg': emitted a signal with limit_price 100.0 (float): prices "
        "are int paise (an average is a float: round it, e.g. int(x) // t * t)")
    assert stringly.state == "FAILED" and "side 'BUY': expected a Side" in (stringly.error or "")
    assert ok.state == "ACTIVE"


def test_disabled_strategies_get_no_ticks() -> None:
    config = cfg("e", EveryTick, [1]).model_copy(update={"enabled": False})
    runner = StrategyRunner([config])
    assert runner.on_tick(tick(1, 1)) == [] and runner.statuses()[0].state == "DISABLED"


def test_feedback_corrects_the_intended_position_and_moves_cash() -> None:
    runner = StrategyRunner([cfg("e", EveryTick, [1])])
    sigs = [s for p in range(6) for s in runner.on_tick(tick(1, 100 + p))]
    assert runner.position("e", 1) == 4
    runner.on_signal_rejected(sigs[0])
    runner.on_order_rejected("e", 1, Side.BUY, 1)
    runner.on_order_cancelled("e", 1, Side.BUY, 1)
    assert runner.position("e", 1) == 1
    fill = OrderFilled(
        order_id="o", fill_id="f", strategy_id="e", instrument_token=1, side=Side.BUY,
        quantity=1, price=105, cumulative_quantity=1, leaves_quantity=0, average_price=105,
        charges=Charges(brokerage=3),
    )
    runner.on_fill(fill)
    assert runner.cash("e") == DEFAULT_STRATEGY_CASH - 108
    assert runner.position("e", 1) == 1  # the fill was already intended


def test_a_bracket_leg_fill_moves_the_position_and_its_cancel_does_not() -> None:
    runner = StrategyRunner([cfg("e", EveryTick, [1])])
    for p in range(3):
        runner.on_tick(tick(1, p))
    assert runner.position("e", 1) == 1
    leg = OrderSubmitted(
        order_id="sl", signal_id="s", strategy_id="e", instrument_token=1, side=Side.SELL,
        quantity=1, order_type="SL-M", parent_order_id="entry",  # type: ignore[arg-type]
        origin="bracket",
    )
    # the other leg's cancel (one cancels the other) may be read before anything of it
    runner.on_order_cancelled("e", 1, Side.SELL, 1, order_id="tp", origin="bracket")
    runner.on_order_submitted(leg)
    runner.on_fill(OrderFilled(
        order_id="sl", fill_id="f", strategy_id="e", instrument_token=1, side=Side.SELL,
        quantity=1, price=90, cumulative_quantity=1, leaves_quantity=0, average_price=90,
        origin="bracket",
    ))
    ctx = runner._slots["e"][0].ctx
    assert (runner.position("e", 1), ctx.filled(), ctx.pending()) == (0, -1, 1)
    runner.on_order_cancelled("e", 1, Side.BUY, 1, order_id="o")  # a signal's: undoes intent
    assert runner.position("e", 1) == -1


def test_bars_close_on_the_first_tick_of_the_next_interval() -> None:
    runner = StrategyRunner([cfg("b", BarCounter, [1])])
    second = 1_000_000_000
    for ts, price in [(0, 100), (second // 2, 120), (second - 1, 90), (second, 95), (3 * second, 1)]:
        runner.on_tick(tick(1, price, ts))
    bars = runner._slots["b"][0].strategy.bars
    assert [(b.start_ns, b.open, b.high, b.low, b.close, b.ticks) for b in bars] == [
        (0, 100, 120, 90, 90, 3), (second, 95, 95, 95, 95, 1),
    ]


def test_signal_ids_are_deterministic_and_numbered_per_strategy() -> None:
    a = Signal(strategy_id="a", instrument_token=1, side=Side.BUY, quantity=1)
    b = Signal(strategy_id="b", instrument_token=1, side=Side.BUY, quantity=1)
    ids = signal_ids("tick-1", [a, b, a])
    assert len(set(ids)) == 3
    assert ids == signal_ids("tick-1", [a, b, a])
    assert ids[0] == signal_ids("tick-1", [a])[0]
    assert ids != signal_ids("tick-2", [a, b, a])


def test_routing_many_strategies_is_per_instrument() -> None:
    rng = random.Random(1)
    configs = [cfg(f"e{i}", EveryTick, rng.sample(range(1, 51), 3)) for i in range(20)]
    runner = StrategyRunner(configs)
    for token in range(1, 51):
        expected = [c.id for c in configs if token in c.instruments]
        assert [s.sid for s in runner._route.get(token, [])] == expected


def test_signals_take_the_strategy_files_product_unless_they_name_one() -> None:
    intraday = config_from_mapping({"id": "i", "strategy": f"{__name__}:EveryTick",
                                    "instruments": [1], "product": "MIS"})
    runner = StrategyRunner([intraday, cfg("d", EveryTick, [1])])
    for p in (100, 101):
        runner.on_tick(tick(1, p))
    products = {s.strategy_id: s.product for s in runner.on_tick(tick(1, 102))}
    assert products == {"i": Product.MIS, "d": Product.CNC}
    ctx = Context(_Book("n", 0, product=Product.MIS), 1)
    assert (ctx.buy(1).product, ctx.sell(1, product=Product.CNC).product) == (
        Product.MIS, Product.CNC)


def test_the_context_tells_nses_tick_size_of_the_day() -> None:
    clock = _Clock()
    ctx = Context(_Book("t", 0, clock), 1)
    clock.now_ns = ist_ns(date(2026, 12, 1), time(10, 0))
    assert [ctx.tick_size(p) for p in (120_00, 800_00, 1500_00, 11_200_00)] == [1, 5, 10, 100]
    clock.now_ns = ist_ns(date(2024, 1, 2), time(10, 0))
    assert [ctx.tick_size(p) for p in (120_00, 1500_00)] == [5, 5]


class AsksTick(Strategy):
    """Records ``ctx.tick_size()`` on every tick."""

    def setup(self) -> None:
        self.seen: list[int] = []

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        self.seen.append(ctx.tick_size())
        return None


def test_ctx_tick_size_is_taken_from_what_the_exchange_takes_it_from() -> None:
    # The day's first price (₹1,001: 0.10) without a close, whatever the price since (₹998:
    # 0.05 at that price); the next IST day's first price; a tick's previous close first.
    day1, day2 = date(2026, 12, 1), date(2026, 12, 2)
    runner = StrategyRunner([config_from_mapping(
        {"id": "t", "strategy": f"{__name__}:AsksTick", "instruments": [11]})])
    for ts, price, close in ((ist_ns(day1, time(9, 15)), 1001_00, None),
                             (ist_ns(day1, time(10, 0)), 998_00, None),
                             (ist_ns(day2, time(9, 15)), 998_00, None),
                             (ist_ns(day2, time(9, 16)), 998_00, 1002_00)):
        runner.process(MarketTick(instrument_token=11, last_price=price, ts=ts, close=close))
    strategy = runner._slots["t"][0].strategy
    assert isinstance(strategy, AsksTick)
    assert strategy.seen == [10, 10, 5, 10]


class Rests(Strategy):
    """A limit buy of 5 at its first tick; cancels every open order when the price is 0."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal | CancelOrder] | None:
        if tick.last_price == 0:
            return [ctx.cancel(o) for o in ctx.open_orders()]
        if ctx.position() == 0:
            return [ctx.buy(5, order_type=OrderType.LIMIT, limit_price=90)]
        return None


def submitted(oid: str, qty: int = 5, **kw: object) -> OrderSubmitted:
    return OrderSubmitted(order_id=oid, signal_id=f"s-{oid}", strategy_id="r",
                          instrument_token=1, side=Side.BUY, quantity=qty,
                          order_type=OrderType.LIMIT, limit_price=90, **kw)  # type: ignore[arg-type]


def filled(oid: str, qty: int, leaves: int) -> OrderFilled:
    return OrderFilled(order_id=oid, fill_id=f"{oid}-{leaves}", strategy_id="r",
                       instrument_token=1, side=Side.BUY, quantity=qty, price=90,
                       cumulative_quantity=5 - leaves, leaves_quantity=leaves, average_price=90)


def test_the_context_shows_what_filled_and_what_still_works_in_any_order_of_events() -> None:
    runner = StrategyRunner([cfg("r", Rests, [1])])
    ctx = runner._slots["r"][0].ctx
    runner.on_tick(tick(1, 100))
    assert (ctx.position(), ctx.filled(), ctx.open_orders()) == (5, 0, [])  # in flight
    runner.on_order_submitted(submitted("a"))
    assert [(o.order_id, o.leaves_quantity, o.limit_price) for o in ctx.open_orders()] == [
        ("a", 5, 90)]
    runner.on_fill(filled("a", 2, 3))
    assert (ctx.position(), ctx.filled(), ctx.open_orders()[0].leaves_quantity) == (5, 2, 3)
    runner.on_fill(filled("a", 3, 0))
    assert (ctx.position(), ctx.filled(), ctx.open_orders()) == (5, 5, [])

    # The pipeline reads the order topics together: a fill, a cancel, a rejection may come
    # before the submission they follow.
    runner.on_fill(filled("b", 1, 4))
    runner.on_order_submitted(submitted("b"))
    assert [(o.order_id, o.leaves_quantity) for o in ctx.open_orders()] == [("b", 4)]
    runner.on_order_cancelled("r", 1, Side.BUY, 4, order_id="c")
    runner.on_order_submitted(submitted("c"))
    runner.on_fill(filled("d", 5, 0))
    runner.on_order_submitted(submitted("d"))
    runner.on_order_rejected("r", 1, Side.BUY, 5, order_id="e")
    runner.on_order_submitted(submitted("e"))
    assert [o.order_id for o in ctx.open_orders()] == ["b"]
    assert ctx.open_orders(2) == [] and ctx.filled(2) == 0
    assert ctx.filled() == 5 + 1 + 5


def test_an_order_ends_for_the_strategy_at_its_first_tick_past_the_venues_expiry() -> None:
    # The paper engine cancels an order expired at the close when it reads the instrument's
    # next tick, the one the strategy reads then: the runner ends it there itself (from the
    # submission's expires_ns), as the backtest's exchange, which sees the tick first, does.
    runner = StrategyRunner([cfg("r", Rests, [1])])
    ctx = runner._slots["r"][0].ctx
    runner.on_tick(tick(1, 100, ts=10))  # buys 5
    runner.on_order_submitted(submitted("a", expires_ns=100))
    runner.on_fill(filled("a", 1, 4))
    runner.on_tick(tick(1, 100, ts=99))
    assert (ctx.position(), ctx.filled(), len(ctx.open_orders())) == (5, 1, 1)
    assert runner.on_tick(tick(1, 100, ts=100)) == []  # its rest of 4 is gone: holds 1
    assert (ctx.position(), ctx.filled(), ctx.open_orders()) == (1, 1, [])
    runner.on_fill(filled("a", 2, 2))  # filled before the close, read after it
    assert (ctx.position(), ctx.filled(), ctx.open_orders()) == (3, 3, [])
    runner.on_order_cancelled_event(OrderCancelled(  # the venue's expiry changes nothing
        order_id="a", strategy_id="r", instrument_token=1, side=Side.BUY, filled_quantity=3,
        leaves_quantity=2, reason="expired", ts=100))
    assert (ctx.position(), ctx.filled(), ctx.open_orders()) == (3, 3, [])
    assert runner._expired == {} and runner._expiring == {}


def test_a_strategy_cancels_its_open_order_once_and_the_cancel_confirms_it() -> None:
    runner = StrategyRunner([cfg("r", Rests, [1])])
    ctx = runner._slots["r"][0].ctx
    runner.on_tick(tick(1, 100))
    assert runner.process(tick(1, 0)) is None and runner.take_cancels() == []  # nothing open
    runner.on_order_submitted(submitted("a"))
    assert runner.process(tick(1, 0)) == []  # cancels only: [] tells the caller to look
    [(sid, order)] = runner.take_cancels()
    assert (sid, order.order_id, order.signal_id) == ("r", "a", "s-a")
    assert ctx.open_orders()[0].cancel_requested
    runner.process(tick(1, 0))  # asked again while the venue has not answered: not twice
    assert runner.take_cancels() == []
    runner.on_order_cancelled("r", 1, Side.BUY, 5, order_id="a")
    assert (ctx.position(), ctx.open_orders()) == (0, [])
    assert runner.statuses()[0].state == "ACTIVE"


class CancelsOthers(Strategy):
    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal | CancelOrder] | None:
        return [CancelOrder(strategy_id="r", order_id="a")]


def test_cancelling_another_strategys_order_fails_the_strategy() -> None:
    runner = StrategyRunner([cfg("r", Rests, [1]), cfg("x", CancelsOthers, [1])])
    runner.on_tick(tick(1, 100))
    runner.on_order_submitted(submitted("a"))
    runner.on_tick(tick(1, 101))
    status = {s.id: s for s in runner.statuses()}
    assert status["x"].state == "FAILED" and "cancels an order of strategy 'r'" in (
        status["x"].error or "")
    assert runner.take_cancels() == [] and status["r"].state == "ACTIVE"


class CancelsStale(Strategy):
    """Keeps the id of its first open order and cancels it on every tick from then on."""

    def setup(self) -> None:
        self.kept: str | None = None

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal | CancelOrder] | None:
        if self.kept is None and ctx.open_orders():
            self.kept = ctx.open_orders()[0].order_id
        return [ctx.cancel(self.kept)] if self.kept is not None else None


def test_cancels_of_orders_not_open_are_counted_and_cancel_nothing() -> None:
    runner = StrategyRunner([cfg("r", Rests, [1]), cfg("s", CancelsStale, [1])])
    runner.on_tick(tick(1, 100))
    runner.on_order_submitted(submitted("a"))  # r's order: s does not see it
    runner.on_order_submitted(msgspec.structs.replace(submitted("b"), strategy_id="s"))
    runner.on_tick(tick(1, 101))  # s cancels "b", its own ...
    assert [(sid, o.order_id) for sid, o in runner.take_cancels()] == [("s", "b")]
    runner.on_order_cancelled("s", 1, Side.BUY, 5, order_id="b")
    for price in (102, 103, 104):  # ... and goes on asking once it has ended
        runner.on_tick(tick(1, price))
    status = {st.id: st for st in runner.statuses()}
    assert status["s"].cancels_ignored == 3 and status["s"].state == "ACTIVE"
    assert status["r"].cancels_ignored == 0 and runner.take_cancels() == []


class CancelsASignal(Strategy):
    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal | CancelOrder] | None:
        return [ctx.cancel(ctx.buy(1))]  # type: ignore[arg-type]


def test_cancelling_something_not_an_order_fails_the_strategy_with_what_it_takes() -> None:
    runner = StrategyRunner([cfg("x", CancelsASignal, [1])])
    runner.on_tick(tick(1, 100))
    [status] = runner.statuses()
    assert status.state == "FAILED"
    assert status.error == ("TypeError: ctx.cancel takes an OpenOrder (from ctx.open_orders()) "
                            "or its order id, not Signal")


def test_the_mis_cut_off_is_1520_ist_on_the_day_of_the_tick() -> None:
    runner = StrategyRunner([cfg("r", Rests, [1])])
    ctx = runner._slots["r"][0].ctx
    day = date(2026, 12, 3)
    runner.on_tick(tick(1, 100, ist_ns(day, time(9, 15))))
    assert ctx.mis_cutoff_ns == ist_ns(day, time(15, 20))
    runner.on_tick(tick(1, 100, ist_ns(date(2026, 12, 4), time(23, 59))))
    assert ctx.mis_cutoff_ns == ist_ns(date(2026, 12, 4), time(15, 20))


def test_an_intraday_strategy_opens_nothing_from_its_exit_time_or_past_the_cut_off() -> None:
    def signals(product: str, at: time, **file: object) -> list[Signal]:
        config = config_from_mapping({"id": "x", "strategy": "sma_cross", "instruments": [1],
                                      "product": product, "params": {"fast": 2, "slow": 3},
                                      **file})
        runner = StrategyRunner([config])
        # down, then up: fast crosses above slow on the last tick, while flat
        prices = [100, 99, 98, 97, 99, 103]
        out = []
        for i, price in enumerate(prices):
            out += runner.on_tick(tick(1, price, ist_ns(day, at) + i))
        ctx = runner._slots["x"][0].ctx
        assert ctx.past_mis_cutoff is (product == "MIS" and at >= cut)
        assert runner.statuses()[0].dropped_after_exit == 0  # it did not even ask
        return out

    day, cut = date(2026, 12, 3), time(15, 20)
    assert [s.side for s in signals("MIS", time(15, 14))] == [Side.BUY]
    assert signals("MIS", time(15, 15)) == []  # its exit time (15:15 unless the file says)
    assert [s.side for s in signals("MIS", time(15, 19), exit_at=None)] == [Side.BUY]
    assert signals("MIS", time(15, 20), exit_at=None) == []  # it would be rejected MIS_CUTOFF
    assert [s.product for s in signals("CNC", time(15, 25))] == [Product.CNC]  # delivery: fine
    assert signals("CNC", time(14, 0), exit_at="13:30") == []


class Scripted(Strategy):
    """By price: 100 a market buy of 5, 101 a limit buy of 3 at 90, 102 a market buy of 1,
    103 a market sell of 2; nothing at any other price."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        if tick.last_price == 100:
            return [ctx.buy(5)]
        if tick.last_price == 101:
            return [ctx.buy(3, order_type=OrderType.LIMIT, limit_price=90)]
        if tick.last_price == 102:
            return [ctx.buy(1)]
        if tick.last_price == 103:
            return [ctx.sell(2)]
        return None


def test_from_its_exit_time_the_runner_cancels_then_closes_what_filled_per_product() -> None:
    config = config_from_mapping({"id": "r", "strategy": f"{__name__}:Scripted",
                                  "instruments": [1], "product": "MIS"})
    runner = StrategyRunner([config])
    ctx = runner._slots["r"][0].ctx
    day = date(2026, 12, 3)

    def at(hh: int, mm: int, price: int, s: int = 0) -> list[Signal] | None:
        return runner.process(tick(1, price, ist_ns(day, time(hh, mm, s))))

    def fill(oid: str, side: Side, qty: int, origin: str = "signal",
             product: Product = Product.MIS) -> OrderFilled:
        return OrderFilled(order_id=oid, fill_id=f"f-{oid}", strategy_id="r", instrument_token=1,
                           side=side, quantity=qty, price=100, cumulative_quantity=qty,
                           leaves_quantity=0, average_price=100, origin=origin,  # type: ignore[arg-type]
                           product=product)

    assert [(s.side, s.quantity) for s in at(15, 0, 100) or []] == [(Side.BUY, 5)]
    runner.on_fill(fill("a", Side.BUY, 5))
    assert [s.limit_price for s in at(15, 1, 101) or []] == [90]
    runner.on_order_submitted(submitted("b", 3, ts=ist_ns(day, time(15, 1))))
    assert (ctx.position(), ctx.filled(), len(ctx.open_orders())) == (8, 5, 1)
    assert not ctx.past_exit

    # 15:15: its buy is dropped (it would add), its resting order is cancelled first
    assert at(15, 15, 102) == [] and ctx.past_exit
    assert [o.order_id for _, o in runner.take_cancels()] == ["b"]
    assert runner.statuses()[0].dropped_after_exit == 1
    assert at(15, 15, 99, 1) is None and runner.take_cancels() == []  # asked once
    runner.on_order_cancelled("r", 1, Side.BUY, 3, order_id="b")

    # nothing works any more: what filled is closed at market, in its product
    [close] = at(15, 16, 99) or []
    assert (close.side, close.quantity, close.order_type, close.product, close.reason) == (
        Side.SELL, 5, OrderType.MARKET, Product.MIS, "exit_at 15:15")
    assert at(15, 16, 99, 1) is None  # on its way: not twice
    # the venue takes it before it fills (as Kite does): the close is not cancelled
    runner.on_order_submitted(OrderSubmitted(
        order_id="c", signal_id="s-c", strategy_id="r", instrument_token=1, side=Side.SELL,
        quantity=5, order_type=OrderType.MARKET, product=Product.MIS,
        ts=ist_ns(day, time(15, 16, 1))))
    assert at(15, 16, 99, 2) is None and runner.take_cancels() == []
    runner.on_order_rejected("r", 1, Side.SELL, 5, order_id="c")  # (say the RMS refused it)
    assert ctx.position() == 5 and at(15, 16, 99, 3) is None  # not again on every tick
    [retry] = at(15, 17, 99, 3) or []  # a minute later, once more
    assert (retry.side, retry.quantity) == (Side.SELL, 5)
    runner.on_signal_rejected(retry)
    runner.on_fill(fill("z", Side.BUY, 1, origin="bracket"))  # a late fill: 6 held now
    [again] = at(15, 17, 103, 5) or []  # its own sell of 2 reduces: it goes, the close waits
    assert (again.side, again.quantity, again.reason) == (Side.SELL, 2, "")
    runner.on_fill(fill("y", Side.SELL, 2))
    # a delivery buy it holds too (a signal may name its product): closed in its own product
    runner.on_fill(fill("d", Side.BUY, 2, origin="bracket", product=Product.CNC))
    closes = at(15, 18, 99) or []
    assert sorted((s.side, s.quantity, s.product) for s in closes) == [
        (Side.SELL, 2, Product.CNC), (Side.SELL, 4, Product.MIS)]

    # past the cut-off the exchange squares off: the runner only keeps it from opening
    for c in closes:
        runner.on_signal_rejected(c)
    assert at(15, 20, 99) is None and at(15, 21, 102) is None
    # the next day it trades as usual until its exit time
    runner.on_fill(fill("sq", Side.SELL, 4, origin="squareoff"))
    runner.on_fill(fill("sq2", Side.SELL, 2, origin="bracket", product=Product.CNC))
    assert ctx.position() == 0
    [opened] = runner.process(tick(1, 100, ist_ns(date(2026, 12, 4), time(9, 20)))) or []
    assert (opened.side, opened.quantity) == (Side.BUY, 5)
    assert runner.statuses()[0].dropped_after_exit == 2


def test_a_refused_cancel_lets_the_strategy_ask_again() -> None:
    runner = StrategyRunner([cfg("r", Rests, [1])])
    ctx = runner._slots["r"][0].ctx
    runner.on_tick(tick(1, 100))
    runner.on_order_submitted(submitted("a"))
    runner.process(tick(1, 0))
    assert len(runner.take_cancels()) == 1 and ctx.open_orders()[0].cancel_requested
    runner.on_cancel_refused("r", "a")  # say Kite would not cancel it yet
    assert not ctx.open_orders()[0].cancel_requested
    runner.process(tick(1, 0))
    assert [o.order_id for _, o in runner.take_cancels()] == ["a"]


def test_replayed_decisions_move_no_book_and_the_log_rebuilds_it() -> None:
    runner = StrategyRunner([cfg("r", Rests, [1])])
    ctx = runner._slots["r"][0].ctx
    runner.replaying = True  # a restart: the strategy's own state is rebuilt from the ticks
    runner.on_tick(tick(1, 100))
    runner.on_order_submitted(submitted("a"))
    runner.process(tick(1, 0))  # it would cancel: not now, its answer is on the log
    assert (ctx.position(), runner.take_cancels()) == (0, [])
    assert not ctx.open_orders()[0].cancel_requested
    runner.replaying = False
    runner.reset_books(["r"])
    runner.replay_signal(ctx.buy(5, order_type=OrderType.LIMIT, limit_price=90))
    runner.on_order_submitted(submitted("a"))
    runner.on_fill(filled("a", 2, 3))
    assert (ctx.position(), ctx.filled(), ctx.pending(), ctx.cash) == (
        5, 2, 3, DEFAULT_STRATEGY_CASH - 180)


def test_a_strategy_the_trader_halts_sees_every_tick_and_signals_nothing_until_put_back() -> None:
    runner = StrategyRunner([cfg("h", EveryTick, [1]), cfg("o", EveryTick, [1])])
    for price in (98, 99):  # (warm-up)
        runner.on_tick(tick(1, price))
    assert len(runner.on_tick(tick(1, 100))) == 2
    assert runner.halt("h") and not runner.halt("nope")
    sigs = runner.on_tick(tick(1, 101))
    assert [s.strategy_id for s in sigs] == ["o"]
    status = {s.id: s for s in runner.statuses()}
    assert (status["h"].state, status["h"].dropped_while_halted) == ("HALTED", 1)
    assert status["o"].state == "ACTIVE"
    assert runner._slots["h"][0].strategy.seen[-1] == 101  # type: ignore[attr-defined]  # it ran
    runner.halt("h", active=False)
    assert [s.strategy_id for s in runner.on_tick(tick(1, 102))] == ["h", "o"]
    assert {s.id: s.state for s in runner.statuses()} == {"h": "ACTIVE", "o": "ACTIVE"}


def test_the_api_shows_each_strategys_exit_time_and_what_it_dropped() -> None:
    from alpha_panda.adapters.memory_log import MemoryLog
    from alpha_panda.services.pipeline import Pipeline

    configs = [config_from_mapping({"id": "r", "strategy": f"{__name__}:Scripted",
                                    "instruments": [1], "product": "MIS"}),
               cfg("c", EveryTick, [1])]
    runner = StrategyRunner(configs)
    day = date(2026, 12, 3)
    runner.process(tick(1, 102, ist_ns(day, time(15, 16))))  # a buy past 15:15: dropped
    views = Pipeline(MemoryLog(), configs, [], ["paper"], runner=runner).strategy_views()
    assert [(v.id, v.exit_at, v.dropped_after_exit) for v in views] == [
        ("r", "15:15", 1), ("c", None, 0)]


def test_an_mis_short_and_a_cnc_long_that_net_to_nothing_are_both_closed() -> None:
    config = config_from_mapping({"id": "r", "strategy": f"{__name__}:Scripted",
                                  "instruments": [1], "product": "MIS"})
    runner = StrategyRunner([config])
    for side, product in ((Side.SELL, Product.MIS), (Side.BUY, Product.CNC)):
        runner.on_fill(OrderFilled(
            order_id=f"o-{product}", fill_id=f"f-{product}", strategy_id="r", instrument_token=1,
            side=side, quantity=2, price=100, cumulative_quantity=2, leaves_quantity=0,
            average_price=100, product=product, origin="bracket"))
    assert runner._slots["r"][0].ctx.filled() == 0  # net, as ctx shows it
    closes = runner.process(tick(1, 99, ist_ns(date(2026, 12, 3), time(15, 15)))) or []
    assert sorted((s.side, s.quantity, s.product) for s in closes) == [
        (Side.BUY, 2, Product.MIS), (Side.SELL, 2, Product.CNC)]


def test_strategy_code_names_each_strategy_by_the_code_it_runs() -> None:
    # What the loop watch matches a stalled stack against: each class's own on_tick and
    # on_bar, naming every strategy running it; the base class's no-op on_bar names none.
    runner = StrategyRunner([cfg("a", EveryTick, [1, 2]), cfg("b", EveryTick, [3]),
                             cfg("bars", BarCounter, [1]), cfg("boom", Boom, [2])])
    assert runner.strategy_code() == {
        EveryTick.on_tick.__code__: "a, b",
        BarCounter.on_bar.__code__: "bars",
        Boom.on_tick.__code__: "boom",
    }
