"""A deterministic NSE-like market: random walks on NSE's tick grid over simulated sessions.

The session clock starts at the configured IST open (09:15 by default) on the current
IST date, whatever the wall-clock hour, so ``make run`` trades at any time of day. Given
a calendar, a session ends at its close (15:30) and the clock moves on to the next trading
day's open, prices carried over: a long run goes through sessions as the market does (DAY
orders expire, intraday positions are squared off, daily limits start afresh), never
through the night. Each instrument walks on NSE's tick size for the session's date and
its previous close (``execution.market.TickSizes``: ₹0.01 below ₹250 up to ₹5 above
₹20,000 today), and every tick carries that previous close, as Kite's do: the paper
exchange takes its circuit band and tick size from it. The simulator is pure: it produces
ticks; the feed service paces and publishes them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from alpha_panda.domain.clock import hhmm, ist_date, ist_ns, today_ist
from alpha_panda.domain.events import MarketTick
from alpha_panda.execution.market import TickSizes, nse_tick_sizes
from alpha_panda.marketdata.instruments import SIM_INSTRUMENTS, Instrument


def session_start_ns(day: date, at: str = "09:15") -> int:
    """Nanoseconds since the epoch (UTC) of ``at`` (HH:MM) IST on ``day``."""
    return ist_ns(day, hhmm(at))


class Sessions(Protocol):
    """When the market is open (``execution.market.MarketCalendar`` is one)."""

    def close_ns(self, ts_ns: int) -> int:
        """The close of the session of the IST day ``ts_ns`` falls on."""
        ...

    def next_open_ns(self, ts_ns: int) -> int:
        """``ts_ns`` if the market is open then, else the next session's open."""
        ...


@dataclass
class SimulatorState:
    """Where a simulator stands; enough to resume after a restart."""

    seq: int
    clock_ns: int
    prices: dict[int, int] = field(default_factory=dict)
    closes: dict[int, int] = field(default_factory=dict)  # previous session's, by token


class MarketSimulator:
    """Random-walk ticks for a set of instruments, seeded and reproducible.

    Each tick moves one instrument (round-robin): its fair price takes a normally
    distributed step (``volatility_bps`` of price) and the tick trades at the fair price
    rounded to the instrument's tick grid, so a move smaller than a tick adds up over the
    ticks instead of being lost to the rounding (many ticks trade at the last price, as on
    NSE, and the day's volatility is what was asked whatever the grid). It carries a random traded
    quantity and the previous session's close (at the first session: the start price); the simulated clock advances by ``step_ns`` per tick, and with ``sessions``
    jumps from each session's close to the next session's open (no tick at or after a
    close).
    """

    def __init__(
        self,
        *,
        instruments: Sequence[Instrument] = SIM_INSTRUMENTS,
        seed: int = 7,
        volatility_bps: float = 0.35,  # about 1.5% a session at 200 ticks/s over 25 instruments
        step_ns: int = 5_000_000,
        state: SimulatorState | None = None,
        start_ns: int | None = None,
        sessions: Sessions | None = None,
        tick_sizes: TickSizes | None = None,
    ) -> None:
        if not instruments:
            raise ValueError("the simulator needs at least one instrument")
        self._instruments = list(instruments)
        self._vol = volatility_bps / 10_000
        self._step_ns = step_ns
        clock = start_ns if start_ns is not None else session_start_ns(today_ist())
        self.state = state or SimulatorState(seq=0, clock_ns=clock)
        for inst in self._instruments:
            self.state.prices.setdefault(inst.instrument_token, inst.start_price)
            self.state.closes.setdefault(inst.instrument_token,
                                         self.state.prices[inst.instrument_token])
        self._tick_sizes = tick_sizes or nse_tick_sizes()
        self._grids = self._session_grids()
        # Seed from the position too, so a resumed simulator does not replay the same moves.
        self._rng = random.Random(f"{seed}:{self.state.seq}")
        self._fair: dict[int, float] = {}  # token -> fair price (paise), off the grid
        self._sessions = sessions
        self._close_ns = sessions.close_ns(self.state.clock_ns) if sessions else None

    @property
    def instruments(self) -> list[Instrument]:
        return list(self._instruments)

    def next_ticks(self, n: int) -> list[MarketTick]:
        """The next ``n`` ticks, in time order."""
        out: list[MarketTick] = []
        rng, state, insts = self._rng, self.state, self._instruments
        close, grids, closes, fair, gauss = (self._close_ns, self._grids, state.closes,
                                             self._fair, rng.gauss)
        vol = self._vol
        for _ in range(n):
            state.clock_ns += self._step_ns
            if close is not None and state.clock_ns >= close:
                close = self._next_session()
                grids = self._grids
            inst = insts[state.seq % len(insts)]
            token = inst.instrument_token
            grid = grids[token]
            x = fair.get(token)
            if x is None:  # (a new or resumed simulator: from the last traded price)
                x = state.prices[token]
            x = max(grid / 2, x + gauss(0.0, x * vol))
            fair[token] = x
            price = max(grid, round(x / grid) * grid)
            state.prices[token] = price
            qty = rng.randint(1, 50) * inst.lot_size
            state.seq += 1
            out.append(
                MarketTick(
                    instrument_token=token,
                    last_price=price,
                    ts=state.clock_ns,
                    volume=qty,  # traded in this tick, as on every feed (MarketTick)
                    last_quantity=qty,
                    close=closes[token],
                )
            )
        return out

    def _next_session(self) -> int:
        """Move the clock to the next session's open; that session's close."""
        sessions = self._sessions
        assert sessions is not None
        state = self.state
        state.clock_ns = sessions.next_open_ns(state.clock_ns)
        self._close_ns = sessions.close_ns(state.clock_ns)
        state.closes.update(state.prices)  # the last session's last prices: its closes
        self._grids = self._session_grids()
        return self._close_ns

    def _session_grids(self) -> dict[int, int]:
        """Each instrument's tick size for the session now (NSE's for the day and its close),
        its price moved onto that grid (the nearest step) when the tick has changed."""
        state = self.state
        day = ist_date(state.clock_ns)
        grids: dict[int, int] = {}
        for inst in self._instruments:
            token = inst.instrument_token
            grid = grids[token] = inst.tick_size or self._tick_sizes.at(day, state.closes[token])
            price = state.prices[token]
            if price % grid:
                state.prices[token] = max(grid, (price + grid // 2) // grid * grid)
        return grids
