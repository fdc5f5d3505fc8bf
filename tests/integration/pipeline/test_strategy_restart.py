"""After a restart the strategies see the books they had (position, filled, open orders,
cash) and the risk manager the open orders it had, however the live run's feedback was
timed: both are rebuilt from the log, not from decisions made again in a replay."""

from __future__ import annotations

from pathlib import Path

from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.domain.values import OrderType
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.settings import ApiSettings
from alpha_panda.strategy.base import CancelOrder, Context, Strategy, StrategyParams
from tests.integration.pipeline.test_kill_switch import free_port, settings


class RoundTrip(Strategy):
    """Buys 1 at market once nothing is pending or held, sells it once it has filled; then
    rests a buy 8% under the market, cancels it 30 ticks on, and rests another."""

    class Params(StrategyParams):
        pass

    def setup(self) -> None:
        self.sold = False
        self.rested_at = 0
        self.n = 0

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal | CancelOrder] | None:
        self.n += 1
        if ctx.pending() and not ctx.open_orders():
            return None  # on its way
        if not self.sold:
            if ctx.filled() == 0:
                return [ctx.buy(1)]
            self.sold = True
            return [ctx.sell(ctx.filled())]
        working = ctx.open_orders()
        if working and self.n - self.rested_at >= 30:
            return [ctx.cancel(o) for o in working if not o.cancel_requested]
        if not working and not ctx.pending():
            self.rested_at = self.n
            t = ctx.tick_size(tick.close or tick.last_price)
            return [ctx.buy(2, order_type=OrderType.LIMIT,
                            limit_price=tick.last_price * 92 // 100 // t * t)]
        return None


def books(system: SystemRun) -> dict[int, tuple[int, int, int, int | None, list[str]]]:
    runner = system.pipeline.runner
    return {s.token: (s.ctx.position(), s.ctx.filled(), s.ctx.cash, s.ctx.average_price(),
                      sorted(o.order_id for o in s.ctx.open_orders()))
            for s in runner._slots["rt"]}


def replay(tmp_path: Path, path: Path) -> SystemRun:
    """The file paced at 4x (its 12 s in 3 s): the feedback keeps up with the ticks, as
    live, so the strategy trades, requotes and cancels."""
    return SystemRun(settings(tmp_path, free_port()).model_copy(update={
        "feed": f"replay:{path}", "api": ApiSettings(enabled=False)}),
        RunOptions(progress=False, exit_at_end=True, speed=4.0))


async def test_books_and_risk_come_back_as_the_live_run_left_them(
        tmp_path: Path, tick_file) -> None:  # type: ignore[no-untyped-def]
    path, cols = tick_file(12_000, 4, seed=5)
    tokens = sorted(set(cols.instrument_token.tolist()))
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "rt.yaml").write_text(
        f"id: rt\nstrategy: {__name__}:RoundTrip\ninstruments: {tokens}\nbrokers: [paper]\n"
        "risk: {max_open_orders: 8}\n")
    live = replay(tmp_path, path)
    await live.run()
    assert live.pipeline is not None and live.pipeline.paper is not None
    handler = live.pipeline.paper
    exchange = live.pipeline.paper.exchange.exchange_for("rt")
    open_now = sorted(o.order_id for o in exchange.open_orders())
    live_books = books(live)
    risk = live.pipeline.risk["paper"].engine
    assert handler.orders > 5 * len(tokens) and open_now  # requoted, and resting at the end
    assert sorted(o for *_, orders in live_books.values() for o in orders) == open_now
    assert risk.open_orders("rt") == len(open_now)

    # the same file again: the feed has published it all, so nothing new happens; what
    # the strategies and risk see must be what the live run left, to the paisa
    again = replay(tmp_path, path)
    await again.run()
    assert again.pipeline is not None
    assert books(again) == live_books
    for s in again.pipeline.runner._slots["rt"]:
        working = sum(o.leaves_quantity * o.side.sign for o in s.ctx.open_orders())
        assert s.ctx.position() == s.ctx.filled() + working
    rebuilt = again.pipeline.risk["paper"].engine
    assert rebuilt.open_orders("rt") == len(open_now)
    assert {t: rebuilt.position("rt", t) for t in tokens} == {
        t: risk.position("rt", t) for t in tokens}
