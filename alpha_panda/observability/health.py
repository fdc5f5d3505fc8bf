"""Health of the running components: liveness and readiness.

Every long-running component (a stream processor, a feed, the API) implements
``HealthCheck``; the API's ``/ready`` is ready only when every registered component is.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

import msgspec


class State(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class ComponentStatus(msgspec.Struct, kw_only=True):
    name: str
    state: State
    ready: bool
    detail: str = ""
    lag: int | None = None
    processed: int = 0
    errors: int = 0


class HealthCheck(Protocol):
    @property
    def name(self) -> str: ...

    def health(self) -> ComponentStatus: ...


class HealthRegistry:
    """The set of components whose health the process reports."""

    def __init__(self) -> None:
        self._checks: dict[str, HealthCheck] = {}

    def register(self, check: HealthCheck) -> None:
        self._checks[check.name] = check

    def unregister(self, name: str) -> None:
        self._checks.pop(name, None)

    def snapshot(self) -> list[ComponentStatus]:
        return [check.health() for check in self._checks.values()]

    def ready(self) -> bool:
        statuses = self.snapshot()
        return bool(statuses) and all(s.ready for s in statuses)

    def live(self) -> bool:
        return all(s.state is not State.FAILED for s in self.snapshot())
