"""Risk limits and their configuration: global, per broker, per strategy.

Every limit is optional (None = no limit). ``RiskConfig.limits_for(broker, strategy)``
merges, field by field, the later level winning: built-in broker defaults (Kite's
account rate limits for ``zerodha``) < ``global_limits`` < ``brokers[broker]`` <
``strategies[strategy]`` < ``strategy_brokers[(strategy, broker)]``. Rate limits and the
``account_*`` limits are per account: they are read from ``limits_for(broker, None)``.
Amounts are int paise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal
from typing import Any, Final

from alpha_panda.domain.errors import ConfigurationError


class Reason:
    """The reason codes of ``SignalRejected``."""

    MAX_ORDER_QTY: Final = "MAX_ORDER_QTY"
    MAX_ORDER_NOTIONAL: Final = "MAX_ORDER_NOTIONAL"
    MAX_POSITION: Final = "MAX_POSITION"
    MAX_GROSS_EXPOSURE: Final = "MAX_GROSS_EXPOSURE"
    MAX_OPEN_ORDERS: Final = "MAX_OPEN_ORDERS"
    DAILY_LOSS: Final = "DAILY_LOSS"
    RATE_LIMIT_SECOND: Final = "RATE_LIMIT_SECOND"
    RATE_LIMIT_MINUTE: Final = "RATE_LIMIT_MINUTE"
    RATE_LIMIT_DAY: Final = "RATE_LIMIT_DAY"
    PRICE_BAND: Final = "PRICE_BAND"
    FAT_FINGER: Final = "FAT_FINGER"
    KILL_SWITCH: Final = "KILL_SWITCH"
    STRATEGY_HALTED: Final = "STRATEGY_HALTED"  # the trader took the strategy out of service
    CNC_SHORT: Final = "CNC_SHORT"  # a CNC sell beyond delivery holdings: always checked
    REDUCE_ONLY: Final = "REDUCE_ONLY"  # an exit that would open a position here: always
    EXCEEDS_INTENT: Final = "EXCEEDS_INTENT"  # beyond the strategy's intent: always
    INVALID: Final = "INVALID"


_FLAGS: Final = frozenset({"daily_loss_flatten", "account_daily_loss_flatten"})
ACCOUNT_ONLY: Final = frozenset({
    "account_max_gross_exposure", "account_daily_loss", "account_daily_loss_flatten",
    "orders_per_second", "orders_per_minute", "orders_per_day"})
"""Limits of the whole account: read at its level (global, broker) only, never a strategy's."""
# a limit that blocks everything at 0: surely "no limit" meant, which is leaving it out
_NOT_ZERO: Final = frozenset({"daily_loss", "account_daily_loss", "max_order_qty",
                              "max_order_notional", "fat_finger_qty", "fat_finger_notional",
                              "max_open_orders", "orders_per_second", "orders_per_minute",
                              "orders_per_day"})
# ... and of those, the ones that would stop exits too: a position could never be closed
_STOPS_EXITS: Final = frozenset({"max_open_orders", "orders_per_second", "orders_per_minute",
                                 "orders_per_day"})


@dataclass(frozen=True, kw_only=True)
class RiskLimits:
    """One level of limits; None means "not set here" (inherit, or no limit at all).

    - ``max_order_qty`` / ``max_order_notional``: one order's quantity / quantity × price,
      for an order that opens or adds to a position (one that only reduces it passes, as
      for the fat-finger limits: a limit never traps a position).
    - ``max_position``: quantity per instrument, each side at its worst: filled plus
      every open buy (a buy's check), or filled less every open sell (a sell's), so that
      resting orders on the other side free no room.
    - ``max_gross_exposure``: Σ |position| × last price of the strategy after the order,
      each position at its worst side (as ``max_position``: filled plus every open buy, or
      less every open sell).
    - ``daily_loss`` and the exposure limits stop orders that add risk: an order passes
      them only if it takes the position (filled, and market orders on their way) toward
      flat whichever other open orders fill (a sell against a resting buy that may never
      fill opens a short).
    - ``max_open_orders``: validated orders of the strategy not yet filled/cancelled/rejected.
    - ``daily_loss``: positive paise; once the day's net P&L (``portfolio.day``: today's
      fills, and what was carried into the day from the previous close) is at or below
      −daily_loss, only position-reducing orders pass (what is open stays open: a gate on
      new risk, not a stop-loss).
    - ``daily_loss_flatten``: true makes ``daily_loss`` a stop as well: at the first tick
      the strategy's day's P&L is at or below −daily_loss, the risk manager halts it for
      the rest of the IST day (its open orders cancelled) and closes its positions at
      market; it is back in service at the next day's first tick, unless the trader
      halted or resumed it meanwhile (``RiskEngine.stop_changes``).
    - ``price_band_percent``: a limit/trigger price must be within this % of the last price.
    - ``fat_finger_qty`` / ``fat_finger_notional``: obvious typos, rejected as FAT_FINGER.
    - ``orders_per_second/minute/day``: per account, sliding event-time windows (day = IST date).
    - ``account_max_gross_exposure`` / ``account_daily_loss``: the same for the whole account.
    - ``account_daily_loss_flatten``: the account's stop: the kill switch, with flatten,
      for the rest of the day (released at the next day's first tick, unless the trader
      set or released it meanwhile).
    """

    max_order_qty: int | None = None
    max_order_notional: int | None = None
    max_position: int | None = None
    max_gross_exposure: int | None = None
    max_open_orders: int | None = None
    daily_loss: int | None = None
    price_band_percent: Decimal | None = None
    fat_finger_qty: int | None = None
    fat_finger_notional: int | None = None
    orders_per_second: int | None = None
    orders_per_minute: int | None = None
    orders_per_day: int | None = None
    account_max_gross_exposure: int | None = None
    account_daily_loss: int | None = None
    daily_loss_flatten: bool | None = None
    account_daily_loss_flatten: bool | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], source: str = "risk") -> RiskLimits:
        """Build from a strategy file's ``risk:`` mapping; an unknown key is an error."""
        if not isinstance(raw, Mapping):  # (ALPHA_PANDA_RISK's JSON: a TypeError traceback)
            raise ConfigurationError(
                f"{source}: expected an object of limits, e.g. {{\"max_position\": 100}}, "
                f"got {raw!r}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigurationError(f"{source}: unknown risk limit(s) {unknown}; known: {sorted(names)}")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if value is None:
                values[key] = None
            elif key == "price_band_percent":
                try:
                    band = Decimal(str(value))
                except ArithmeticError:
                    band = Decimal(0)
                if isinstance(value, bool) or not band.is_finite() or band <= 0:
                    raise ConfigurationError(
                        f"{source}: price_band_percent must be a positive percentage of the "
                        f"last price (5: within ±5%), got {value!r}")
                values[key] = band
            elif key in _FLAGS:
                if not isinstance(value, bool):
                    raise ConfigurationError(f"{source}: {key} must be true or false")
                values[key] = value
            else:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigurationError(f"{source}: {key} must be a non-negative integer")
                if value == 0 and key in _NOT_ZERO:
                    stopped = ("every order, exits too (a position could never be closed)"
                               if key in _STOPS_EXITS else "every order that adds risk")
                    raise ConfigurationError(
                        f"{source}: {key} is 0, which would stop {stopped} from the first "
                        "one; leave it out for no limit (amounts in paise: 2000000 is ₹20,000)")
                values[key] = value
        return cls(**values)

    def merged(self, override: RiskLimits | None) -> RiskLimits:
        """These limits with every field ``override`` sets replaced."""
        if override is None:
            return self
        changes = {
            f.name: getattr(override, f.name)
            for f in fields(override)
            if getattr(override, f.name) is not None
        }
        return replace(self, **changes)


KITE_ACCOUNT_LIMITS: Final = RiskLimits(orders_per_second=10, orders_per_minute=400, orders_per_day=5000)
"""Kite Connect's order rate limits per account: always applied to ``zerodha``."""

BROKER_DEFAULTS: Final[dict[str, RiskLimits]] = {"zerodha": KITE_ACCOUNT_LIMITS}


@dataclass(frozen=True, kw_only=True)
class RiskConfig:
    """Limits at every level. For paper, set ``brokers={"paper": KITE_ACCOUNT_LIMITS}`` to
    emulate Kite's rate limits."""

    global_limits: RiskLimits = field(default_factory=RiskLimits)
    brokers: Mapping[str, RiskLimits] = field(default_factory=dict)
    strategies: Mapping[str, RiskLimits] = field(default_factory=dict)
    strategy_brokers: Mapping[tuple[str, str], RiskLimits] = field(default_factory=dict)

    def limits_for(self, broker: str, strategy_id: str | None) -> RiskLimits:
        """The effective limits of ``strategy_id`` on ``broker`` (None: account level)."""
        limits = BROKER_DEFAULTS.get(broker, RiskLimits()).merged(self.global_limits)
        limits = limits.merged(self.brokers.get(broker))
        if strategy_id is not None:
            limits = limits.merged(self.strategies.get(strategy_id))
            limits = limits.merged(self.strategy_brokers.get((strategy_id, broker)))
        if broker == "zerodha":
            # Kite's account limits cannot be configured away, only tightened
            for name in ("orders_per_second", "orders_per_minute", "orders_per_day"):
                cap = getattr(KITE_ACCOUNT_LIMITS, name)
                value = getattr(limits, name)
                if value is None or value > cap:
                    limits = replace(limits, **{name: cap})
        return limits

    def idle_stops(self, broker: str, strategy_ids: Iterable[str]) -> list[str]:
        """The daily-loss stops of ``broker`` set with no loss to stop at, each said: a
        ``daily_loss_flatten: true`` whose level has no ``daily_loss`` (none of the levels
        merged into it) never fires, and the trader counting on it was told nothing."""
        notes = []
        acct = self.limits_for(broker, None)
        if acct.account_daily_loss_flatten and acct.account_daily_loss is None:
            notes.append(f"{broker}: account_daily_loss_flatten is set but no "
                         "account_daily_loss: the account's daily-loss stop never fires")
        for sid in strategy_ids:
            lim = self.limits_for(broker, sid)
            if lim.daily_loss_flatten and lim.daily_loss is None:
                notes.append(f"{broker}: strategy {sid}: daily_loss_flatten is set but no "
                             "daily_loss: its daily-loss stop never fires")
        return notes
