"""Live progress in the terminal (stderr): ticks, signals, fills, P&L per broker, service lag."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections import deque
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from alpha_panda.domain.values import format_rupees

if TYPE_CHECKING:
    from alpha_panda.services.app import SystemRun


def where(run: SystemRun) -> str | None:
    """Where the dashboard, the API and its docs are (None: the API is off)."""
    s = run.settings
    if not s.api.enabled:
        return None
    url = f"http://{s.api.host}:{s.api.port}"
    return f"dashboard {url}/  API {url}/api/v1/portfolios/paper  docs {url}/docs"


DRAIN_WAIT_S = 30.0  # the longest the last view waits for the services to stop
COLUMNS = ("broker", "signals", "validated", "rejected", "fills", "realized", "unrealized",
           "charges", "net", "day", "open pos.")


def broker_rows(run: SystemRun) -> list[dict[str, str]]:
    """Per broker whose portfolio runs here, ``COLUMNS`` as text: all counted on the log so
    far, like the P&L (a restart rebuilds them), so they agree with the API and dashboard.
    ``signals``: those the broker's risk manager decided (validated or rejected); ``net``:
    realized and unrealized P&L less charges; ``day``: the net P&L of the market's current
    IST day."""
    p = run.pipeline
    if p is None:
        return []
    rows = []
    for broker, h in p.portfolios.items():
        snap = h.snapshot(None)
        rows.append(dict(zip(COLUMNS, (
            broker, f"{h.validated + h.rejected:,}", f"{h.validated:,}", f"{h.rejected:,}",
            f"{h.fills:,}", format_rupees(snap.realized), format_rupees(snap.unrealized),
            format_rupees(snap.charges),
            format_rupees(snap.realized + snap.unrealized - snap.charges),
            format_rupees(h.day_pnl()), str(snap.open_positions)), strict=True)))
    return rows


class TickRate:
    """The feed's ticks a second over the last ``window_s``: what it publishes now, where
    the run's average also counts its start-up and any pause (the simulator at 200 ticks/s
    read 150/s 14 s into a run)."""

    def __init__(self, window_s: float = 5.0, shortest_s: float = 1.0) -> None:
        self._window = window_s
        self._shortest = shortest_s  # a shorter span says nothing yet: None
        self._seen: deque[tuple[float, int]] = deque()  # (monotonic s, ticks published)

    def note(self, now: float, published: int) -> float | None:
        """Ticks a second from the oldest sample within the window (or the last one just
        older) to ``published`` at ``now``."""
        seen = self._seen
        seen.append((now, published))
        while len(seen) > 2 and now - seen[1][0] >= self._window:
            seen.popleft()
        then, before = seen[0]
        span = now - then
        return (published - before) / span if span >= self._shortest else None


def _recent(run: SystemRun, ticks: int, rate: TickRate | None) -> float | None:
    """The feed's recent rate (``rate`` noting ``ticks`` now), or None: none yet, or the
    run is stopping (the feed has stopped: its rate is over)."""
    if rate is None or run.stop.is_set():
        return None
    return rate.note(time.perf_counter(), ticks)


def _rates(run: SystemRun, ticks: int, elapsed: float, rate: TickRate | None) -> str:
    """"200/s, 150/s average" while the feed runs; the average alone once stopped."""
    average = f"{ticks / elapsed if elapsed else 0:,.0f}/s average"
    now = _recent(run, ticks, rate)
    return average if now is None else f"{now:,.0f}/s, {average}"


def render(run: SystemRun, rate: TickRate | None = None) -> Group:
    """The live view; ``rate``: the feed's recent rate, noted at each call."""
    p = run.pipeline
    s = run.settings
    head = Text()
    api = where(run)
    if api is not None:
        head.append("Alpha Panda  ", style="bold magenta")
        head.append(api + "\n")
    head.append(f"data {s.data_dir}  log {s.log}  (service logs: ALPHA_PANDA_LOG_LEVEL=INFO)\n",
                style="dim")
    elapsed = (run.stopped or time.perf_counter()) - run.started if run.started else 0.0
    ticks = run.feed.publisher.published if run.feed else 0
    state = ("stopped" if run.drained.is_set() else "stopping" if run.stop.is_set()
             else "Ctrl-C to stop")
    head.append(f"feed {s.feed}  ticks {ticks:,}  ({_rates(run, ticks, elapsed, rate)})  "
                f"elapsed {elapsed:,.1f}s  {state}", style="dim")
    table = Table(expand=False, box=None, header_style="bold")
    for col in COLUMNS:
        table.add_column(col, justify="right" if col != "broker" else "left")
    for row in broker_rows(run):
        table.add_row(*row.values())
    services = Table(box=None, header_style="bold")
    for col in ("service", "state", "processed", "lag"):
        services.add_column(col)
    if p is not None:
        for st in p.health.snapshot():
            services.add_row(st.name, st.state.value, f"{st.processed:,}",
                             "" if st.lag is None else f"{st.lag:,}")
    return Group(head, table, services)


async def show_progress(run: SystemRun, stop: asyncio.Event, interval: float = 0.5) -> None:
    console = Console(file=sys.stderr)
    if not console.is_terminal:
        await _plain(run, stop, console, interval=5.0)
        return
    rate = TickRate()
    with Live(render(run, rate), console=console, refresh_per_second=4, transient=False) as live:
        while not stop.is_set():
            live.update(render(run, rate))
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
        live.update(render(run, rate))
        await _drained(run)
        live.update(render(run, rate))


async def _drained(run: SystemRun) -> None:
    """Until the feed and the services have stopped (their last batches committed), so the
    last view shows where the run ended; at most ``DRAIN_WAIT_S``."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(run.drained.wait(), DRAIN_WAIT_S)


async def _plain(run: SystemRun, stop: asyncio.Event, console: Console, interval: float) -> None:
    """A line every few seconds when stderr is not a terminal (CI, logs, a service manager),
    after one saying where the API is (the terminal's live view has it at the top)."""
    api = where(run)
    if api is not None:
        # soft_wrap: one line however long (rich wraps at 80 columns off a terminal)
        console.print(f"Alpha Panda  {api}", highlight=False, soft_wrap=True)
    rate = TickRate(window_s=interval)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            if run.pipeline is not None:
                console.print(progress_line(run, rate), highlight=False, soft_wrap=True)
    await _drained(run)
    if run.pipeline is not None:  # where the run ended
        console.print(progress_line(run), highlight=False, soft_wrap=True)


def progress_line(run: SystemRun, rate: TickRate | None = None) -> str:
    """The plain view's line: ticks (and, with ``rate`` while the feed runs, ticks a
    second since the last line), then each broker's figures (``broker_rows``)."""
    ticks = run.feed.publisher.published if run.feed else 0
    parts = [f"ticks={ticks}"]
    now = _recent(run, ticks, rate)
    if now is not None:
        parts[0] += f" ticks_per_s={now:.0f}"
    for row in broker_rows(run):
        figures = " ".join(f"{col.replace(' ', '_').rstrip('.')}={value}"
                           for col, value in row.items() if col != "broker")
        parts.append(f"{row['broker']}: {figures}")
    return "progress " + "  ".join(parts)
