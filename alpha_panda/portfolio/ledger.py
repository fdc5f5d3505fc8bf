"""The position ledger: positions, cash and P&L per (strategy, instrument, product), exact to
the paisa.

Conventions (one ledger per broker account; the projector keeps one per broker):

- A strategy's MIS and CNC positions in one instrument are two positions, as Zerodha shows
  them: each has its own average price and realized P&L (an intraday round trip does not
  move the delivery holding's average), and the kill switch flattens each in its product.

- Quantity is signed: long > 0, short < 0 (MIS and F&O can be short).
- **Weighted average cost.** Each position keeps its *cost basis* as an int in paise: the
  signed sum of quantity × price of the quantity still open. The average price is
  derived (``cost_basis / quantity``), never stored, so it never drifts.
- A fill that adds to the position (or opens it) adds ``quantity × price`` to the basis.
  A fill that *reduces* it realizes P&L on the closed quantity: the basis of the closed
  part is ``basis × closed / open``, rounded half away from zero to the paisa (the only
  rounding in the ledger); ``realized += closed part's proceeds − its basis``. A fill
  that crosses zero closes the whole position first, then opens the rest at the fill price.
  Closing a position completely releases its exact basis, so a flat position's realized
  P&L is exactly the sum of its cash flows.
- ``realized`` and ``unrealized`` are gross (prices only); ``charges`` are kept apart;
  ``net = realized + unrealized − charges``. Unrealized is ``quantity × mark − basis``.
- Cash moves by ``−side × quantity × price − charges`` on every fill: per strategy (from
  its allocation, default 0) and for the account (from ``initial_cash``).
- A live account's ledger (``broker_funds``) has no cash of its own: the account's cash is
  the broker's, unknown until reported (``report_funds``: a figure as of the start of an
  IST day, fills of that day on top), and strategies have no allocation to show cash of.
- Fills are applied once: a redelivered fill (same ``fill_id``, among the last
  ``FILL_IDS_KEPT``) is ignored.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from alpha_panda.domain.clock import ist_day_number
from alpha_panda.domain.events import NO_CHARGES, OrderFilled, PnlSnapshot
from alpha_panda.domain.values import Product, Side

FILL_IDS_KEPT = 500_000
"""How many recent fill ids are remembered to ignore a redelivered fill."""

_BUY = Side.BUY


def _div_round(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half away from zero (denominator > 0)."""
    q, r = divmod(abs(numerator), denominator)
    if 2 * r >= denominator:
        q += 1
    return q if numerator >= 0 else -q


@dataclass(slots=True)
class Position:
    """One (strategy, instrument, product) position; amounts in paise."""

    strategy_id: str
    instrument_token: int
    quantity: int = 0
    cost_basis: int = 0
    realized: int = 0
    charges: int = 0
    last_price: int | None = None
    fills: int = 0
    product: Product = Product.CNC
    bought: int = 0  # total quantity bought (for round trips and turnover)
    sold: int = 0

    @property
    def average_price(self) -> int:
        """Average cost per unit, rounded half away from zero to the paisa (0 when flat)."""
        return 0 if self.quantity == 0 else abs(_div_round(self.cost_basis, abs(self.quantity)))

    @property
    def mark_price(self) -> int:
        """The last mark, else the average price (an unmarked position shows no unrealized)."""
        return self.last_price if self.last_price is not None else self.average_price

    @property
    def unrealized(self) -> int:
        if self.quantity == 0 or self.last_price is None:
            return 0
        return self.quantity * self.last_price - self.cost_basis

    @property
    def exposure(self) -> int:
        return abs(self.quantity) * self.mark_price

    @property
    def net_pnl(self) -> int:
        return self.realized + self.unrealized - self.charges

    def apply(self, signed_qty: int, price: int) -> int:
        """Apply a fill of ``signed_qty`` at ``price``; returns the P&L it realized."""
        realized = 0
        q = self.quantity
        if q != 0 and (q > 0) != (signed_qty > 0):
            closed = min(abs(signed_qty), abs(q))
            released = _div_round(self.cost_basis * closed, abs(q))
            sign = 1 if q > 0 else -1
            realized = sign * closed * price - released
            self.cost_basis -= released
            self.quantity += sign * -closed
            signed_qty += sign * closed
        if signed_qty:
            self.quantity += signed_qty
            self.cost_basis += signed_qty * price
        self.realized += realized
        return realized


class PositionLedger:
    """Positions, cash and P&L of one broker account, per strategy and instrument."""

    def __init__(
        self, initial_cash: int = 10_000_000_00, *, broker: str = "paper",
        strategy_cash: dict[str, int] | None = None, keep_cash: bool = True,
        broker_funds: bool = False,
    ) -> None:
        """``keep_cash=False``: positions and P&L only (what the risk engine reads); cash,
        equity and the equity curve are then not kept (they stay at their starting values).
        ``broker_funds``: the account's cash is the broker's (``report_funds``), not
        ``initial_cash``; snapshots state no cash or equity until it is reported, and none
        per strategy."""
        self._keep_cash = keep_cash
        # cash flows by IST day (``ist_day_number``) of a live account, and the latest funds
        # reported: (cash, the IST day it is of, reported at ns)
        self._day_flows: dict[int, int] | None = {} if broker_funds else None
        self._funds: tuple[int, int, int] | None = None
        self.initial_cash = initial_cash
        self.broker = broker
        self._allocation = dict(strategy_cash or {})
        self._positions: dict[tuple[str, int, Product], Position] = {}
        self._by_token: dict[int, list[Position]] = {}
        self._flow: dict[str, int] = {}  # cash flow per strategy since start
        self._seen: OrderedDict[str, None] = OrderedDict()  # recent fill ids, bounded
        self._curve: list[tuple[int, int]] = []  # account equity after each fill
        # Account totals kept incrementally so ``equity()`` after each fill is O(1):
        # Σ flows, and Σ quantity × mark_price over the positions (0 for flat ones).
        self._flow_total = 0
        self._held = 0

    def apply_fill(self, fill: OrderFilled) -> bool:
        """Book one execution; False: ignored, this ``fill_id`` was booked already."""
        seen = self._seen
        fill_id = fill.fill_id
        if fill_id in seen:
            return False
        seen[fill_id] = None
        if len(seen) > FILL_IDS_KEPT:
            seen.popitem(last=False)
        sid = fill.strategy_id
        pos = self._positions.get((sid, fill.instrument_token, fill.product))
        if pos is None:
            pos = self.position(sid, fill.instrument_token, fill.product)
        q = pos.quantity
        quantity = fill.quantity
        price = fill.price
        if fill.side is _BUY:
            signed = quantity
            pos.bought += quantity
        else:
            signed = -quantity
            pos.sold += quantity
        if q == 0:  # opens: nothing held before, nothing realized
            held_before = 0
            pos.quantity = signed
            pos.cost_basis += signed * price
        else:
            held_before = q * pos.mark_price if self._keep_cash else 0
            if (q > 0) == (signed > 0):  # adds: nothing realized
                pos.quantity = q + signed
                pos.cost_basis += signed * price
            else:
                pos.apply(signed, price)
        pos.fills += 1
        charges = 0 if fill.charges is NO_CHARGES else fill.charges.total
        if charges:
            pos.charges += charges
        if pos.last_price is None:
            pos.last_price = price
        if not self._keep_cash:
            return True
        flow = -signed * price - charges
        flows = self._flow
        flows[sid] = flows.get(sid, 0) + flow
        self._flow_total += flow
        days = self._day_flows
        if days is not None:
            day = ist_day_number(fill.ts)
            days[day] = days.get(day, 0) + flow
            if self._funds is not None and day < self._funds[1]:
                self.initial_cash -= flow  # before the reported day: in the broker's figure
        # after a fill the position has a mark (set above), so its value is quantity × mark
        self._held += pos.quantity * pos.last_price - held_before
        self._curve.append((fill.ts, self.initial_cash + self._flow_total + self._held))
        return True

    @property
    def broker_funds(self) -> bool:
        return self._day_flows is not None

    @property
    def cash_known(self) -> bool:
        """False for a live account whose funds have not been reported yet."""
        return self._day_flows is None or self._funds is not None

    @property
    def funds_reported_at(self) -> int | None:
        return None if self._funds is None else self._funds[2]

    def report_funds(self, cash: int, ts: int) -> bool:
        """The broker's cash of the account as of the start of ``ts``'s IST day (Kite's
        ``available.cash``: the day's trades are not in it), reported at ``ts``: the account's
        cash is then that plus the flows of the fills from that day on, in whichever order
        fills and reports are applied (a rebuild reads the control topic first). A report
        older than the one applied is ignored (False), as on a ledger without broker funds."""
        days = self._day_flows
        if days is None or (self._funds is not None and ts < self._funds[2]):
            return False
        day = ist_day_number(ts)
        self._funds = (cash, day, ts)
        self.initial_cash = cash - sum(f for d, f in days.items() if d < day)
        return True

    def mark(self, token: int, price: int) -> None:
        """Mark every position in ``token`` at ``price`` (its last traded price)."""
        positions = self._by_token.get(token)
        if positions is None:
            return
        if not self._keep_cash:
            for pos in positions:
                pos.last_price = price
            return
        for pos in positions:
            q = pos.quantity
            if q:
                self._held += q * (price - pos.mark_price)
            pos.last_price = price

    def position(self, strategy_id: str, token: int,
                 product: Product = Product.CNC) -> Position:
        """The position (created flat if it does not exist yet)."""
        key = (strategy_id, token, product)
        pos = self._positions.get(key)
        if pos is None:
            pos = self._positions[key] = Position(strategy_id, token, product=product)
            self._by_token.setdefault(token, []).append(pos)
        return pos

    def last_price(self, strategy_id: str, token: int) -> int | None:
        """The price the strategy's positions in ``token`` are marked at (its last tick's,
        else its last fill's), whatever their product; None before any."""
        for p in self._by_token.get(token, ()):
            if p.strategy_id == strategy_id and p.last_price is not None:
                return p.last_price
        return None

    def positions(self, strategy_id: str | None = None, *, open_only: bool = False) -> list[Position]:
        """Positions, in the order they were opened, optionally of one strategy / open only."""
        return [
            p for p in self._positions.values()
            if (strategy_id is None or p.strategy_id == strategy_id)
            and (not open_only or p.quantity != 0)
        ]

    def strategies(self) -> list[str]:
        return sorted({p.strategy_id for p in self._positions.values()} | set(self._allocation))

    def cash(self, strategy_id: str | None = None) -> int:
        """Cash of a strategy (its allocation + flows) or of the account."""
        if strategy_id is None:
            return self.initial_cash + self._flow_total
        return self._allocation.get(strategy_id, 0) + self._flow.get(strategy_id, 0)

    def equity(self, strategy_id: str | None = None) -> int:
        """Cash plus the marked value of the open positions."""
        if strategy_id is None:
            return self.initial_cash + self._flow_total + self._held
        held = sum(p.quantity * p.mark_price for p in self.positions(strategy_id, open_only=True))
        return self.cash(strategy_id) + held

    def equity_curve(self) -> list[tuple[int, int]]:
        """(event time ns, account equity) after each fill and at each ``record_equity``."""
        return list(self._curve)

    def record_equity(self, ts: int) -> tuple[int, int]:
        """Add a point to the equity curve now (e.g. with each P&L snapshot) and return it."""
        point = (ts, self.equity())
        self._curve.append(point)
        return point

    def snapshot(self, strategy_id: str | None = None) -> PnlSnapshot:
        """P&L of one strategy, or of the whole account when ``strategy_id`` is None."""
        # One pass (a snapshot follows every fill): the sums of the positions' figures,
        # ``Position``'s properties inlined (they were half of the pass).
        realized = unrealized = charges = exposure = open_positions = fills = held = 0
        for p in self._positions.values():
            if strategy_id is not None and p.strategy_id != strategy_id:
                continue
            realized += p.realized
            charges += p.charges
            fills += p.fills
            q = p.quantity
            if q:
                open_positions += 1
                mark = p.last_price
                if mark is None:  # not marked yet: at its average price, no unrealized
                    mark = p.average_price
                else:
                    unrealized += q * mark - p.cost_basis
                exposure += (q if q > 0 else -q) * mark
                held += q * mark
        cash: int | None = self.cash(strategy_id)
        equity: int | None = None
        if self._day_flows is not None and (strategy_id is not None or self._funds is None):
            cash = None  # the broker's, not known yet; a strategy has no cash of its own
        elif cash is not None:
            equity = self.equity() if strategy_id is None else cash + held
        return PnlSnapshot(
            broker=self.broker, strategy_id=strategy_id, realized=realized,
            unrealized=unrealized, charges=charges, cash=cash,
            gross_exposure=exposure, open_positions=open_positions, fills=fills,
            equity=equity,
        )

    def summary(self, strategy_id: str | None = None) -> dict[str, Any]:
        """The snapshot's figures plus gross and net P&L and equity, in paise."""
        snap = self.snapshot(strategy_id)
        gross = snap.realized + snap.unrealized
        return {
            "realized": snap.realized, "unrealized": snap.unrealized, "charges": snap.charges,
            "gross_pnl": gross, "net_pnl": gross - snap.charges, "cash": snap.cash,
            "equity": snap.equity, "gross_exposure": snap.gross_exposure,
            "open_positions": snap.open_positions, "fills": snap.fills,
        }


def snapshot_equity(snap: PnlSnapshot, initial_cash: int) -> int:
    """The account equity a snapshot states; one written before snapshots carried it, by
    the accounts: initial cash plus realized and unrealized P&L less charges."""
    if snap.equity is not None:
        return snap.equity
    return initial_cash + snap.realized + snap.unrealized - snap.charges


def snapshot_capital(snap: PnlSnapshot, initial_cash: int) -> int:
    """The capital under a snapshot's equity: the cash the account (or the strategy) was
    given, not earned. The ledger's equity is exactly its capital plus its net P&L, so a
    snapshot states its capital as its equity less its net P&L, those written before this
    function too; one written without an equity, ``initial_cash``.

    On paper, the account's capital is ``paper.initial_cash`` per configured strategy: a
    strategy added or removed between runs on one data dir changes it. Between two
    snapshots, a change of capital is money added or withdrawn, not a gain or a loss."""
    if snap.equity is None:
        return initial_cash
    return snap.equity - (snap.realized + snap.unrealized - snap.charges)
