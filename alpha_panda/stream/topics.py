"""The topic taxonomy: one table, used by every backend and by ``alpha-panda topics list``.

Only ``market.ticks`` is shared. Everything else is namespaced by broker, so paper and
live never share a topic (and therefore never a consumer group reading it). Every
consumed topic ``T`` has a dead-letter topic ``T.dlq``. Ticks, signals and orders have the
same partition count and are placed by instrument (``partition_for``): co-partitioned.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.values import BROKERS, Broker

DAY_MS: Final = 24 * 3600 * 1000


class KeyKind(StrEnum):
    """What a topic's message key is made of (and so what is ordered together)."""

    INSTRUMENT = "instrument_token"
    STRATEGY_INSTRUMENT = "strategy_id:instrument_token"
    STRATEGY = "strategy_id"
    ORIGINAL = "original key"
    CONTROL = "control name"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    key: KeyKind
    retention_ms: int
    broker: Broker | None
    dlq: bool = False
    description: str = ""


MARKET_TICKS: Final = "market.ticks"

# suffix -> (partitions, key, retention days, description)
_BROKER_TOPICS: Final[dict[str, tuple[int, KeyKind, int, str]]] = {
    "signals.raw": (6, KeyKind.STRATEGY_INSTRUMENT, 7, "signals from strategies, before risk"),
    "signals.validated": (6, KeyKind.STRATEGY_INSTRUMENT, 30, "signals that passed risk"),
    "signals.rejected": (6, KeyKind.STRATEGY_INSTRUMENT, 30, "signals risk refused, with reason"),
    "orders.submitted": (6, KeyKind.STRATEGY_INSTRUMENT, 365, "orders accepted by the venue"),
    "orders.filled": (6, KeyKind.STRATEGY_INSTRUMENT, 365, "executions, partial and full"),
    "orders.rejected": (6, KeyKind.STRATEGY_INSTRUMENT, 365, "orders the venue refused"),
    "orders.cancelled": (6, KeyKind.STRATEGY_INSTRUMENT, 365, "cancelled and expired orders"),
    "pnl.snapshots": (3, KeyKind.STRATEGY, 30, "portfolio P&L snapshots"),
    "control": (1, KeyKind.CONTROL, 365, "operator controls (kill switch), in order"),
}
BROKER_TOPIC_SUFFIXES: Final = tuple(_BROKER_TOPICS)


def topic(broker: Broker | str, suffix: str) -> str:
    """``topic('paper', 'signals.raw') == 'paper.signals.raw'``; unknown parts are errors."""
    b = Broker(broker)
    if suffix not in _BROKER_TOPICS:
        raise ConfigurationError(f"unknown topic suffix {suffix!r}")
    return f"{b.value}.{suffix}"


def dlq_topic(name: str) -> str:
    return f"{name}.dlq"


def is_dlq(name: str) -> bool:
    return name.endswith(".dlq")


def strategy_instrument_key(strategy_id: str, instrument_token: int) -> str:
    return f"{strategy_id}:{instrument_token}"


def partition_for(key: bytes | None, partitions: int) -> int:
    """Stable partition for a key: CRC-32 of its instrument part.

    ``strategy:instrument`` keys are placed by the instrument alone, so signals and orders
    land in the partition number their instrument's ticks have (topics read together have
    the same partition count): a consumer-group member then owns whole instruments, which
    is what lets every stage scale out. Ordering per full key is preserved.
    """
    if key is None or partitions == 1:
        return 0
    _, sep, instrument = key.rpartition(b":")
    return zlib.crc32(instrument if sep else key) % partitions


class TopicRegistry:
    """Every topic of the system with its partitions, key and retention."""

    def __init__(self, *, tick_partitions: int = 6, partitions_scale: float = 1.0) -> None:
        specs: list[TopicSpec] = [
            TopicSpec(MARKET_TICKS, tick_partitions, KeyKind.INSTRUMENT, 1 * DAY_MS, None,
                      description="market data from the feed, shared by every broker"),
        ]
        for broker in BROKERS:
            for suffix, (parts, key, days, text) in _BROKER_TOPICS.items():
                n = max(1, round(parts * partitions_scale))
                specs.append(TopicSpec(f"{broker.value}.{suffix}", n, key, days * DAY_MS, broker,
                                       description=text))
        dlqs = [
            TopicSpec(dlq_topic(s.name), 1, KeyKind.ORIGINAL, 30 * DAY_MS, s.broker, dlq=True,
                      description=f"dead letters of {s.name}")
            for s in specs
        ]
        self._specs: dict[str, TopicSpec] = {s.name: s for s in specs + dlqs}

    def all(self) -> list[TopicSpec]:
        return list(self._specs.values())

    def get(self, name: str) -> TopicSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise ConfigurationError(f"unknown topic {name!r}; see `alpha-panda topics list`") from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def for_broker(self, broker: Broker | str) -> list[TopicSpec]:
        b = Broker(broker)
        return [s for s in self._specs.values() if s.broker is b]

    def partitions(self, name: str) -> int:
        return self.get(name).partitions


REGISTRY: Final = TopicRegistry()
