"""Builds the risk engine's limits from settings and the strategies' ``risk:`` sections.

Settings (``ALPHA_PANDA_RISK`` as JSON, or a settings file) take this shape, every level
optional and merged from general to specific:

    {"global": {...limits}, "brokers": {"paper": {...}, "zerodha": {...}}}

Strategy files add their own ``risk:`` limits. Kite's account rate limits always apply to
``zerodha``; for ``paper`` only with ``paper.emulate_kite_limits``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.values import BROKERS
from alpha_panda.risk import KITE_ACCOUNT_LIMITS, RiskConfig, RiskLimits
from alpha_panda.settings import Settings
from alpha_panda.strategy.config import StrategyConfig, routed_to

DEFAULT_GLOBAL: dict[str, Any] = {
    # A single order worth more than ₹50 lakh is almost certainly a typo.
    "fat_finger_notional": 50_00_000_00,
}


def risk_config_for(settings: Settings, broker: str, configs: Sequence[StrategyConfig]) -> RiskConfig:
    raw = settings.risk
    unknown = set(raw) - {"global", "brokers"}
    if unknown:
        raise ConfigurationError(f"risk settings: unknown sections {sorted(unknown)}; "
                                 "expected 'global' and 'brokers'")
    section = raw.get("global", {})
    global_limits = RiskLimits.from_mapping(
        {**DEFAULT_GLOBAL, **section} if isinstance(section, Mapping) else section,
        source="risk.global")
    by_broker = raw.get("brokers", {})
    if not isinstance(by_broker, Mapping):
        raise ConfigurationError('risk.brokers: expected an object of each broker\'s limits, '
                                 f'e.g. {{"paper": {{"max_position": 100}}}}, got {by_broker!r}')
    # a misspelt broker's limits would apply to no broker at all, silently
    misspelt = sorted(set(by_broker) - {b.value for b in BROKERS})
    if misspelt:
        raise ConfigurationError(f"risk.brokers: unknown broker(s) {misspelt}; known: "
                                 f"{sorted(b.value for b in BROKERS)}")
    brokers = {b: RiskLimits.from_mapping(v, source=f"risk.brokers.{b}")
               for b, v in by_broker.items()}
    if broker == "paper" and settings.paper.emulate_kite_limits:
        brokers["paper"] = KITE_ACCOUNT_LIMITS.merged(brokers.get("paper"))
    strategies = {c.id: RiskLimits.from_mapping(c.risk, source=f"{c.source or c.id}: risk")
                  for c in configs if c.risk}
    return RiskConfig(global_limits=global_limits, brokers=brokers, strategies=strategies)


def idle_stops(settings: Settings, configs: Sequence[StrategyConfig]) -> list[str]:
    """``RiskConfig.idle_stops`` of every broker the strategies trade on (paper when none)."""
    brokers = sorted({str(b) for c in configs for b in c.brokers} or {"paper"})
    return [note for broker in brokers for note in risk_config_for(
        settings, broker, configs).idle_stops(broker, routed_to(configs, broker))]
