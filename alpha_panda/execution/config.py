"""Configuration of the paper exchange (also the backtest's execution model)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import time
from decimal import Decimal
from typing import Any, Literal

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.execution.costs import CostModel, Segment
from alpha_panda.execution.market import CircuitBands, MarketCalendar, TickSizes

MarketHoursMode = Literal["off", "reject", "queue"]
SlippageModel = Literal["fixed", "depth"]


# Zerodha's intraday cut-off for equity MIS: open orders cancelled, positions squared off.
MIS_SQUAREOFF = time(15, 20)

@dataclass(frozen=True, kw_only=True)
class ExecutionConfig:
    """How the paper exchange fills orders. The defaults are the strategy YAML's defaults.

    - ``costs``: Zerodha charges on every fill (``cost_model``, default the newest card).
    - ``slippage_bps``: fixed slippage against the trader on market and stop-market fills.
    - ``slippage_model``: ``fixed`` (bps) or ``depth`` (walk the tick's 5-level book when
      it carries one, else fixed bps).
    - ``slippage_jitter_bps``: extra random slippage in [0, jitter] bps, seeded per order.
    - ``latency_ms``: an order reaches the book this long after its signal, in event time.
    - ``volume_participation``: at most this fraction of a tick's traded quantity per order
      and tick (partial fills); None = fill in full.
    - ``market_hours``: ``off`` (any time), ``reject`` (orders outside NSE hours/holidays are
      rejected) or ``queue`` (they reach the book at the next open).
    - ``mis_squareoff``: IST cut-off for MIS: open MIS orders are cancelled and positions
      squared off at the first tick at/after it; new MIS orders after it are rejected.
    - ``expire_day_orders``: orders still open at the close (15:30 IST) expire (an IOC stop
      not yet triggered too).
    - ``enforce_tick_size`` / ``price_bands``: reject prices off the instrument's tick grid
      (NSE's tick size on the day for its price band, ``tick_sizes``, default the packaged
      table) or limit/trigger prices outside its circuit band.
    - ``tick_history``: ticks kept per instrument to match orders that arrive late.
    - ``segments``: per-instrument rate-card segment (e.g. options); default from product.
    """

    costs: bool = True
    slippage_bps: int | Decimal = 0
    slippage_model: SlippageModel = "fixed"
    slippage_jitter_bps: int = 0
    latency_ms: int = 0
    volume_participation: Decimal | None = None
    market_hours: MarketHoursMode = "off"
    mis_squareoff: time | None = MIS_SQUAREOFF
    expire_day_orders: bool = True
    enforce_tick_size: bool = True
    price_bands: bool = True
    tick_history: int = 4096
    exchange: str = "NSE"
    segments: Mapping[int, Segment] = field(default_factory=dict)
    cost_model: CostModel | None = None
    calendar: MarketCalendar | None = None
    bands: CircuitBands | None = None
    tick_sizes: TickSizes | None = None

    def __post_init__(self) -> None:
        # YAML hands us floats (2.5): go through str so 2.5 bps is exactly 2.5
        try:
            object.__setattr__(self, "slippage_bps", Decimal(str(self.slippage_bps)))
            if self.volume_participation is not None:
                object.__setattr__(
                    self, "volume_participation", Decimal(str(self.volume_participation))
                )
        except ArithmeticError as exc:
            raise ConfigurationError(f"execution: not a number: {exc}") from exc
        if Decimal(self.slippage_bps) < 0 or self.slippage_jitter_bps < 0:
            raise ConfigurationError("execution: slippage_bps must be >= 0")
        if self.latency_ms < 0:
            raise ConfigurationError("execution: latency_ms must be >= 0")
        if self.market_hours not in ("off", "reject", "queue"):
            raise ConfigurationError(
                f"execution: market_hours must be off|reject|queue, got {self.market_hours!r}"
            )
        if self.slippage_model not in ("fixed", "depth"):
            raise ConfigurationError(f"execution: unknown slippage_model {self.slippage_model!r}")
        if self.volume_participation is not None and not (
            0 < Decimal(self.volume_participation) <= 1
        ):
            raise ConfigurationError("execution: volume_participation must be in (0, 1]")
        if self.tick_history < 1:
            raise ConfigurationError("execution: tick_history must be >= 1")

    @property
    def latency_ns(self) -> int:
        return self.latency_ms * 1_000_000


def execution_configs(configs: Sequence[Any]) -> dict[str, ExecutionConfig]:
    """Each strategy's ``execution:`` section (``StrategyConfig.execution``, whose fields
    are ``ExecutionConfig``'s) as the exchange's configuration, by strategy id."""
    return {c.id: ExecutionConfig(**c.execution.model_dump()) for c in configs}
