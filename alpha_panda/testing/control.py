"""A ``Control`` for API and dashboard tests: records what it is told, can refuse."""

from __future__ import annotations

from alpha_panda.api.control import CancelRecord, HaltRecord, KillSwitchRecord


class RecordingControl:
    """The pipeline's ``Control`` as far as the API can tell; ``set_at`` of every switch is
    ``set_at`` given here, and each cancel is asked one nanosecond after the one before
    (the first at ``set_at``), as each has its own time on the real clock."""

    def __init__(self, set_at: int = 1) -> None:
        self.calls: list[tuple[str, bool, bool]] = []
        self.cancels: list[tuple[str, str]] = []  # (broker, order_id) asked to cancel
        self.halts: list[tuple[str, str, bool, bool]] = []  # (broker, strategy, active, flatten)
        self.refuse: Exception | None = None
        self._set_at = set_at

    async def set_kill_switch(self, broker: str, active: bool, flatten: bool) -> KillSwitchRecord:
        if self.refuse is not None:
            raise self.refuse
        self.calls.append((broker, active, flatten))
        return KillSwitchRecord(active, flatten and active, self._set_at)

    async def kill_switch(self, broker: str) -> KillSwitchRecord | None:
        for b, active, flatten in reversed(self.calls):
            if b == broker:
                return KillSwitchRecord(active, flatten and active, self._set_at)
        return None

    async def cancel_order(self, broker: str, order_id: str) -> CancelRecord:
        if self.refuse is not None:
            raise self.refuse
        asked = self._set_at + len(self.cancels)
        self.cancels.append((broker, order_id))
        return CancelRecord(order_id, asked, self._set_at)

    async def halt_strategy(self, broker: str, strategy_id: str, active: bool,
                            flatten: bool) -> HaltRecord:
        if self.refuse is not None:
            raise self.refuse
        self.halts.append((broker, strategy_id, active, flatten and active))
        return HaltRecord(strategy_id, active, flatten and active, self._set_at, self._set_at)
