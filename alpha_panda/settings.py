"""Settings: pydantic-settings, frozen, one section per part.

Environment variables use the prefix ``ALPHA_PANDA_`` and ``__`` between section and field,
e.g. ``ALPHA_PANDA_API__PORT=8080`` or ``ALPHA_PANDA_KAFKA__BOOTSTRAP_SERVERS=host:9092``.
Load once in ``services/`` and pass each component only its own section.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from alpha_panda.adapters.kafka.config import KafkaSettings
from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.domain.clock import hhmm
from alpha_panda.marketdata.instruments import BY_TOKEN


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


EMPTY_HOST = ("empty, which listens on every interface (the API sets kill switches and "
              "cancels orders): 127.0.0.1 for this machine only, 0.0.0.0 for every interface")


class ApiSettings(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)

    @field_validator("host")
    @classmethod
    def _named(cls, value: str) -> str:
        # (ALPHA_PANDA_API__HOST= left empty in a unit file put the API on 0.0.0.0 and ::)
        if not value.strip():
            raise ValueError(EMPTY_HOST)
        return value


class SimulatorSettings(_Section):
    """The market simulator: random walks on NSE's tick sizes over simulated NSE sessions."""

    rate: PositiveFloat = 200.0
    """Ticks per second across all instruments (wall clock)."""
    seed: int = 7
    daily_volatility_pct: PositiveFloat = 1.5
    """Standard deviation of an instrument's move over a whole session (09:15-15:30), in %
    of price: an NSE large cap's is 1-2%. Each tick's move follows from it, the rate and
    the time scale (``per_tick_bps``)."""
    volatility_bps: PositiveFloat | None = None
    """Standard deviation of one tick's move, in basis points of price, instead of
    ``daily_volatility_pct`` (e.g. 8 for a lively demo: about 30% a session at 200 ticks/s)."""

    def per_tick_bps(self, instruments: int, session_seconds: int) -> float:
        """One tick's move, in bps: ``volatility_bps``, else the daily volatility spread
        over the ticks each of ``instruments`` gets in a session of ``session_seconds``
        (random-walk moves add up as the square root of their number)."""
        if self.volatility_bps is not None:
            return self.volatility_bps
        ticks = session_seconds * self.rate / self.time_scale / instruments
        return float(self.daily_volatility_pct * 100 / math.sqrt(max(1.0, ticks)))
    session_start: str = "09:15"
    """IST time the simulated clock starts at on the first day (today, or the next trading
    day on a weekend or holiday), whatever the hour, so the market is open at any hour.
    Sessions follow the exchange calendar (``data/nse_holidays.json``): at 15:30 the clock
    moves on to the next trading day's 09:15, prices carried over."""
    time_scale: PositiveFloat = 1.0
    """Simulated seconds per wall second."""
    instruments: list[int] | None = None
    """Tokens to simulate (default: the 25 built-in NSE instruments)."""

    @field_validator("instruments")
    @classmethod
    def _simulated(cls, value: list[int] | None) -> list[int] | None:
        # checked here, not when the feed starts: `run` began, then stopped with
        # "services failed: feed: ValueError(...)", and `preflight` had passed it
        unknown = [t for t in value or [] if t not in BY_TOKEN]
        if unknown:
            raise ValueError(f"tokens the simulator does not have: "
                             f"{', '.join(map(str, unknown))} (it has {', '.join(map(str, BY_TOKEN))})")
        return value

    @field_validator("session_start")
    @classmethod
    def _is_hh_mm(cls, value: str) -> str:
        try:
            hhmm(value)
        except ValueError:
            raise ValueError(f"expected an IST time as HH:MM, got {value!r}") from None
        return value


class PaperSettings(_Section):
    # (0 or less was taken: a backtest's max_drawdown_pct then came out as 20245.98, the
    # drawdown's share of no capital)
    initial_cash: PositiveInt = 1_000_000_00
    """Starting cash per strategy, in paise (default ₹10,00,000)."""
    emulate_kite_limits: bool = False


class RuntimeSettings(_Section):
    batch_size: PositiveInt = 5000
    """Most records a service takes in one batch (one commit). Batches are only this big
    when a service is behind (a fast replay); measured on the embedded log, 5,000 ran a
    replay 30% faster than 2,000 (fewer commits and snapshots per tick)."""
    snapshot_interval_s: PositiveFloat = 1.0
    """Event-time seconds between P&L snapshots when nothing is filled."""
    readmodel_interval_s: PositiveFloat = 0.25
    """Wall-clock seconds between read-model (cache) refreshes."""
    ready_max_lag: PositiveInt | None = 10_000
    """A service more records than this behind the end of its topics for
    ``ready_lag_grace_s`` is not ready (``/ready`` 503), however long it has run: at 200
    ticks a second, 10,000 is 50 s of the market. None: readiness never looks at the lag
    once caught up."""
    ready_lag_grace_s: PositiveFloat = 30.0
    """Seconds a service may stay past ``ready_max_lag`` (a burst, the open) before it is
    not ready; also how long a batch may run (the lag not read meanwhile) before it is not."""
    stall_warn_s: float = Field(default=2.0, ge=0)
    """Seconds one call of a strategy may hold the event loop (every service of the process
    waits meanwhile) before ``loop.stalled`` names it; other code is named at 30 s
    (``observability.stalls``). 0: not watched; else at least 0.5 (two heartbeats)."""

    @field_validator("stall_warn_s")
    @classmethod
    def _watchable(cls, value: float) -> float:
        if 0 < value < 0.5:
            raise ValueError(f"0 (not watched) or at least 0.5 seconds, got {value:g}")
        return value


class Settings(BaseSettings):
    """Everything configurable, with the embedded defaults ``make run`` uses."""

    model_config = SettingsConfigDict(
        env_prefix="ALPHA_PANDA_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    data_dir: Path = Path("data")
    log: str = "embedded"
    """``embedded`` (SQLite file in data_dir), ``memory``, ``sqlite:PATH`` or ``kafka://HOST:PORT``."""
    feed: str = "sim"
    """``sim``, ``replay:PATH`` or ``kite``."""
    strategies_dir: Path | None = None
    """YAML strategy files (default: the samples shipped with the package)."""
    cache_url: str = "memory"
    """``memory``, ``sqlite:PATH`` or ``redis://HOST:PORT/DB``. (``service`` processes on the
    embedded log share ``DATA_DIR/readmodel.sqlite`` in place of ``memory``.)"""
    database_url: str | None = None
    """Config store (SQLAlchemy URL); default: SQLite file in data_dir."""
    log_format: Literal["console", "json"] = "console"
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING, ERROR or CRITICAL, in any case."""
    tracing: Literal["none", "console", "otlp"] = "none"

    api: ApiSettings = ApiSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    paper: PaperSettings = PaperSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    risk: dict[str, Any] = {}
    """Risk limits: global, per broker and per strategy (see docs/risk in README)."""
    kafka: KafkaSettings = KafkaSettings()
    zerodha: ZerodhaSettings = ZerodhaSettings()

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        # checked here, with the other variables: where the logging is set up, a level it
        # does not know ended `preflight`, `run` and `service` in a traceback
        if isinstance(logging.getLevelName(value.upper()), int):  # (WARN too)
            return value.upper()
        raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")

    def redacted(self) -> dict[str, Any]:
        """The effective configuration with secrets removed, for the start-up log."""
        data: dict[str, Any] = _redact(self.model_dump(mode="json"))
        return data


_SECRET_MARKERS = ("secret", "token", "password", "key")


def _redact(value: Any, name: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, name) for v in value]
    if value and any(m in name.lower() for m in _SECRET_MARKERS):
        return "***"
    return value
