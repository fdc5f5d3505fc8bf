"""The portfolio projector's read model does not depend on which order topic is read first;
its equity curve is what its account snapshots said, read back from the log."""

from __future__ import annotations

import random

import msgspec

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.events import (
    CancelRefused,
    CancelRequested,
    Charges,
    Envelope,
    KillSwitchSet,
    MarketTick,
    OrderCancelled,
    OrderFilled,
    OrderRejected,
    OrderSubmitted,
    Payload,
    PnlSnapshot,
    Signal,
    SignalValidated,
    StrategyHalted,
    new_envelope,
)
from alpha_panda.domain.values import OrderType, Product, Side
from alpha_panda.portfolio import PositionLedger
from alpha_panda.portfolio.ledger import snapshot_capital
from alpha_panda.readmodel.views import MAX_ORDERS, MAX_SIGNALS, PortfolioView, key
from alpha_panda.services.portfolio import PortfolioHandler
from alpha_panda.services.readmodel import portfolio_documents
from alpha_panda.stream.log import Record

SUBMITTED = OrderSubmitted(order_id="o1", signal_id="s1", strategy_id="st", instrument_token=7,
                           side=Side.BUY, quantity=3, order_type=OrderType.MARKET)
FILLED = OrderFilled(order_id="o1", fill_id="f1", strategy_id="st", instrument_token=7,
                     side=Side.BUY, quantity=3, price=10_000, cumulative_quantity=3,
                     leaves_quantity=0, average_price=10_000)


def env(data: Payload, n: int, broker: str | None = "paper") -> Envelope[Payload]:
    return new_envelope(data, id=f"e{n}", ts=n, source="t", key="st:7", broker=broker)


def run(*events: Envelope[Payload]) -> PortfolioHandler:
    h = PortfolioHandler("paper", PositionLedger(1_000_000_00), snapshot_interval_ns=10**9)
    for e in events:
        h.handle(e, Record("t", 0, 0, None, b""))
    return h


def test_fill_before_submitted_still_shows_filled() -> None:
    for order in ((env(SUBMITTED, 1), env(FILLED, 2)), (env(FILLED, 2), env(SUBMITTED, 1))):
        view = run(*order).orders["o1"]
        assert (view.status, view.filled_quantity, view.average_price, view.order_type) == (
            "FILLED", 3, 10_000, "MARKET")
        assert (view.product, view.validity, view.parent_order_id) == ("CNC", "DAY", None)


def test_a_partly_filled_order_cancelled_stays_cancelled_whichever_topic_is_read_first() -> None:
    part = msgspec.structs.replace(FILLED, quantity=1, cumulative_quantity=1, leaves_quantity=2)
    cancelled = OrderCancelled(order_id="o1", strategy_id="st", instrument_token=7,
                               side=Side.BUY, filled_quantity=1, leaves_quantity=2, reason="user")
    for order in ((env(SUBMITTED, 1), env(part, 2), env(cancelled, 3)),
                  (env(cancelled, 3), env(SUBMITTED, 1), env(part, 2))):  # a rebuild's order
        view = run(*order).orders["o1"]
        assert (view.status, view.filled_quantity, view.reason) == ("CANCELLED", 1, "user")


def test_an_order_rejected_before_submission_shows_what_was_asked() -> None:
    rejected = OrderRejected(order_id="o2", strategy_id="st", instrument_token=7, side=Side.SELL,
                             quantity=4, reason_code="TICK_SIZE", message="off the grid",
                             order_type=OrderType.SL, limit_price=99_97, trigger_price=100_03,
                             product=Product.MIS)
    view = run(env(rejected, 1)).orders["o2"]
    assert (view.status, view.order_type, view.limit_price, view.trigger_price, view.product) == (
        "REJECTED", "SL", 99_97, 100_03, "MIS")
    assert view.reason == "TICK_SIZE: off the grid"
    # one written before rejections carried these: as before, nothing made up
    old = msgspec.structs.replace(rejected, order_type=None, limit_price=None,
                                  trigger_price=None, product=None)
    view = run(env(old, 1)).orders["o2"]
    assert (view.order_type, view.limit_price, view.product) == ("", None, "")


def test_a_bracket_leg_shows_its_entry_and_product() -> None:
    leg = OrderSubmitted(order_id="o1.sl", signal_id="s1", strategy_id="st", instrument_token=7,
                         side=Side.SELL, quantity=3, order_type=OrderType.SL_M,
                         trigger_price=9_900, product=Product.MIS, parent_order_id="o1")
    view = run(env(leg, 1)).orders["o1.sl"]
    assert (view.order_type, view.product, view.parent_order_id, view.trigger_price) == (
        "SL-M", "MIS", "o1", 9_900)


def test_each_order_says_who_placed_it_whichever_of_its_events_comes_first() -> None:
    # a square-off and a flatten had reason null and nothing else to tell them apart
    for origin in ("signal", "bracket", "squareoff", "flatten"):
        sub = msgspec.structs.replace(SUBMITTED, origin=origin)
        fill = msgspec.structs.replace(FILLED, origin=origin)
        for order in ((env(sub, 1), env(fill, 2)), (env(fill, 2), env(sub, 1))):
            assert run(*order).orders["o1"].origin == origin
        rejected = OrderRejected(order_id="o1", strategy_id="st", instrument_token=7,
                                 side=Side.BUY, quantity=3, reason_code="RMS", message="no",
                                 origin=origin)
        assert run(env(rejected, 1)).orders["o1"].origin == origin


def test_position_opened_after_its_last_tick_is_marked_at_that_tick() -> None:
    tick = MarketTick(instrument_token=7, last_price=10_250, ts=5)
    h = run(env(tick, 5, broker=None), env(FILLED, 2))
    assert h.snapshot(None).unrealized == 3 * 250


def test_equity_curve_is_read_back_from_the_account_snapshots() -> None:
    h = run(env(FILLED, 2))
    assert list(h.equity_curve) == []  # published, not yet read back
    emitted = h.handle(env(FILLED, 2), Record("t", 0, 0, None, b""))  # (a fill again)
    snaps = [e.envelope for e in emitted]
    assert {s.data.strategy_id for s in snaps} == {"st", None}
    account = next(s for s in snaps if s.data.strategy_id is None)
    assert account.data.equity == h.ledger.equity()
    old = PnlSnapshot(broker="paper", strategy_id=None, realized=5_00, unrealized=-2_00,
                      charges=1_00, cash=0, gross_exposure=0, open_positions=0, fills=1)
    late = new_envelope(account.data, id="late", ts=1, source="t", key="account", broker="paper")
    h2 = run(*snaps, env(old, 3), late)
    # one point per account snapshot, in log order, with the capital under it; a snapshot
    # written before they carried equity counts by the accounts; a time never goes back;
    # the first fill's is preceded by the capital it started from
    cash = 1_000_000_00
    assert list(h2.equity_curve) == [(2, cash, cash), (2, account.data.equity, cash),
                                     (3, cash + 2_00, cash), (3, account.data.equity, cash)]


def test_the_curve_keeps_the_capital_each_snapshot_was_made_with() -> None:
    # A run with two strategies (₹20 lakh), then a third added (₹30 lakh): the projector
    # of the second run reads the first run's snapshots back with their ₹20 lakh.
    first = PnlSnapshot(broker="paper", strategy_id=None, realized=5_00, unrealized=-2_00,
                        charges=1_00, cash=0, gross_exposure=0, open_positions=0, fills=1,
                        equity=20_00_000_00 + 2_00)
    second = msgspec.structs.replace(first, realized=1_00, fills=2, equity=30_00_000_00 - 2_00)
    h = PortfolioHandler("paper", PositionLedger(30_00_000_00), snapshot_interval_ns=10**9)
    for n, snap in enumerate((first, second), 1):
        h.handle(new_envelope(snap, id=f"p{n}", ts=n, source="t", key="account", broker="paper"),
                 Record("t", 0, 0, None, b""))
    assert list(h.equity_curve) == [(1, 20_00_000_00, 20_00_000_00),
                                    (1, 20_00_000_00 + 2_00, 20_00_000_00),
                                    (2, 30_00_000_00 - 2_00, 30_00_000_00)]
    # the read model: the points, and the capital of each beside them
    doc = msgspec.json.decode(portfolio_documents(h)[key("paper", "portfolio")],
                              type=PortfolioView)
    assert doc.equity_curve == [(1, 20_00_000_00), (1, 20_00_000_00 + 2_00),
                                (2, 30_00_000_00 - 2_00)]
    assert doc.curve_capital == [20_00_000_00, 20_00_000_00, 30_00_000_00]


def test_snapshot_equity_is_cash_plus_marked_positions_and_adds_up() -> None:
    rng = random.Random(4)
    ledger = PositionLedger(1_000_000_00, strategy_cash={"a": 600_000_00, "b": 400_000_00})
    for n in range(400):
        token, sid = rng.choice((7, 8)), rng.choice("ab")
        price = 10_000 + rng.randrange(-500, 500, 5)
        if rng.random() < 0.3:
            ledger.mark(token, price)
            continue
        qty = rng.randint(1, 9)
        ledger.apply_fill(OrderFilled(
            order_id=f"o{n}", fill_id=f"f{n}", strategy_id=sid, instrument_token=token,
            side=rng.choice((Side.BUY, Side.SELL)), quantity=qty, price=price,
            cumulative_quantity=qty, leaves_quantity=0, average_price=price,
            charges=Charges(brokerage=rng.randint(0, 20_00))))
        account = ledger.snapshot(None)
        assert account.equity == ledger.equity()
        # what a snapshot without the field is read as
        assert account.equity == (ledger.initial_cash + account.realized + account.unrealized
                                  - account.charges)
        for s in ("a", "b"):
            assert ledger.snapshot(s).equity == ledger.equity(s)
        # so a snapshot states its capital, the account's and each strategy's, exactly
        assert snapshot_capital(account, 0) == 1_000_000_00
        assert snapshot_capital(ledger.snapshot("a"), 0) == 600_000_00
        assert snapshot_capital(ledger.snapshot("b"), 0) == 400_000_00


def test_the_read_model_keeps_every_open_order_however_many_closed_ones_follow() -> None:
    resting = OrderSubmitted(order_id="resting", signal_id="r", strategy_id="st",
                             instrument_token=7, side=Side.BUY, quantity=1,
                             order_type=OrderType.LIMIT, limit_price=9_000)
    events = [env(resting, 1)]
    for n in range(MAX_ORDERS + 100):
        sub = msgspec.structs.replace(SUBMITTED, order_id=f"m{n}", signal_id=f"s{n}")
        fill = msgspec.structs.replace(FILLED, order_id=f"m{n}", fill_id=f"f{n}")
        events += [env(sub, 2 + 2 * n), env(fill, 3 + 2 * n)]
    orders = run(*events).orders
    # the oldest of all, still open, stays; the oldest closed ones made room
    assert len(orders) == MAX_ORDERS and orders["resting"].status == "SUBMITTED"
    assert list(orders)[1:] == [f"m{n}" for n in range(101, MAX_ORDERS + 100)]


async def test_orders_read_after_their_fills_never_come_back_as_open_orders() -> None:
    # A restart replayed the fills topic before the submissions one (by name): beyond
    # MAX_ORDERS, an order filled and let go of came back as SUBMITTED at its submission,
    # and the API and dashboard offered to cancel a thousand filled orders.
    n = MAX_ORDERS + 300
    subs = [env(msgspec.structs.replace(SUBMITTED, order_id=f"m{i}", signal_id=f"s{i}"), i)
            for i in range(n)]
    fills = [env(msgspec.structs.replace(FILLED, order_id=f"m{i}", fill_id=f"f{i}"), i)
             for i in range(n)]
    h = run(*fills, *subs)
    assert [v.status for v in h.orders.values()] == ["FILLED"] * MAX_ORDERS
    assert h.ledger.snapshot(None).fills == n  # the ledger has every fill all the same
    # and a rebuild replays the submissions before the rest (then they are in order)
    topics = ["market.ticks", "paper.control", "paper.orders.cancelled", "paper.orders.filled",
              "paper.orders.submitted", "paper.pnl.snapshots"]
    assert sorted(topics, key=lambda t: (h.rebuild_rank(t), t))[:3] == [
        "market.ticks", "paper.orders.submitted", "paper.control"]
    # which keeps every order open until its fill is read: the read model holds them all
    # then, and after the rebuild only the latest MAX_ORDERS (by time), as a live run
    rebuilt = PortfolioHandler("paper", PositionLedger(1_000_000_00), snapshot_interval_ns=10**9)
    await rebuilt.before_rebuild(MemoryLog())
    for e in (*reversed(subs), *fills):
        rebuilt.handle(e, Record("t", 0, 0, None, b""))
    assert len(rebuilt.orders) == n  # (trimmed once, at the end: not at every new order)
    rebuilt.after_rebuild()
    assert list(rebuilt.orders) == [f"m{i}" for i in range(n - MAX_ORDERS, n)]
    assert {v.status for v in rebuilt.orders.values()} == {"FILLED"}


async def test_the_read_model_keeps_the_latest_orders_by_time_whatever_partition_came_last(
) -> None:
    # A full-speed replay reads one instrument's partition ahead of another's: the live read
    # model let go of the oldest orders it had *read*, so the API's "newest first" lacked
    # one instrument's latest orders (136 of 500 on a 6,000-tick replay of 3 instruments)
    # and showed another's older ones, and a restart (by time) showed a different list.
    def order(token: int, ts: int) -> list[Envelope[Payload]]:
        sub = msgspec.structs.replace(SUBMITTED, order_id=f"m{ts}", signal_id=f"s{ts}",
                                      instrument_token=token)
        fill = msgspec.structs.replace(FILLED, order_id=f"m{ts}", fill_id=f"f{ts}",
                                       instrument_token=token)
        return [env(sub, ts), env(fill, ts)]

    first = [e for i in range(MAX_ORDERS) for e in order(7, 2 * i)]  # even times
    second = [e for i in range(MAX_ORDERS) for e in order(8, 2 * i + 1)]  # odd times
    live = run(*first, *second)
    latest = {f"m{ts}" for ts in range(MAX_ORDERS, 2 * MAX_ORDERS)}
    assert set(live.orders) == latest
    rebuilt = PortfolioHandler("paper", PositionLedger(1_000_000_00), snapshot_interval_ns=10**9)
    await rebuilt.before_rebuild(MemoryLog())
    for e in (*first, *second):
        rebuilt.handle(e, Record("t", 0, 0, None, b""))
    rebuilt.after_rebuild()
    assert set(rebuilt.orders) == set(live.orders)


async def test_a_rebuild_keeps_the_latest_signals_by_time_whatever_partition_came_last() -> None:
    def validated(i: int, token: int) -> Envelope[Payload]:
        sig = Signal(strategy_id="st", instrument_token=token, side=Side.BUY, quantity=1)
        return env(SignalValidated(signal=sig, signal_id=f"s{i}"), i)

    n = MAX_SIGNALS + 200
    early = [validated(i, 7) for i in range(0, n, 2)]  # one partition's: even event times
    late = [validated(i, 8) for i in range(1, n, 2)]  # another's: odd ones
    h = PortfolioHandler("paper", PositionLedger(1_000_000_00), snapshot_interval_ns=10**9)
    await h.before_rebuild(MemoryLog())
    for e in (*late, *early):  # read partition by partition
        h.handle(e, Record("t", 0, 0, None, b""))
    h.after_rebuild()
    assert [g.ts for g in h.signals] == list(range(n - MAX_SIGNALS, n))


def test_a_live_run_keeps_the_latest_signals_by_time_whatever_partition_came_last() -> None:
    # as the rebuild above: a full-speed replay reads one partition's signals ahead of
    # another's, and the read model kept the 500 read last, not the latest 500
    def validated(i: int, token: int) -> Envelope[Payload]:
        sig = Signal(strategy_id="st", instrument_token=token, side=Side.BUY, quantity=1)
        return env(SignalValidated(signal=sig, signal_id=f"s{i}"), i)

    n = MAX_SIGNALS + 200
    ahead = [validated(i, 8) for i in range(1, n, 2)]  # read first: odd event times
    behind = [validated(i, 7) for i in range(0, n, 2)]  # then the even ones
    h = run(*ahead, *behind)
    assert [g.ts for g in h.signals] == list(range(n - MAX_SIGNALS, n))
    # (in time order, read in time order or not: ties in the order read)
    tied = run(validated(5, 7), validated(3, 7), msgspec.structs.replace(
        validated(6, 8), ts=5), validated(1, 7))
    assert [(g.ts, g.signal_id) for g in tied.signals] == [(1, "s1"), (3, "s3"), (5, "s5"),
                                                          (5, "s6")]


def test_a_traders_cancel_kill_switch_or_halt_does_not_move_the_market_time() -> None:
    # stamped with the wall clock: in a replay of an old day, "as of" jumped to today
    tick = MarketTick(instrument_token=7, last_price=100_00, ts=1_000)
    h = run(env(tick, 1_000),
            env(CancelRequested(order_id="o1", requested_by="api", market_ts=1_000), 9_999_999),
            env(KillSwitchSet(active=True, market_ts=1_000), 9_999_999),
            env(StrategyHalted(strategy_id="st", requested_by="cli", active=False), 9_999_999))
    assert h.as_of == 1_000


def test_cancel_requests_and_refusals_show_on_the_order_whichever_is_read_first() -> None:
    asked = CancelRequested(order_id="o1", requested_by="strategy:st", reason="strategy")
    refused = CancelRefused(order_id="o1", requested_by="strategy:st", reason="strategy",
                            message="Kite refused the cancel: order is locked")
    again = CancelRequested(order_id="o1", requested_by="api")
    live = (env(SUBMITTED, 1), env(asked, 2), env(refused, 3))
    rebuild = (env(asked, 2), env(refused, 3), env(SUBMITTED, 1))  # control before orders
    for order in (live, rebuild):
        view = run(*order).orders["o1"]
        assert (view.status, view.cancel_requested_ts, view.cancel_requested_by,
                view.cancel_refused) == ("SUBMITTED", 2, "strategy:st",
                                         "Kite refused the cancel: order is locked")
    view = run(*live, env(again, 4)).orders["o1"]  # a new request: its answer is not known
    assert (view.cancel_requested_ts, view.cancel_requested_by, view.cancel_refused) == (
        4, "api", None)
    assert run(env(asked, 2)).orders == {}  # no order event: no order shown


def test_the_live_account_cash_is_what_kite_reported_and_unknown_before() -> None:
    from alpha_panda.domain.events import FundsReported
    from alpha_panda.services.readmodel import portfolio_documents

    h = PortfolioHandler("zerodha", PositionLedger(0, broker="zerodha", broker_funds=True,
                                                   strategy_cash={"st": 0}),
                         snapshot_interval_ns=10**9)
    h.handle(env(FILLED, 5, broker="zerodha"), Record("t", 0, 0, None, b""))
    doc = msgspec.json.decode(portfolio_documents(h)["zerodha:portfolio"])
    assert doc["cash"] is None and doc["equity"] is None and doc["realized"] == 0
    assert doc["strategies"][0]["cash"] is None and doc["funds_at"] is None
    out = h.handle(env(FundsReported(cash=5_00_000_00), 10**12, broker="zerodha"),
                   Record("zerodha.control", 0, 0, None, b""))
    [snap] = [e.envelope.data for e in out]
    assert snap.strategy_id is None and snap.cash == 5_00_000_00 - 300_00  # the day's fill
    assert h.as_of == 5  # a wall-clock read moves no market time
    doc = msgspec.json.decode(portfolio_documents(h)["zerodha:portfolio"])
    assert doc["cash"] == 5_00_000_00 - 300_00 and doc["equity"] == 5_00_000_00
    assert doc["funds_at"] == 10**12 and doc["strategies"][0]["cash"] is None


def test_a_fill_booked_already_is_not_counted_again() -> None:
    """The same execution under another event id (a broker's fill reported twice) moves
    neither the ledger nor the count of fills the terminal shows."""
    other = msgspec.structs.replace(FILLED, order_id="o2", fill_id="f2")
    h = run(env(FILLED, 1), env(FILLED, 2), env(other, 3))
    assert h.fills == 2
    assert h.snapshot(None).open_positions == 1 and h.ledger.position("st", 7).quantity == 6


def test_a_decision_read_again_is_neither_counted_nor_listed_twice() -> None:
    """A partition assigned again (Kafka) replays decisions the portfolio has: the counts
    the terminal shows and the signals the API lists stay as they were."""
    signal = Signal(strategy_id="st", instrument_token=7, side=Side.BUY, quantity=3,
                    order_type=OrderType.MARKET)
    decided = SignalValidated(signal_id="s1", signal=signal)
    other = SignalValidated(signal_id="s2", signal=signal)
    h = run(env(decided, 1), env(decided, 2), env(other, 3))
    assert (h.validated, h.rejected) == (2, 0)
    assert [v.signal_id for v in h.signals] == ["s1", "s2"]


def test_a_fill_booked_already_does_not_charge_its_order_again() -> None:
    """The order list shows what the order paid: a broker's fill reported twice (another
    event id, the same fill id) is charged once, as the ledger books it once."""
    paid = msgspec.structs.replace(FILLED, charges=Charges(brokerage=20_00, stt=7_50, gst=3_60))
    h = run(env(SUBMITTED, 1), env(paid, 2), env(paid, 3))
    assert h.ledger.snapshot(None).charges == 31_10
    assert h.orders["o1"].charges == 31_10


def test_the_positions_document_does_not_depend_on_which_fill_was_read_first() -> None:
    # Listed in the order they were opened, a restart (reading the fills partition by
    # partition) served the positions in another order than the live run had.
    fills = [msgspec.structs.replace(FILLED, order_id=f"o{t}", fill_id=f"f{t}",
                                     instrument_token=t, strategy_id=sid)
             for t, sid in ((9, "b"), (7, "a"), (8, "b"))]
    docs = [msgspec.json.decode(portfolio_documents(run(*(env(f, n) for n, f in enumerate(
        order, 1))))[key("paper", "positions")]) for order in (fills, fills[::-1])]
    assert docs[0] == docs[1]
    assert [(p["strategy_id"], p["instrument_token"]) for p in docs[0]] == [
        ("a", 7), ("b", 8), ("b", 9)]
