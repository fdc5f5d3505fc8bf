"""The guards of live trading: whether the zerodha side runs on a log, and the refusals of
a feed that is not the market's where real Kite orders would follow its prices.

Apart from the run (``services.app``): the preflight checks ask them too, before anything runs.
"""

from __future__ import annotations

from typing import Any

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.values import Broker
from alpha_panda.settings import Settings
from alpha_panda.stream.log import Log


def check_live_feed(settings: Settings, configs: list[Any], *, alone: bool = False) -> None:
    """Refuse live trading on prices that are not the market's: with the switch on, a
    strategy that routes to zerodha sends real Kite orders for what the feed shows it, so
    the simulator's random walk (or an old day's replay) would trade real money.

    ``alone``: the feed runs as its own process (``service feed``), so the strategies it
    loaded need not be those the strategy runner of another process trades. Given none
    (the samples are the default) nor a config store, it cannot tell, and is refused too.
    """
    if not settings.zerodha.live_enabled or settings.feed == "kite":
        return
    # (a strategy switched off trades nowhere; the zerodha side that runs for the orders
    # the engine placed on the log is refused such a feed once the log is open)
    live = _routing_to_zerodha(configs)
    if live:
        raise ConfigurationError(
            f"live trading is on (ALPHA_PANDA_ZERODHA__LIVE_ENABLED) and {', '.join(live)} "
            f"route{'s' if len(live) == 1 else ''} to zerodha, but the feed is "
            f"{settings.feed}, not the market: their real Kite orders would follow its "
            "prices. Run with --feed kite, or switch live trading off to trade on paper")
    if alone and settings.strategies_dir is None and not settings.database_url:
        raise ConfigurationError(
            "live trading is on (ALPHA_PANDA_ZERODHA__LIVE_ENABLED) and the feed is "
            f"{settings.feed}, not the market: a strategy runner of another process that "
            "routes to zerodha would send real Kite orders on its prices, and this feed "
            "cannot tell what it trades (no --strategies, ALPHA_PANDA_STRATEGIES_DIR or "
            "ALPHA_PANDA_DATABASE_URL). Run the feed with --feed kite, give it the runner's "
            "strategies, or switch live trading off to trade on paper")


def _routing_to_zerodha(configs: list[Any]) -> list[str]:
    """The ids of the enabled strategies that route to zerodha."""
    return [c.id for c in configs
            if c.enabled and Broker.ZERODHA.value in {str(b) for b in c.brokers}]


# Where the zerodha engine records what it placed at Kite: a log with any is one whose
# orders (open, or positions they left) the engine must go on tracking and flattening.
_ZERODHA_PLACED = "zerodha.orders.submitted"


def zerodha_routed(settings: Settings, configs: list[Any]) -> str | None:
    """With live trading on, which enabled strategies route to zerodha (None: none, or off)."""
    if not settings.zerodha.live_enabled:
        return None
    routed = _routing_to_zerodha(configs)
    if routed:
        return f"{', '.join(routed)} route{'s' if len(routed) == 1 else ''} to zerodha"
    return None


async def zerodha_engine_reason(settings: Settings, configs: list[Any], log_: Log) -> str | None:
    """Why the zerodha side (its engine, risk manager and portfolio) runs live on this log,
    or None when it need not: live trading is off, or no enabled strategy routes to
    zerodha and the engine never placed an order on this log.

    A log where it placed orders keeps it running even when nothing routes there any
    more (a strategy moved to paper, or switched off, with a position open at Kite):
    without it, ``kill --flatten`` and ``halt --flatten`` would close nothing and the open
    orders' fills would go unrecorded."""
    routed = zerodha_routed(settings, configs)
    if routed is not None or not settings.zerodha.live_enabled:
        return routed
    if any((await log_.end_offsets(_ZERODHA_PLACED)).values()):
        return ("no enabled strategy routes to zerodha, but the engine has placed orders on "
                "this log: it runs so that what they left open at Kite is tracked and a kill "
                "switch or halt with flatten closes it (switch live trading off to run without it)")
    return None


def refuse_sim_beside(settings: Settings, reason: str | None) -> None:
    """Refuse a feed that is not the market's where the zerodha side runs on the log for
    ``reason`` (its placed orders: no strategy routing there, ``check_live_feed`` let it
    by): its risk manager and portfolio value the positions held at Kite at the feed's
    prices, and a daily-loss stop reached on them cancels and flattens at Kite for real."""
    if reason is None:
        return
    raise ConfigurationError(
        "live trading is on (ALPHA_PANDA_ZERODHA__LIVE_ENABLED) and the zerodha engine runs "
        f"on this log ({reason}), but the feed is {settings.feed}, not the market: "
        "zerodha's risk manager would value what is held at Kite at its prices, and a "
        "daily-loss stop with flatten reached on them would sell it for real. Run with "
        "--feed kite, "
        "or switch live trading off to trade on paper")
