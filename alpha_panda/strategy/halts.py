"""The runner's halts: a strategy the trader (or a daily-loss stop) takes out of service.

A halted strategy still sees every tick, and what it decides goes nowhere; a halt with an
``until`` lapses at the first tick at or after it. A broker's stop of a strategy that trades
on at its other brokers is only noted in its status until then (``note_stop``). A mixin of
``StrategyRunner`` (its state is the runner's), separate as one concern of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alpha_panda.strategy.base import _Clock
from alpha_panda.strategy.slots import _NEVER

if TYPE_CHECKING:
    from alpha_panda.strategy.runner import StrategyStatus


class _Halts:
    """``StrategyRunner``'s halts (see the module's docstring)."""

    # the runner's state these read and keep (set in ``StrategyRunner.__init__``)
    _status: dict[str, StrategyStatus]
    _clock: _Clock
    _halted: set[str]
    _halt_until: dict[str, int]
    _note_until: dict[str, int]
    _next_lapse: int

    def lapse(self, now_ns: int) -> None:
        """Put back the strategies whose halt lapses by ``now_ns`` (``halt``'s ``until``)."""
        for sid, until in list(self._halt_until.items()):
            if until <= now_ns:
                self.halt(sid, False)
        for sid, until in list(self._note_until.items()):
            if until <= now_ns:
                del self._note_until[sid]
                status = self._status[sid]
                if status.state == "ACTIVE":
                    status.error = None
        self._next_lapse = min([*self._halt_until.values(), *self._note_until.values()],
                               default=_NEVER)

    def note_stop(self, strategy_id: str, broker: str, reason: str, until: int | None) -> None:
        """One broker's daily-loss stop of a strategy that trades on others too: that
        broker's risk manager holds it there, and it trades on at the others; its status
        says so (``error``) until ``until``."""
        status = self._status.get(strategy_id)
        if status is None or status.state != "ACTIVE" or until is None \
                or until <= self._clock.now_ns:
            return
        status.error = f"{reason} (on {broker}; it trades on at its other brokers)"
        self._note_until[strategy_id] = until
        self._next_lapse = min(self._next_lapse, until)

    def halt(self, strategy_id: str, active: bool = True, reason: str = "",
             until: int | None = None) -> bool:
        """The trader (or a daily-loss stop) takes a strategy out of service (``active``,
        for ``reason``; until the market time ``until``, if given: the first tick at or
        after it puts it back) or puts it back; False for a strategy this runner does not
        run. A strategy that failed stays failed."""
        status = self._status.get(strategy_id)
        if status is None:
            return False
        self._halt_until.pop(strategy_id, None)
        if active and until is not None:
            if until <= self._clock.now_ns:
                return True  # read after it lapsed (a restart's catch-up)
            self._halt_until[strategy_id] = until
        self._next_lapse = min([*self._halt_until.values(), *self._note_until.values()],
                               default=_NEVER)
        if active:
            self._halted.add(strategy_id)
            if status.state in ("ACTIVE", "HALTED"):
                status.state = "HALTED"
                status.error = reason or None
        else:
            self._halted.discard(strategy_id)
            if status.state == "HALTED":
                status.state = "ACTIVE"
                status.error = None
        return True
