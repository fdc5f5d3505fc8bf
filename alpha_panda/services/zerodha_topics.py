"""The zerodha trading engine's topics, its consumer group and its hard-isolation check.

Apart from the engine so that the engine, its stream processor and its cancellations share
them without importing one another.
"""

from __future__ import annotations

from collections.abc import Sequence

from alpha_panda.adapters.zerodha.order_sync import BROKER
from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.stream.topics import topic

SIGNALS_TOPIC = topic(BROKER, "signals.validated")
CONTROL_TOPIC = topic(BROKER, "control")
GROUP = "zerodha.trading-engine"


def check_topics(topics: Sequence[str]) -> None:
    """Refuse any subscription outside ``zerodha.*`` (hard isolation)."""
    bad = [t for t in topics if not t.startswith(f"{BROKER}.")]
    if bad:
        raise ConfigurationError(f"the zerodha trading engine may consume only zerodha.* topics, "
                                 f"not {bad}")
