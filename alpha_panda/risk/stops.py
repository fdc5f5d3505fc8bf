"""The engine's daily-loss stops (``daily_loss_flatten``): set when a day's loss reaches
the limit, released at the next IST day unless the trader holds the halt.

A mixin of ``RiskEngine`` (it reads and writes the engine's state), apart from the pre-trade
rules: the risk manager service asks for these after each tick and tells the control topic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alpha_panda.domain.values import format_rupees
from alpha_panda.portfolio.day import day_start_ns

if TYPE_CHECKING:
    from alpha_panda.portfolio.day import DayBook
    from alpha_panda.portfolio.ledger import PositionLedger
    from alpha_panda.risk.limits import RiskConfig, RiskLimits


def _has_stops(config: RiskConfig) -> bool:
    """Whether some level sets ``daily_loss_flatten`` or ``account_daily_loss_flatten``."""
    levels = [config.global_limits, *config.brokers.values(), *config.strategies.values(),
              *config.strategy_brokers.values()]
    return any(lim.daily_loss_flatten or lim.account_daily_loss_flatten for lim in levels)


class DailyLossStops:
    """The daily-loss-stop part of ``RiskEngine`` (a mixin: it uses the engine's state)."""

    if TYPE_CHECKING:
        _day: DayBook
        _last: dict[int, int]
        _halted: set[str]
        _stopped: dict[str | None, tuple[int, bool]]
        _released: list[str | None]

        @property
        def kill_switch(self) -> bool: ...
        def set_kill_switch(self, active: bool) -> None: ...
        def halt_strategy(self, strategy_id: str, active: bool = True) -> None: ...
        def day_pnl(self, strategy_id: str | None = None) -> int: ...
        def _book(self) -> PositionLedger: ...
        def _strategy_limits(self, strategy_id: str) -> RiskLimits: ...
        def _account_limits(self) -> RiskLimits: ...

    def stop_changes(self) -> tuple[list[str | None], list[tuple[str | None, str]]]:
        """The daily-loss stops (``daily_loss_flatten``) to release, set on an earlier day,
        and those reached now, each with what it says: scopes, a strategy id or None for
        the account. Each is taken as done; ask after each tick (``on_tick``)."""
        stopped = self._stopped
        day_lo = self._day.day_lo
        release, self._released = self._released, []
        reached: list[tuple[str | None, str]] = []
        acct = self._account_limits()
        if acct.account_daily_loss_flatten and acct.account_daily_loss is not None \
                and None not in stopped:
            self._reached(None, acct.account_daily_loss, reached)
        for sid in self._book().strategies():
            lim = self._strategy_limits(sid)
            if lim.daily_loss_flatten and lim.daily_loss is not None and sid not in stopped:
                self._reached(sid, lim.daily_loss, reached)
        for scope, _ in reached:
            stopped[scope] = (day_lo, self._unheld(scope))
        return release, reached

    def _unheld(self, scope: str | None) -> bool:
        """Whether a stop of ``scope`` now is this engine's to release: not if the trader
        already holds it (halted the strategy, or set the kill switch), whose halt or
        switch is theirs to end, the next day too."""
        return not self.kill_switch if scope is None else scope not in self._halted

    def stop_released_by_engine(self, scope: str | None) -> bool:
        """Whether the stop of ``scope`` set today ends at the next day's first tick."""
        stop = self._stopped.get(scope)
        return stop is not None and stop[1]

    def _roll(self, ts: int) -> None:
        """A new IST day (``ts >= day_end_ns``): the day's P&L starts afresh, and the stops
        of an earlier day are released at once (a signal of the new day may come before
        its first tick), to be told by ``stop_changes``."""
        self._day.roll(ts, self._last)
        stopped = self._stopped
        for scope, (day, auto) in list(stopped.items()):
            if day < self._day.day_lo:
                del stopped[scope]
                if auto:
                    if scope is None:
                        self.set_kill_switch(False)
                    else:
                        self.halt_strategy(scope, False)
                    self._released.append(scope)

    def _reached(self, scope: str | None, limit: int,
                 reached: list[tuple[str | None, str]]) -> None:
        pnl = self.day_pnl(scope)
        if pnl <= -limit:
            why = (f"daily loss {format_rupees(-pnl)} reached the limit {format_rupees(limit)}: "
                   "stopped for the day, positions closed at market")
            reached.append((scope, why))

    @property
    def day_end_ns(self) -> int:
        """The end of the current IST day (0 before any event): a stop's ``until``."""
        return self._day.day_hi

    def note_stop(self, scope: str | None, active: bool, at_ns: int | None, *,
                  by_risk: bool) -> bool:
        """A halt of ``scope`` (None: the kill switch) read from the control topic: this
        engine's own stop or release (``by_risk``), which a rebuild learns this way, or
        the trader's, after which a stop of the day is the trader's to end. False for one
        of this engine's read after a newer one (a stop of a day already over, a release
        of an earlier day's stop once today's is set): it must change nothing."""
        stopped = self._stopped
        current = stopped.get(scope)
        if not by_risk:
            if current is not None:
                stopped[scope] = (current[0], False)
            return True
        if at_ns is None:
            return True
        day = day_start_ns(at_ns)
        if active:
            if day < self._day.day_lo:
                return False  # its day is over (and released): a restart reads it late
            if current is None or current[0] < day:
                stopped[scope] = (day, self._unheld(scope))  # (a rebuild: in log order)
            return True
        if current is not None and current[0] >= day:
            return False  # a stop of the release's own day stands
        stopped.pop(scope, None)
        return True
