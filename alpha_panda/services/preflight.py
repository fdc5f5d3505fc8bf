"""``alpha-panda preflight``: every readiness check, before money is at stake."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from alpha_panda.domain.errors import AlphaPandaError
from alpha_panda.settings import Settings
from alpha_panda.stream.topics import REGISTRY


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


_LOADED: dict[int, tuple[list[Any], list[Any]]] = {}


def _load(s: Settings) -> tuple[list[Any], list[Any]]:
    """The strategies, loaded once for all the checks of one ``run_checks`` (with a config
    store, a load writes its rows)."""
    from alpha_panda.services.strategy_configs import load_strategies

    loaded = _LOADED.get(id(s))
    if loaded is None:
        loaded = _LOADED[id(s)] = load_strategies(s)
    return loaded


async def _strategies(s: Settings) -> str:
    configs, errors = _load(s)
    if errors:
        raise AlphaPandaError("; ".join(str(e) for e in errors))
    return f"{len(configs)} strategies load: {', '.join(c.id for c in configs)}"


async def _risk(s: Settings) -> str:
    """The limits ``run`` would build for each broker that trades (a strategy file's own
    errors are the strategies check's)."""
    from alpha_panda.services.risk_config import risk_config_for
    from alpha_panda.strategy.config import routed_to

    configs, _ = _load(s)
    brokers = ["paper", "zerodha"] if s.zerodha.live_enabled else ["paper"]
    idle: list[str] = []  # (building each broker's limits checks them)
    for broker in brokers:
        idle += risk_config_for(s, broker, configs).idle_stops(broker, routed_to(configs, broker))
    limited = [c.id for c in configs if c.risk]
    return (f"limits valid for {' and '.join(brokers)}"
            + (f"; own limits: {', '.join(limited)}" if limited else "")
            + "".join(f"; warning: {note}" for note in idle))


async def _log(s: Settings) -> str:
    from alpha_panda.services.logs import embedded_file, open_log

    path = embedded_file(s.log, s.data_dir)
    if path is not None and not path.is_file():
        # Not created here: a check run from the wrong directory would leave an empty log
        # there and call it fine.
        base = path.resolve().parent
        while not base.exists() and base != base.parent:  # the nearest directory there is
            base = base.parent
        try:  # a file written and removed: permission bits do not tell root (or /proc)
            with tempfile.TemporaryFile(dir=base):
                pass
        except OSError as exc:
            raise AlphaPandaError(f"no log at {path.resolve()}, and it cannot be created there "
                                  f"({base}: {exc.strerror or exc})") from None
        return (f"{s.log}: no log at {path.resolve()} yet (the first run creates it; if the "
                "system has run before, is this its data directory?)")
    log_ = open_log(s.log, s.data_dir, kafka=s.kafka)
    await log_.start()
    try:
        existing = await log_.list_topics()
    finally:
        await log_.close()
    missing = [t.name for t in REGISTRY.all() if t.name not in existing]
    if missing and s.log.startswith("kafka://"):
        raise AlphaPandaError(f"{len(missing)} topics missing (run `alpha-panda topics bootstrap`)")
    return f"{s.log}: reachable, {len(existing)} topics"


async def _lock(s: Settings) -> str:
    """Whether another process runs on this embedded log now (``run`` would be refused),
    looked up without taking a lock."""
    from alpha_panda.adapters.sqlite_log.lock import lock_holders
    from alpha_panda.services.app import RunOptions, SystemRun
    from alpha_panda.services.logs import embedded_file
    from alpha_panda.services.pipeline import SERVICES

    path = embedded_file(s.log, s.data_dir)
    if path is None:
        return f"{s.log.split(':', 1)[0]}: no lock (processes share it by consumer groups)"
    holders = lock_holders(path)
    if not holders:
        return f"free: no process runs on {path.resolve()}"
    needed = set(SystemRun(s, RunOptions()).services_to_lock())
    if await _zerodha_engine_reason(s) is not None:
        needed.add("zerodha-engine")
    order = ["feed", *SERVICES]  # as `run` takes them
    by: dict[str, list[str]] = {}
    for h in sorted(holders, key=lambda h: order.index(h.service) if h.service in order
                    else len(order)):
        by.setdefault(h.describe(), []).append(h.service)
    said = "; ".join(f"{who} runs {', '.join(names)}" for who, names in by.items())
    if any(h.service in needed for h in holders):
        raise AlphaPandaError(
            f"{said} on {path.resolve()}: `run` would be refused. Stop it first, or give "
            "this run its own data directory (--data-dir, ALPHA_PANDA_DATA_DIR)")
    return f"{said} on {path.resolve()}, none of which `run` needs here"


async def _zerodha_engine_reason(s: Settings) -> str | None:
    """Why ``run`` would run (and lock) the zerodha engine on its log, or None."""
    from alpha_panda.services.live_guard import zerodha_engine_reason, zerodha_routed
    from alpha_panda.services.logs import embedded_file, open_log

    if not s.zerodha.live_enabled:
        return None
    path = embedded_file(s.log, s.data_dir)
    if path is not None and not path.is_file():  # (no log yet: no order placed on it)
        return zerodha_routed(s, _load(s)[0])
    log_ = open_log(s.log, s.data_dir)
    await log_.start()
    try:
        await log_.ensure_topics(REGISTRY.all())
        return await zerodha_engine_reason(s, _load(s)[0], log_)
    finally:
        await log_.close()


async def _cache(s: Settings) -> str:
    from alpha_panda.services.app import open_cache

    cache = open_cache(s.cache_url)
    try:
        probe = f"preflight:{time.time_ns()}".encode()
        await cache.set("system:preflight", probe, ttl=10)
        if await cache.get("system:preflight") != probe:
            raise AlphaPandaError("cache did not return what was written")
    finally:
        await cache.close()
    return f"{s.cache_url}: read/write ok"


async def _port(s: Settings) -> str:
    from alpha_panda.services.api_server import check_port_free

    if not s.api.enabled:
        return "API disabled"
    check_port_free(s.api.host, s.api.port)
    return f"{s.api.host}:{s.api.port} free"


async def _feed(s: Settings) -> str:
    from alpha_panda.services.feed import check_feed

    path = check_feed(s.feed)
    if path is not None:
        from alpha_panda.marketdata.files import load_ticks

        # read as run reads it: a file with a row that does not read passed here, and run
        # then refused it (the whole file, naming the row)
        ticks = load_ticks(path)
        return f"replay file {path}: {len(ticks):,} ticks ({path.stat().st_size:,} bytes)"
    if s.feed == "kite":
        from alpha_panda.adapters.zerodha.config import zerodha_settings
        from alpha_panda.adapters.zerodha.session import ns_to_ist, require_live_session

        # the ticker needs the stored session with live trading off too: without one this
        # passed, and `run --feed kite` then refused to start
        session = require_live_session(zerodha_settings(s))
        return (f"kite: the session of {session.user_id}, valid until "
                f"{ns_to_ist(session.expires_ns):%Y-%m-%d %H:%M} IST")
    return s.feed


async def _live(s: Settings) -> str:
    if not s.zerodha.live_enabled:
        routed = [c.id for c in _load(s)[0] if "zerodha" in c.brokers]
        if routed:
            return (f"live trading off: {', '.join(routed)} list zerodha, and none of their "
                    "orders goes to Kite (ALPHA_PANDA_ZERODHA__LIVE_ENABLED=true to trade)")
        return "live trading off (paper only)"
    from alpha_panda.adapters.zerodha.client import KiteRestClient
    from alpha_panda.adapters.zerodha.config import zerodha_settings
    from alpha_panda.adapters.zerodha.session import ns_to_ist, require_live_session
    from alpha_panda.services.live_guard import check_live_feed, refuse_sim_beside

    check_live_feed(s, _load(s)[0])
    if s.feed != "kite":  # (the zerodha side may run for the orders it placed on the log)
        refuse_sim_beside(s, await _zerodha_engine_reason(s))
    zs = zerodha_settings(s)
    session = require_live_session(zs)
    # The stored session only says when Kite would let it expire: Kite itself may refuse
    # it sooner (a logout, a new login elsewhere), and then the run's engine stops at start.
    kite = KiteRestClient(zs, session.access_token)
    try:
        profile = await kite.profile()
        listed = {int(r["instrument_token"]) for r in await kite.instruments()}
    finally:
        await kite.close()
    if profile.get("user_id") != session.user_id:
        raise AlphaPandaError(f"Kite answers for {profile.get('user_id')}, not the stored "
                              f"session's {session.user_id}; run `alpha-panda auth login`")
    # (the engine rejects each order of an instrument Kite does not list, UNKNOWN_INSTRUMENT)
    unlisted = {c.id: sorted(set(c.instruments) - listed) for c in _load(s)[0]
                if c.enabled and "zerodha" in {str(b) for b in c.brokers}}
    unlisted = {sid: tokens for sid, tokens in unlisted.items() if tokens}
    if unlisted:
        raise AlphaPandaError(
            "instrument tokens not in Kite's instrument list today, so their live orders "
            "would be rejected (UNKNOWN_INSTRUMENT): " + "; ".join(
                f"{sid}: {', '.join(map(str, tokens))}" for sid, tokens in unlisted.items()))
    return (f"Kite session of {session.user_id} valid until "
            f"{ns_to_ist(session.expires_ns):%Y-%m-%d %H:%M} IST (Kite accepts it)")


async def _calendar(s: Settings) -> str:
    """The NSE holiday calendar's years: one that does not list this year's holidays makes
    each of them a trading day for the paper engine, the risk manager and the MIS cut-off
    (a note, not a failure: nothing is refused for it)."""
    from alpha_panda.execution.market import MarketCalendar

    calendar = MarketCalendar.load()
    note = calendar.unknown_years_note(time.time_ns())
    if note is not None:
        return note
    if not calendar.years:
        return "the holiday file does not say which years it lists"
    return f"NSE holidays listed for {min(calendar.years)}-{max(calendar.years)}"


CHECKS: list[tuple[str, Callable[[Settings], Awaitable[str]]]] = [
    ("strategies", _strategies), ("risk", _risk), ("log", _log), ("run lock", _lock),
    ("cache", _cache), ("api port", _port),
    ("feed", _feed), ("calendar", _calendar), ("zerodha", _live),
]


async def run_checks(settings: Settings) -> list[CheckResult]:
    results = []
    try:
        for name, check in CHECKS:
            try:
                results.append(CheckResult(name, True, await check(settings)))
            except (AlphaPandaError, OSError, ValueError) as exc:
                results.append(CheckResult(name, False, str(exc)))
    finally:
        _LOADED.pop(id(settings), None)
    return results


def print_report(results: list[CheckResult]) -> None:
    table = Table(title="preflight", header_style="bold")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for r in results:
        table.add_row(r.name, "[green]ok[/]" if r.ok else "[red]FAIL[/]", r.detail)
    Console().print(table)
