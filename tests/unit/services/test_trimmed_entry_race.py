"""An exit smaller than a resting entry cancels the entry and places it again smaller (the
replacement). The entry may fill before its cancel lands: then the replacement must not add
to it. Driven through the pipeline's own handlers (the tick fanout and a broker's feedback),
as the strategy-runner service runs them."""

from __future__ import annotations

from typing import Any

from alpha_panda.domain.events import (
    CancelRefused,
    CancelRequested,
    Envelope,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderSubmitted,
    Payload,
    Signal,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import Product, Side
from alpha_panda.services.strategy_runner import SignalFanout, StrategyFeedback
from alpha_panda.strategy.config import config_from_mapping
from alpha_panda.strategy.runner import StrategyRunner
from alpha_panda.stream.emit import Emit
from alpha_panda.stream.log import Record
from tests.unit.risk.test_reduce_only import T0, TOKEN

REC = Record("", 0, 0, None, b"")
MODULE = "tests.unit.risk.test_reduce_only"


class Run:
    """A strategy that rests a limit buy of 10 at 99 and then keeps 6 of it, on ``broker``
    (of ``product``, ticks from ``t0``)."""

    def __init__(self, runner: StrategyRunner | None = None, broker: str = "paper",
                 token: int = TOKEN, product: str = "MIS", t0: int = T0) -> None:
        self.runner = runner or StrategyRunner([config_from_mapping({
            "id": "s1", "strategy": f"{MODULE}:LimitEntryThenExit", "instruments": [token],
            "product": product, "exit_at": None, "params": {"keep": 6},
            "brokers": [broker]})])
        self.broker, self.token, self.t0 = broker, token, t0
        self.feedback = StrategyFeedback(broker, self.runner)
        self.fanout = SignalFanout(self.runner, [self.feedback])
        self.n = 0
        self.emitted: list[Emit] = []

    def tick(self, k: int) -> list[Emit]:
        ts = self.t0 + k
        env = new_envelope(MarketTick(instrument_token=self.token, last_price=100_00, ts=ts),
                           id=f"tick{k}", ts=ts, source="feed", key=str(self.token))
        out = list(self.fanout.handle(env, REC))
        self.emitted += out
        return out

    def event(self, data: Payload, topic: str) -> list[Emit]:
        self.n += 1
        env = new_envelope(data, id=f"ev{self.n}", ts=self.t0 + 10 + self.n,
                           source=f"{self.broker}-engine", key="s1")
        self.emitted.append(Emit(f"{self.broker}.{topic}", env))
        out = list(self.feedback.handle(env, REC))
        self.emitted += out
        return out

    def submitted(self, env: Envelope[Any]) -> str:
        sig = env.data
        assert isinstance(sig, Signal)
        oid = derive_id(env.id, "order")
        self.event(OrderSubmitted(
            order_id=oid, signal_id=env.id, strategy_id="s1", instrument_token=self.token,
            side=sig.side, quantity=sig.quantity, order_type=sig.order_type,
            limit_price=sig.limit_price, product=sig.product, ts=self.t0), "orders.submitted")
        return oid

    def fill(self, oid: str, qty: int, leaves: int) -> list[Emit]:
        return self.event(OrderFilled(
            order_id=oid, fill_id=f"{oid}-{leaves}", strategy_id="s1", instrument_token=self.token,
            side=Side.BUY, quantity=qty, price=99_00, cumulative_quantity=0,
            leaves_quantity=leaves, average_price=99_00, product=Product.MIS), "orders.filled")

    def cancelled(self, oid: str, leaves: int) -> list[Emit]:
        return self.event(OrderCancelled(
            order_id=oid, strategy_id="s1", instrument_token=self.token, side=Side.BUY,
            filled_quantity=0, leaves_quantity=leaves, reason="strategy"), "orders.cancelled")

    def trimmed(self) -> tuple[str, str]:
        """The entry of 10 rests; the strategy keeps 6 of it: its order id, and the
        replacement's (a buy of 6 at 99, placed as the entry's cancel is asked)."""
        (entry,) = self.tick(0)
        oid = self.submitted(entry.envelope)
        out = self.tick(1)
        sigs = [e.envelope for e in out if isinstance(e.envelope.data, Signal)]
        assert [(e.data.side, e.data.quantity, e.data.limit_price) for e in sigs] == [
            (Side.BUY, 6, 99_00)]
        assert cancels(out) == [oid]
        assert self.position() == (6, 0)
        return oid, derive_id(sigs[0].id, "order")

    def position(self) -> tuple[int, int]:
        """(intended, filled) position of the strategy."""
        return (self.runner.position("s1", self.token),
                self.runner._books["s1"].filled.get(self.token, 0))


def cancels(emits: list[Emit]) -> list[str]:
    return [e.envelope.data.order_id for e in emits
            if isinstance(e.envelope.data, CancelRequested)]


def test_a_trimmed_entry_cancelled_as_asked_leaves_its_replacement_working() -> None:
    run = Run()
    oid, replacement = run.trimmed()
    assert run.cancelled(oid, 10) == []
    assert run.position() == (6, 0)
    assert run.fill(replacement, 6, 0) == []
    assert run.position() == (6, 6)


def test_an_entry_that_fills_before_its_trim_lands_cancels_its_replacement() -> None:
    # The limit buy of 10 filled at the venue before its cancel landed (the cancel lost the
    # race): the replacement buy of 6 still worked and filled, long 16 where the strategy
    # meant 6. It is cancelled as soon as the runner reads the fill; the strategy is shown
    # the 10 it holds (and may sell 4).
    run = Run()
    oid, replacement = run.trimmed()
    assert cancels(run.fill(oid, 10, 0)) == [replacement]
    assert run.position() == (16, 10)  # until the replacement's cancel lands
    run.cancelled(replacement, 6)
    assert run.position() == (10, 10)


def test_a_replacement_that_filled_before_its_cancel_is_shown_held() -> None:
    # Both filled: the account holds 16, and so does the strategy's intent (it can act).
    run = Run()
    oid, replacement = run.trimmed()
    run.fill(replacement, 6, 0)
    assert cancels(run.fill(oid, 10, 0)) == []  # nothing of it is left to cancel
    assert run.position() == (16, 16)


def test_a_part_filled_before_the_trim_lands_cancels_the_replacement() -> None:
    # 3 of the 10 filled before the cancel took the other 7: the buy of 6 would make it 9.
    run = Run()
    oid, replacement = run.trimmed()
    assert cancels(run.fill(oid, 3, 7)) == [replacement]
    assert run.cancelled(oid, 7) == []
    run.cancelled(replacement, 6)
    assert run.position() == (3, 3)


def test_a_refused_trim_cancels_the_replacement() -> None:
    # Zerodha refuses the cancel (Kite shows the order complete) before its fill is read:
    # the entry works on whole, so its replacement must not.
    run = Run()
    oid, replacement = run.trimmed()
    out = run.event(CancelRefused(order_id=oid, requested_by="strategy:s1", reason="strategy",
                                  message="Kite shows the order COMPLETE"), "control")
    assert cancels(out) == [replacement]
    assert run.fill(oid, 10, 0) == []
    run.cancelled(replacement, 6)
    assert run.position() == (10, 10)


def test_the_replacement_cancel_is_asked_before_its_submission_is_read() -> None:
    # The pipeline reads the entry's fill before the replacement's submission.
    run = Run()
    oid, replacement = run.trimmed()
    assert cancels(run.fill(oid, 10, 0)) == [replacement]
    sig = next(e.envelope for e in run.emitted if isinstance(e.envelope.data, Signal)
               and e.envelope.data.quantity == 6)
    assert run.submitted(sig) == replacement
    run.cancelled(replacement, 6)
    assert run.position() == (10, 10)


async def test_a_restart_between_the_trim_and_the_fill_keeps_the_link() -> None:
    # The runner restarts after the trim; the entry's fill is read after the restart.
    from alpha_panda.adapters.memory_log import MemoryLog
    from alpha_panda.stream.emit import to_output
    from alpha_panda.stream.topics import REGISTRY

    run = Run()
    oid, replacement = run.trimmed()
    log = MemoryLog()
    await log.start()
    await log.ensure_topics(REGISTRY.all())
    await log.append([to_output(e) for e in run.emitted])
    again = Run(StrategyRunner(run.runner.configs()))
    await again.feedback.rebuild_books(log)  # nothing committed: the feedback comes again
    assert again.position() == (6, 0)  # as the live runner had it
    for e in run.emitted:
        if e.topic.startswith("paper.orders"):
            again.feedback.handle(e.envelope, REC)
    assert cancels(again.fill(oid, 10, 0)) == [replacement]
    again.cancelled(replacement, 6)
    assert again.position() == (10, 10)
    await log.close()


SUFFIX = {"OrderSubmitted": "orders.submitted", "OrderFilled": "orders.filled",
          "OrderCancelled": "orders.cancelled", "OrderRejected": "orders.rejected"}


def paper_race(replacement_first: bool) -> tuple[Run, list[Payload]]:
    """The trim at the paper exchange, which reads a tick that fills the entry before the
    entry's cancel: the events the engine gave, fed back to the runner as they come; the
    replacement's signal read before the runner's cancel of it, or after."""
    from tests.unit.execution.test_paper import tick
    from tests.unit.execution.test_paper_kill_switch import MS, ex

    x = ex()
    run = Run()
    events: list[Payload] = []

    def engine(payloads: list[Payload]) -> list[Emit]:
        events.extend(payloads)
        return [e for p in payloads for e in run.event(p, SUFFIX[type(p).__name__])]

    (entry,) = run.tick(0)
    engine(x.submit(entry.envelope.id, entry.envelope.data, T0))
    out = run.tick(1)
    (again,) = [e.envelope for e in out if isinstance(e.envelope.data, Signal)]
    (cancel,) = [e.envelope.data for e in out if isinstance(e.envelope.data, CancelRequested)]
    asked = engine(x.on_tick(tick(T0 + 2 * MS, 98_50)))  # the entry fills at 99
    assert cancel.market_ts is not None
    assert engine(x.cancel(cancel.order_id, cancel.market_ts, "strategy")) == []  # too late
    (late,) = [e.envelope.data for e in asked if isinstance(e.envelope.data, CancelRequested)]
    assert late.order_id == derive_id(again.id, "order")
    assert late.market_ts is not None
    steps = [lambda: x.submit(again.id, again.data, T0 + 1),
             lambda: x.cancel(late.order_id, late.market_ts or 0, "strategy")]
    for step in (steps if replacement_first else steps[::-1]):
        engine(step())
    engine(x.on_tick(tick(T0 + 3 * MS, 98_00)))
    return run, events


def test_at_the_paper_exchange_the_replacement_cancelled_before_it_comes_never_fills() -> None:
    run, events = paper_race(replacement_first=False)
    fills = [(e.quantity, e.price) for e in events if isinstance(e, OrderFilled)]
    assert fills == [(10, 99_00)]
    assert run.position() == (10, 10)


def test_at_the_paper_exchange_a_replacement_read_first_fills_and_is_shown_held() -> None:
    # The engine read the replacement after the dip that filled the entry: it filled at
    # once, before the runner's cancel. Long 16, and the strategy is shown 16 (it may sell).
    run, events = paper_race(replacement_first=True)
    fills = [(e.quantity, e.price) for e in events if isinstance(e, OrderFilled)]
    assert fills == [(10, 99_00), (6, 99_00)]
    assert run.position() == (16, 16)
