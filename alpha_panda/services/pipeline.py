"""Wires every service of the pipeline onto one log: the composition root of ``run``.

``build_pipeline`` builds the handlers and stream processors for the services asked for
(all of them for ``alpha-panda run``; one for ``alpha-panda service NAME``). Zerodha's
engine is added only when live trading is switched on; without it, zerodha signals are
validated but never leave the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import structlog

from alpha_panda.domain.errors import ConfigurationError, StrategyConfigError
from alpha_panda.domain.values import Broker
from alpha_panda.execution.config import execution_configs
from alpha_panda.observability.health import HealthRegistry
from alpha_panda.portfolio import PositionLedger
from alpha_panda.readmodel.views import StrategyView
from alpha_panda.risk import RiskEngine, RiskStateStore
from alpha_panda.services.paper_engine import PaperEngineHandler, build_paper_engine
from alpha_panda.services.portfolio import PortfolioHandler, build_portfolio
from alpha_panda.services.risk_config import risk_config_for
from alpha_panda.services.risk_manager import RiskHandler, build_risk_manager
from alpha_panda.services.strategy_runner import SignalFanout, build_strategy_runner
from alpha_panda.settings import Settings
from alpha_panda.strategy.config import StrategyConfig, routed_to
from alpha_panda.strategy.runner import StrategyRunner
from alpha_panda.stream.log import Log
from alpha_panda.stream.runtime import ProcessorSettings, StreamProcessor

log = structlog.get_logger(__name__)

SERVICES = ("strategy-runner", "risk-manager", "paper-engine", "portfolio", "zerodha-engine")


@dataclass
class Pipeline:
    """Every running processor plus the handlers whose state the CLI and API show."""

    log: Log
    configs: list[StrategyConfig]
    config_errors: list[StrategyConfigError]
    brokers: list[str]
    health: HealthRegistry = field(default_factory=HealthRegistry)
    processors: list[StreamProcessor] = field(default_factory=list)
    runner: StrategyRunner | None = None
    fanout: SignalFanout | None = None
    risk: dict[str, RiskHandler] = field(default_factory=dict)
    paper: PaperEngineHandler | None = None
    portfolios: dict[str, PortfolioHandler] = field(default_factory=dict)

    def add(self, processors: Iterable[StreamProcessor]) -> None:
        for p in processors:
            self.processors.append(p)
            self.health.register(p)

    def strategy_views(self) -> list[StrategyView]:
        statuses = {s.id: s for s in self.runner.statuses()} if self.runner else {}
        views = []
        for c in self.configs:
            st = statuses.get(c.id)
            views.append(StrategyView(
                id=c.id, strategy=c.strategy, instruments=list(c.instruments),
                brokers=[str(b) for b in c.brokers], params=dict(c.params),
                status=st.state if st else ("ACTIVE" if c.enabled else "DISABLED"),
                error=st.error if st else None, signals=st.signals if st else 0,
                cancels_ignored=st.cancels_ignored if st else 0,
                dropped_after_exit=st.dropped_after_exit if st else 0,
                exit_at=f"{c.exit_at:%H:%M}" if c.exit_at else None, source=c.source or ""))
        views += [StrategyView(id=e.source, strategy="?", instruments=[], brokers=[], params={},
                               status="INVALID", error=str(e), source=e.source)
                  for e in self.config_errors]
        return views


def brokers_in_use(configs: Sequence[StrategyConfig]) -> list[str]:
    used = {str(b) for c in configs for b in c.brokers}
    return [b.value for b in Broker if b.value in used] or [Broker.PAPER.value]




def build_pipeline(
    settings: Settings,
    log_: Log,
    configs: list[StrategyConfig],
    config_errors: list[StrategyConfigError],
    *,
    services: Sequence[str] = SERVICES,
    brokers: Sequence[str] | None = None,
) -> Pipeline:
    unknown = set(services) - set(SERVICES)
    if unknown:
        raise ConfigurationError(f"unknown services {sorted(unknown)}; expected {list(SERVICES)}")
    active = [c for c in configs if c.enabled]
    used = list(brokers) if brokers else brokers_in_use(active)
    p = Pipeline(log=log_, configs=configs, config_errors=config_errors, brokers=used)
    rt = settings.runtime
    proc = ProcessorSettings(batch_size=rt.batch_size, ready_max_lag=rt.ready_max_lag,
                             ready_lag_grace=rt.ready_lag_grace_s)
    if "strategy-runner" in services:
        p.runner = StrategyRunner(active, initial_cash=settings.paper.initial_cash)
        processors, p.fanout = build_strategy_runner(log_, p.runner, used, proc)
        p.add(processors)
    for broker in used:
        routed = routed_to(active, broker)
        if "risk-manager" in services:
            limits = risk_config_for(settings, broker, active)
            for note in limits.idle_stops(broker, routed):
                log.warning("risk.stop_never_fires", detail=note)
            engine = RiskEngine(limits, broker=broker, store=_risk_store(settings))
            processor, p.risk[broker] = build_risk_manager(log_, broker, engine, proc)
            p.add([processor])
        if "portfolio" in services:
            if broker == Broker.ZERODHA.value:
                # the live account's cash is Kite's (``FundsReported``), never paper money
                ledger = PositionLedger(0, broker=broker, strategy_cash=dict.fromkeys(routed, 0),
                                        broker_funds=True)
            else:
                cash = settings.paper.initial_cash
                ledger = PositionLedger(initial_cash=cash * max(1, len(routed)), broker=broker,
                                        strategy_cash=dict.fromkeys(routed, cash))
            processor, p.portfolios[broker] = build_portfolio(
                log_, broker, ledger, proc, snapshot_interval_s=settings.runtime.snapshot_interval_s)
            p.add([processor])
    if "paper-engine" in services and Broker.PAPER.value in used:
        processor, p.paper = build_paper_engine(log_, execution_configs(active), proc)
        p.add([processor])
    if "zerodha-engine" in services and Broker.ZERODHA.value in used:
        p.add(_zerodha_engine(settings, log_, proc))
    return p


def _risk_store(settings: Settings) -> RiskStateStore | None:
    """Shared, atomic risk counters (rate limits, kill switch) when services run as several
    processes: on the Redis the read model uses. One process: in memory (the default)."""
    if not settings.cache_url.startswith(("redis://", "rediss://")):
        return None
    from alpha_panda.adapters.redis.risk_state import RedisRiskStateStore

    return RedisRiskStateStore(settings.cache_url, prefix="ap:risk:")


def _zerodha_engine(settings: Settings, log_: Log, proc: ProcessorSettings) -> list[StreamProcessor]:
    if not settings.zerodha.live_enabled:
        log.warning("zerodha.live_disabled",
                    detail="strategies route to zerodha, but live trading is off "
                           "(ALPHA_PANDA_ZERODHA__LIVE_ENABLED=true to enable): their zerodha "
                           "signals are risk-checked and never sent")
        return []
    from alpha_panda.services.zerodha_engine import build_zerodha_engine

    return [build_zerodha_engine(settings, log_, proc)]
