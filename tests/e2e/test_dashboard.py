"""The dashboard in headless Chromium: exact figures, broker switch, live refresh, screenshot."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import uvicorn

from alpha_panda.api.app import create_app
from alpha_panda.domain.clock import ist_date
from alpha_panda.observability.health import ComponentStatus, HealthRegistry, State
from alpha_panda.readmodel.memory import MemoryCache
from alpha_panda.readmodel.views import (
    STRATEGIES_KEY,
    DayPnlView,
    OrderView,
    PortfolioView,
    PositionView,
    SignalView,
    StrategyPnlView,
    StrategyView,
    key,
)
from alpha_panda.testing.control import RecordingControl
from alpha_panda.testing.redis_server import free_port

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
T0 = 1_764_042_300_000_000_000  # 2025-11-25 09:15:00 IST
S = 1_000_000_000
DAY = 86_400 * S
# 41 equity points over three sessions (25, 26, 27 Nov), 14 a day from 09:15, 25 min apart
SESSIONS = [T0 + (i // 14) * DAY + (i % 14) * 25 * 60 * S for i in range(41)]
enc = msgspec.json.encode
# the newest order, still working: the only one the dashboard offers to cancel
OPEN_ORDER = OrderView(order_id="o3", strategy_id="sma_cross_banks", instrument_token=341249,
                       side="BUY", quantity=25, order_type="LIMIT", status="SUBMITTED",
                       limit_price=1_716_00, ts=T0 + 101 * S)


class Component:
    def __init__(self, name: str, state: State, ready: bool, processed: int, lag: int | None) -> None:
        self.name, self._status = name, ComponentStatus(
            name=name, state=state, ready=ready, processed=processed, lag=lag
        )

    def health(self) -> ComponentStatus:
        return self._status


def portfolio(broker: str, cash: int, realized: int, unrealized: int, charges: int,
              fills: int, curve_start: int, held: int, open_positions: int,
              times: list[int] | None = None, day_pnl: int | None = None) -> bytes:
    # a wandering curve from curve_start, ending exactly at equity = cash + held value
    end = cash + held
    wander = [(i * 7919) % 13 - 6 for i in range(40)]
    level, steps = 0, []
    for i, w in enumerate(wander):
        level += w * 150_00
        steps.append(curve_start + (end - curve_start) * i // 40 + level)
    times = times or [T0 + i * 30 * S for i in range(41)]
    curve = list(zip(times, [*steps, end], strict=True))
    pnl = [StrategyPnlView(
        strategy_id="sma_cross_banks", realized=realized, unrealized=unrealized, charges=charges,
        cash=cash, gross_exposure=abs(held), open_positions=open_positions, fills=fills,
        day_pnl=day_pnl,
    )]
    return enc(PortfolioView(
        broker=broker, as_of=curve[-1][0], cash=cash, realized=realized, unrealized=unrealized,
        charges=charges, gross_exposure=abs(held), open_positions=open_positions, fills=fills,
        equity_curve=curve, strategies=pnl,
        day=ist_date(curve[-1][0]).isoformat() if day_pnl is not None else None, day_pnl=day_pnl,
        days=[DayPnlView(day="2025-11-24", pnl=3_817_88,
                         strategies={"sma_cross_banks": 3_817_88}),
              DayPnlView(day=ist_date(curve[-1][0]).isoformat(), pnl=day_pnl,
                         strategies={"sma_cross_banks": day_pnl})] if day_pnl is not None else [],
    ))


def documents() -> dict[str, bytes]:
    pos = [
        PositionView(strategy_id="sma_cross_banks", instrument_token=341249, quantity=25,
                     average_price=1_718_35, last_price=1_724_90, realized=0,
                     unrealized=163_75, charges=31_12, day_pnl=-210_40),
        PositionView(strategy_id="sma_cross_banks", instrument_token=1270529, quantity=-40,
                     average_price=1_283_10, last_price=1_285_45, realized=0,
                     unrealized=-94_00, charges=22_05, product="MIS"),
        PositionView(strategy_id="mean_revert_it", instrument_token=408065, quantity=0,
                     average_price=0, last_price=1_879_20, realized=2_612_40, unrealized=0,
                     charges=45_60),
    ]
    orders = [
        OrderView(order_id=f"o{i}", strategy_id="sma_cross_banks", instrument_token=tok,
                  side=side, quantity=q, order_type="MARKET", status=st, filled_quantity=fq,
                  average_price=ap, reason=why, ts=T0 + (100 - i) * S, origin=origin)
        for i, (tok, side, q, st, fq, ap, why, origin) in enumerate([
            (1270529, "SELL", 40, "FILLED", 40, 1_283_10, None, "signal"),
            (341249, "BUY", 25, "FILLED", 25, 1_718_35, None, "signal"),
            (408065, "BUY", 10, "REJECTED", 0, 0, "RMS: margin exceeds available funds",
             "flatten"),  # the kill switch's flatten of a short, refused
        ])
    ]
    orders.insert(0, OPEN_ORDER)
    signals = [
        # a sample strategy's id and reason, as long as they come
        SignalView(signal_id="s3", strategy_id="vwap_reversion_finance", instrument_token=81153,
                   side="BUY", quantity=2, order_type="MARKET", status="VALIDATED",
                   reason="below VWAP by 0.42%, reverting", ts=T0 + 150 * S),
        SignalView(signal_id="s2", strategy_id="sma_cross_banks", instrument_token=341249,
                   side="BUY", quantity=100, order_type="MARKET", status="REJECTED",
                   reason_code="MAX_POSITION", message="position 125 would exceed max 50",
                   reason="fast SMA crossed above slow", ts=T0 + 120 * S),
        SignalView(signal_id="s1", strategy_id="sma_cross_banks", instrument_token=1270529,
                   side="SELL", quantity=40, order_type="MARKET", status="VALIDATED",
                   reason="fast SMA crossed below slow", ts=T0 + 99 * S),
    ]
    strategies = [
        StrategyView(id="sma_cross_banks", strategy="sma_cross", instruments=[341249, 1270529],
                     brokers=["paper", "zerodha"], params={"fast": 10}, status="ACTIVE", signals=2),
        StrategyView(id="mean_revert_it", strategy="mean_reversion", instruments=[408065],
                     brokers=["paper"], params={}, status="FAILED",
                     error="ZeroDivisionError in on_tick: division by zero"),
    ]
    return {
        key("paper", "portfolio"): portfolio("paper", 1_00_10_878_88, 2_612_40, 69_75, 98_77,
                                             fills=6, curve_start=1_00_00_000_00,
                                             held=43_122_50 - 51_418_00, open_positions=2,
                                             day_pnl=-1_234_50),
        key("paper", "positions"): enc(pos),
        key("paper", "orders"): enc(orders),
        key("paper", "signals"): enc(signals),
        key("zerodha", "portfolio"): portfolio("zerodha", 4_98_765_43, -1_250_00, 0,
                                               64_20, fills=3, curve_start=5_00_000_00,
                                               held=0, open_positions=0,
                                               times=SESSIONS),  # over several days
        STRATEGIES_KEY: enc(strategies),
    }


def launch(pw: Any) -> Any:
    """Debian's headless Chromium, quiet: no update checks, no background traffic."""
    return pw.chromium.launch(
        executable_path=CHROMIUM,
        args=["--headless", "--no-sandbox", "--disable-gpu",
              "--disable-background-networking", "--disable-component-update"],
    )


def open_dashboard(pw: Any, url: str, on_dialog: Any) -> tuple[Any, Any, list[str]]:
    """A desktop-sized page of the dashboard, loaded, its dialogs answered by ``on_dialog``;
    with the list its script errors go to."""
    from playwright.sync_api import expect

    browser = launch(pw)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", on_dialog)
    page.goto(url + "/")
    expect(page.locator("body")).to_have_attribute("data-loaded-broker", "paper")
    return browser, page, errors


def _run_elsewhere(coro: Coroutine[Any, Any, None]) -> None:
    # Playwright's sync API runs its own event loop in this thread
    worker = threading.Thread(target=asyncio.run, args=(coro,))
    worker.start()
    worker.join()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, MemoryCache, RecordingControl]]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/install-system-deps.sh)")
    cache = MemoryCache()
    asyncio.run(cache.set_many(documents()))
    registry = HealthRegistry()
    registry.register(Component("market_feed", State.RUNNING, True, 1_284_551, None))
    registry.register(Component("risk:paper", State.RUNNING, True, 2_310, 0))
    registry.register(Component("zerodha_engine", State.STARTING, False, 0, 12))
    control = RecordingControl()
    app = create_app(cache=cache, health=registry, control=control)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert uv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", cache, control
    uv.should_exit = True
    thread.join(timeout=10)


def test_dashboard_shows_exact_figures_and_switches_broker(
    server: tuple[str, MemoryCache, RecordingControl], tmp_path: Path
) -> None:
    from playwright.sync_api import Dialog, expect, sync_playwright

    url, cache, control = server
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1440, "height": 1300})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(url + "/")
        expect(page.locator("body")).to_have_attribute("data-loaded-broker", "paper")
        # Indian digit grouping, exact to the paisa; equity = cash + held value (−8,295.50),
        # which is the ₹1 crore start plus the net P&L
        expect(page.locator("#equity")).to_have_text("₹1,00,02,583.38")
        expect(page.locator("#cash")).to_have_text("₹1,00,10,878.88")
        expect(page.locator("#realized")).to_have_text("+₹2,612.40")
        expect(page.locator("#unrealized")).to_have_text("+₹69.75")
        expect(page.locator("#charges")).to_have_text("₹98.77")
        expect(page.locator("#fills")).to_have_text("6 fills")
        expect(page.locator("#net-pnl")).to_have_text("+₹2,583.38")  # 2612.40 + 69.75 − 98.77
        # the day's P&L, of the market's day (a replay's, not the wall clock's)
        expect(page.locator("#day-pnl")).to_have_text("-₹1,234.50")
        expect(page.locator("#day-pnl")).to_have_class("figure loss")
        expect(page.locator("#day")).to_have_text("IST day 25 Nov 2025")
        days = page.locator("#days tbody tr")  # P&L by day, the latest first
        expect(days).to_have_count(2)
        expect(days.nth(0)).to_contain_text("25 Nov 2025")
        expect(days.nth(0).locator("td").nth(1)).to_have_text("-₹1,234.50")
        expect(days.nth(0).locator("td").nth(2)).to_have_text("sma_cross_banks -₹1,234.50")
        expect(days.nth(1).locator("td").nth(1)).to_have_text("+₹3,817.88")
        positions = page.locator("#positions tbody tr")
        expect(positions).to_have_count(3)
        expect(positions.nth(0)).to_contain_text("HDFCBANK")
        expect(positions.nth(0)).to_contain_text("₹43,122.50")  # 25 × 1,724.90
        expect(positions.nth(1)).to_contain_text("-₹51,418.00")  # short 40 ICICIBANK
        expect(positions.nth(1).locator("td").nth(2)).to_have_text("MIS")  # intraday, short
        expect(positions.nth(0).locator("td").nth(2)).to_have_text("CNC")
        expect(positions.nth(0).locator("td").last).to_have_text("-₹210.40")
        # the charges beside the gross figures: unrealized + realized − charges is its net
        expect(positions.nth(0).locator("td").nth(9)).to_have_text("₹31.12")
        expect(positions.nth(2).locator("td").nth(9)).to_have_text("₹45.60")
        expect(positions.nth(1).locator("td").last).to_have_text("–")  # not written
        expect(page.locator("#signals")).to_contain_text("MAX_POSITION: position 125 would exceed max 50")
        # whose each order is: the strategy's own, or placed for it by the system
        notes = page.locator("#orders tbody tr td:last-child")
        expect(notes.nth(1)).to_have_text("sma_cross_banks")
        expect(notes.nth(3)).to_have_text(
            "sma_cross_banks (flatten) · RMS: margin exceeds available funds")
        expect(page.locator("#orders-count")).to_have_text("(4 of 4)")
        # a total that reaches what the read model keeps counts the latest rows only
        assert page.evaluate("d => countLabel(d)", {"items": [1, 2], "total": 500, "kept": 500}
                             ) == "(2 of the latest 500)"
        expect(page.locator("#strategies")).to_contain_text("ZeroDivisionError in on_tick")
        sma_row = page.locator("#strategies tbody tr").first
        expect(sma_row).to_contain_text("+₹2,583.38")  # its net P&L on paper
        expect(sma_row.locator("td").nth(7)).to_have_text("-₹1,234.50")  # its day's
        expect(page.locator("#health tbody tr")).to_have_count(3)
        expect(page.locator("#ready")).to_have_text("not ready")
        expect(page.locator("#curve svg path")).to_have_count(2)
        expect(page.locator("#curve-change")).to_have_text("+₹3,483.38 since 09:15:00")
        # the reasons are readable without scrolling sideways (at 1440 px, side by side,
        # the signals' reasons were squeezed to a sliver and cut off at the panel's edge)
        for table in ("#orders", "#signals"):
            overflow = page.evaluate(
                "t => { const p = document.querySelector(t).closest('.panel');"
                " return p.scrollWidth - p.clientWidth; }", table)
            assert overflow <= 0, f"{table} is {overflow} px wider than its panel"
        page.screenshot(path=str(tmp_path / "dashboard-paper.png"), full_page=True)
        shown = page.evaluate(
            "xs => xs.map(inr)", ["0.00", "-0.05", "999.99", "1000.00", "-123456.70",
                                  "12345678901234567.89"]
        )
        assert shown == ["₹0.00", "-₹0.05", "₹999.99", "₹1,000.00", "-₹1,23,456.70",
                         "₹12,34,56,78,90,12,34,567.89"]  # exact past 2**53: strings, not floats

        # the kill switch: confirm the stop, decline flattening
        answers = [True, False]
        prompts: list[str] = []

        def answer(dialog: Dialog) -> None:
            prompts.append(dialog.message)
            dialog.accept() if answers.pop(0) else dialog.dismiss()

        page.on("dialog", answer)
        expect(page.locator("#kill")).to_have_text("Stop paper")
        page.locator("#kill").click()
        expect(page.locator("#kill")).to_have_text("Resume paper")
        expect(page.locator("#killed")).to_contain_text("Kill switch ON for paper")
        assert control.calls == [("paper", True, False)]
        assert prompts[0] == "Stop all new orders on paper?"
        page.screenshot(path=str(tmp_path / "dashboard-killed.png"))

        page.get_by_role("button", name="Zerodha (live)").click()
        expect(page.locator("#kill")).to_have_text("Stop zerodha")  # per broker
        expect(page.locator("#killed")).to_be_hidden()
        if importlib.util.find_spec("alpha_panda.api.routes.auth") is not None:
            # no Kite session in this test: the bar says so and offers the login
            expect(page.locator("#kite")).to_contain_text("log in")
        expect(page.locator("body")).to_have_attribute("data-loaded-broker", "zerodha")
        expect(page.locator("#equity")).to_have_text("₹4,98,765.43")
        expect(page.locator("#realized")).to_have_text("-₹1,250.00")
        expect(page.locator("#unrealized")).to_have_text("₹0.00")
        expect(page.locator("#net-pnl")).to_have_text("-₹1,314.20")
        # a read model written before the day's P&L: a dash, not ₹0.00
        expect(page.locator("#day-pnl")).to_have_text("–")
        expect(page.locator("#day")).to_have_text("no trading day yet")
        # a curve over several days says from which day (the simulator goes through sessions)
        expect(page.locator("#curve-change")).to_contain_text("since 25 Nov, 09:15:00")
        # drawn on session time: the nights take no width, a dashed line starts each day
        expect(page.locator("#curve .day-break")).to_have_count(2)
        expect(page.locator("#curve .day-label")).to_have_text(["26 Nov", "27 Nov"])
        width = float(page.locator("#curve svg").get_attribute("viewBox").split()[2])
        breaks = [float(x) for x in page.locator("#curve .day-break").evaluate_all(
            "lines => lines.map((l) => l.getAttribute('x1'))")]
        session_s = 6 * 3600 + 15 * 60
        span = 2 * session_s + 12 * 25 * 60  # to the last point: the third day's 14:15
        left, right = 110, width - 16  # the plot's margins in app.js
        for k, x in enumerate(breaks, 1):
            assert abs(x - (left + (right - left) * k * session_s / span)) < 1.0, breaks
        expect(page.locator("#positions tbody")).to_contain_text("No positions yet")
        # empty tables say what will appear in them
        expect(page.locator("#orders tbody")).to_contain_text(
            "No orders yet: a strategy's validated signals become orders here.")
        expect(page.locator("#orders")).not_to_contain_text("HDFCBANK")  # paper stays paper
        page.screenshot(path=str(tmp_path / "dashboard-zerodha.png"), full_page=True)

        # the projector writes; the page follows without a reload
        fresh = documents()[key("zerodha", "portfolio")].replace(b'"fills":3', b'"fills":4')
        _run_elsewhere(cache.set(key("zerodha", "portfolio"), fresh))
        expect(page.locator("#fills")).to_have_text("4 fills", timeout=5000)
        page.reload()
        expect(page.locator("body")).to_have_attribute("data-loaded-broker", "zerodha")

        # the API docs render from local assets too
        page.goto(url + "/docs")
        expect(page.locator(".swagger-ui .title").first).to_contain_text("Alpha Panda")
        expect(page.get_by_text("/api/v1/portfolios/{broker}").first).to_be_visible()
        browser.close()
    assert errors == []
    # nothing is fetched from anywhere but this server: no CDN, works offline
    outside = [u for u in requested if not u.startswith((url, "data:"))]
    assert requested and outside == []
    keep = os.environ.get("ALPHA_PANDA_SCREENSHOTS")
    if keep:
        for shot in tmp_path.glob("*.png"):
            shutil.copy(shot, keep)


@pytest.mark.parametrize("width", [360, 390, 420])
def test_on_a_phone_the_header_wraps_and_clips_nothing(
    server: tuple[str, MemoryCache, RecordingControl], width: int,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, _, _ = server
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(url + "/")
        expect(page.locator("body")).to_have_attribute("data-loaded-broker", "paper")
        clipped = page.evaluate(
            "() => [...document.querySelectorAll('header button, header .brand')]"
            ".filter(e => e.scrollWidth > e.clientWidth + 1"
            " || e.getBoundingClientRect().right > window.innerWidth + 1"
            " || e.getBoundingClientRect().right > e.parentElement.getBoundingClientRect().right + 1)"
            ".map(e => e.textContent.trim())")
        assert clipped == []
        # nothing but the tables, which scroll in their panels, is wider than the phone
        wide = page.evaluate(
            "() => [...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > window.innerWidth + 1"
            " && (e.matches('.panel') || !e.closest('.panel')))"
            ".map(e => e.tagName + '#' + e.id)")
        assert wide == []
        # each card's figure whole, on one line, inside its card: at 390 px, three cards a
        # row, the crore equity ran over the next card and off the screen, and "-₹1,234.50"
        # broke after its minus sign
        expect(page.locator("#equity")).to_have_text("₹1,00,02,583.38")
        cut = page.evaluate(
            "() => [...document.querySelectorAll('.card')].filter(c => {"
            " const f = c.querySelector('.figure'), r = document.createRange();"
            " r.selectNodeContents(f);"
            " return r.getClientRects().length !== 1 || f.scrollWidth > f.clientWidth + 1"
            " || c.scrollWidth > c.clientWidth + 1; })"
            ".map(c => c.querySelector('.figure').id + ' ' + c.querySelector('.figure').textContent)")
        assert cut == []
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        browser.close()


def test_a_trader_cancels_an_open_order_from_the_orders_table(
    server: tuple[str, MemoryCache, RecordingControl], tmp_path: Path
) -> None:
    from playwright.sync_api import Dialog, Response, Route, expect, sync_playwright

    from alpha_panda.domain.errors import ValidationError

    url, cache, control = server
    answers: list[bool] = []  # what the trader answers each confirm(), in turn
    dialogs: list[tuple[str, str]] = []

    def answer(dialog: Dialog) -> None:
        dialogs.append((dialog.type, dialog.message))
        dialog.dismiss() if dialog.type == "confirm" and not answers.pop(0) else dialog.accept()

    def polled_orders(r: Response) -> bool:
        return "/api/v1/orders/paper?" in r.url

    def cancel_answered(r: Response) -> bool:
        return r.url.endswith("/api/v1/orders/paper/o3/cancel")

    with sync_playwright() as pw:
        browser, page, errors = open_dashboard(pw, url, answer)
        rows = page.locator("#orders tbody tr")
        expect(rows).to_have_count(4)
        cancel = page.get_by_role("button", name="Cancel order o3", exact=True)
        cancelling = page.get_by_role("button", name="Cancelling order o3", exact=True)
        # the working order offers a cancel; the filled and the rejected ones do not
        expect(rows.nth(0).get_by_role("button")).to_have_count(1)
        expect(rows.nth(0).get_by_role("button")).to_have_text("Cancel")
        expect(cancel).to_be_enabled()
        for closed in (1, 2, 3):
            expect(rows.nth(closed).get_by_role("button")).to_have_count(0)
        page.locator("#orders").screenshot(path=str(tmp_path / "dashboard-cancel.png"))

        # asked to confirm, the trader says no: nothing is sent
        answers.append(False)
        cancel.click()
        assert dialogs == [("confirm", "Cancel order o3 on paper (BUY 25 HDFCBANK unfilled)?")]
        expect(cancel).to_be_enabled()

        # the system refuses: the trader reads why, and the row is as it was
        control.refuse = ValidationError("order o3 is frozen by the exchange")
        try:
            answers.append(True)
            with page.expect_event("dialog", predicate=lambda d: d.type == "alert"):
                cancel.click()
        finally:
            control.refuse = None
        assert dialogs[-1] == ("alert", "Order o3 was not cancelled: order o3 is frozen by the exchange")
        expect(cancel).to_be_enabled()
        assert control.cancels == []

        # confirmed: while the request is out the table is polled, and the row keeps saying so
        held: list[Route] = []
        page.route("**/api/v1/orders/paper/o3/cancel", lambda route: held.append(route))
        answers.append(True)
        cancel.click()
        expect(cancelling).to_be_disabled()
        for _ in range(2):
            with page.expect_response(polled_orders):
                pass
        expect(cancelling).to_have_text("Cancelling…")
        assert len(held) == 1 and control.cancels == []
        with page.expect_response(cancel_answered) as accepted:
            held[0].continue_()
        assert accepted.value.status == 202
        assert control.cancels == [("paper", "o3")]  # once, and not for the dismissed click
        # accepted, not done: until the engine's answer shows, the row says it was asked
        with page.expect_response(polled_orders):
            pass
        expect(cancelling).to_be_disabled()
        expect(rows.nth(0).locator(".badge")).to_have_text("SUBMITTED")

        # the engine refuses that very request (say Kite would not cancel it): the row says
        # why and offers the cancel again at once, not after CANCEL_WAIT_MS
        before = documents()[key("paper", "orders")]
        refused = msgspec.json.decode(before, type=list[OrderView])
        refused[0] = msgspec.structs.replace(
            refused[0], cancel_requested_ts=accepted.value.json()["requested_at"],
            cancel_requested_by="api", cancel_refused="Kite refused the cancel: order is locked")
        _run_elsewhere(cache.set(key("paper", "orders"), enc(refused)))
        try:
            expect(rows.nth(0)).to_contain_text(
                "cancel refused: Kite refused the cancel: order is locked", timeout=5000)
            expect(cancel).to_be_enabled()
            expect(rows.nth(0).locator(".badge")).to_have_text("SUBMITTED")
        finally:
            _run_elsewhere(cache.set(key("paper", "orders"), before))
        # asked again and accepted: the earlier refusal is not this request's answer
        page.unroute("**/api/v1/orders/paper/o3/cancel")
        answers.append(True)
        with page.expect_response(cancel_answered):
            cancel.click()
        expect(cancelling).to_be_disabled()
        stale = msgspec.json.decode(before, type=list[OrderView])
        stale[0] = msgspec.structs.replace(
            stale[0], cancel_requested_ts=accepted.value.json()["requested_at"] - 1,
            cancel_refused="an earlier request's refusal")
        _run_elsewhere(cache.set(key("paper", "orders"), enc(stale)))
        try:
            expect(rows.nth(0)).to_contain_text("an earlier request's refusal", timeout=5000)
            expect(cancelling).to_be_disabled()
        finally:
            _run_elsewhere(cache.set(key("paper", "orders"), before))

        # the engine cancels what is left: the order shows CANCELLED and offers no cancel
        done = msgspec.json.decode(before, type=list[OrderView])
        done[0] = msgspec.structs.replace(done[0], status="CANCELLED", reason="user")
        _run_elsewhere(cache.set(key("paper", "orders"), enc(done)))
        try:
            expect(rows.nth(0).locator(".badge")).to_have_text("CANCELLED", timeout=5000)
            expect(rows.nth(0)).to_contain_text("user")
            expect(rows.nth(0).get_by_role("button")).to_have_count(0)
        finally:
            _run_elsewhere(cache.set(key("paper", "orders"), before))
        browser.close()
    assert errors == []
    assert [d for d in dialogs if d[0] == "confirm"] == [dialogs[0]] * 4
    keep = os.environ.get("ALPHA_PANDA_SCREENSHOTS")
    if keep:
        for shot in tmp_path.glob("*.png"):
            shutil.copy(shot, keep)


def test_a_trader_halts_a_strategy_and_puts_it_back_from_the_strategies_table(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    from playwright.sync_api import Dialog, expect, sync_playwright

    url, cache, control = server
    confirms: list[str] = []

    def answer(dialog: Dialog) -> None:
        confirms.append(dialog.message)
        dialog.accept()

    before = documents()[STRATEGIES_KEY]
    with sync_playwright() as pw:
        browser, page, errors = open_dashboard(pw, url, answer)
        rows = page.locator("#strategies tbody tr")
        # the running strategy can be halted; the failed one (its code raised) stays out,
        # but what it holds can still be closed: it offered nothing, and its positions
        # stayed open with no way to close them from here
        expect(rows.nth(0).get_by_role("button")).to_have_text(["Halt", "Halt & flatten"])
        expect(rows.nth(1).get_by_role("button")).to_have_text(["Flatten"])
        with page.expect_response(lambda r: r.url.endswith("/strategies/mean_revert_it/halt")):
            page.get_by_role("button", name="Flatten strategy mean_revert_it").click()
        assert confirms[-1] == ("Close the positions of strategy mean_revert_it at market (on "
                                "paper)? It stays out of service; after a restart, Resume puts "
                                "it back.")
        assert control.halts[-1] == ("paper", "mean_revert_it", True, True)
        halts_before = len(control.halts)
        with page.expect_response(lambda r: r.url.endswith("/strategies/sma_cross_banks/halt")):
            page.get_by_role("button", name="Halt & flatten strategy sma_cross_banks").click()
        assert confirms[-1] == ("Halt strategy sma_cross_banks and close its positions at "
                                "market (on paper, zerodha)?")
        # on each of its brokers
        assert control.halts[halts_before:] == [("paper", "sma_cross_banks", True, True),
                                                ("zerodha", "sma_cross_banks", True, True)]
        # once the runner has halted it, the row says so and offers to put it back
        halted = msgspec.json.decode(before, type=list[StrategyView])
        halted[0] = msgspec.structs.replace(halted[0], status="HALTED")
        _run_elsewhere(cache.set(STRATEGIES_KEY, enc(halted)))
        try:
            expect(rows.nth(0).locator(".badge")).to_have_text("HALTED", timeout=5000)
            # halted with its positions kept, it can be flattened too, or put back
            expect(rows.nth(0).get_by_role("button")).to_have_text(["Resume", "Flatten"])
            resume = page.get_by_role("button", name="Resume strategy sma_cross_banks")
            with page.expect_response(lambda r: r.url.endswith("/strategies/sma_cross_banks/halt")):
                resume.click()
            assert confirms[-1] == "Put strategy sma_cross_banks back in service?"
            assert control.halts[-2:] == [("paper", "sma_cross_banks", False, False),
                                          ("zerodha", "sma_cross_banks", False, False)]
        finally:
            _run_elsewhere(cache.set(STRATEGIES_KEY, before))
        browser.close()
    assert errors == []


def test_a_halt_on_its_way_says_so_and_a_second_press_sends_nothing(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """Pressed, Halt & flatten showed no change until a poll drew the strategy halted: a
    trader pressed it again, a second halt and flatten. On its way it says "Halting…" and
    takes no press; once answered, a poll draws the strategy as the API has it."""
    from playwright.sync_api import Dialog, Route, expect, sync_playwright

    url, _, control = server
    posts: list[Route] = []

    def hold_posts(route: Route) -> None:
        posts.append(route) if route.request.method == "POST" else route.continue_()

    def answer(dialog: Dialog) -> None:
        dialog.accept()

    with sync_playwright() as pw:
        browser, page, errors = open_dashboard(pw, url, answer)
        row = page.locator("#strategies tbody tr").nth(0)
        expect(row.get_by_role("button")).to_have_text(["Halt", "Halt & flatten"])
        page.route("**/api/v1/strategies/*/halt", hold_posts)
        halts_before = len(control.halts)
        page.get_by_role("button", name="Halt & flatten strategy sma_cross_banks").click()
        sending = page.get_by_role("button", name="Halting… strategy sma_cross_banks")
        expect(sending).to_be_disabled()
        expect(row.get_by_role("button")).to_have_text(["Halting…"])
        page.wait_for_timeout(1500)  # a poll or two: still on its way
        expect(row.get_by_role("button")).to_have_text(["Halting…"])
        assert len(posts) == 1
        posts[0].continue_()
        # answered: the next poll draws the strategy as the API has it (still running here)
        expect(row.get_by_role("button")).to_have_text(["Halt", "Halt & flatten"], timeout=5000)
        assert len(posts) == 1
        assert control.halts[halts_before:] == [("paper", "sma_cross_banks", True, True),
                                                ("zerodha", "sma_cross_banks", True, True)]
        browser.close()
    assert errors == []


def test_the_live_tab_shows_no_money_before_kites_funds_are_read(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """A trader reads the live tab as their account: until the engine has read Kite's funds,
    cash and equity are a dash with a note saying so (not paper money), the P&L shows, and
    the strategies table lists only the strategies that trade live."""
    from playwright.sync_api import expect, sync_playwright

    url, cache, _ = server
    unknown = PortfolioView(
        broker="zerodha", as_of=T0 + 60 * S, cash=None, realized=-1_250_00, unrealized=12_30,
        charges=64_20, gross_exposure=17_000_00, open_positions=1, fills=3,
        funds_from_broker=True,
        strategies=[StrategyPnlView(strategy_id="sma_cross_banks", realized=-1_250_00,
                                    unrealized=12_30, charges=64_20, cash=None,
                                    gross_exposure=17_000_00, open_positions=1, fills=3)])
    _run_elsewhere(cache.set(key("zerodha", "portfolio"), enc(unknown)))
    try:
        with sync_playwright() as pw:
            browser, page, errors = open_dashboard(pw, url, lambda d: d.dismiss())
            page.get_by_role("button", name="Zerodha (live)").click()
            expect(page.locator("body")).to_have_attribute("data-loaded-broker", "zerodha")
            expect(page.locator("#cash")).to_have_text("–")
            expect(page.locator("#equity")).to_have_text("–")
            expect(page.locator("#funds")).to_have_text("funds: not read from Kite yet")
            expect(page.locator("#realized")).to_have_text("-₹1,250.00")
            expect(page.locator("#net-pnl")).to_have_text("-₹1,301.90")
            rows = page.locator("#strategies tbody tr")
            expect(rows).to_have_count(1)  # mean_revert_it trades on paper only
            expect(rows.first).to_contain_text("sma_cross_banks")
            expect(page.locator("#strategies")).not_to_contain_text("mean_revert_it")

            # Kite's funds read: the figure, and when it was read
            known = msgspec.structs.replace(unknown, cash=4_98_765_43, equity=5_15_765_43,
                                            funds_at=T0)
            _run_elsewhere(cache.set(key("zerodha", "portfolio"), enc(known)))
            expect(page.locator("#cash")).to_have_text("₹4,98,765.43", timeout=5000)
            expect(page.locator("#equity")).to_have_text("₹5,15,765.43")
            expect(page.locator("#funds")).to_have_text(
                "Kite's cash at 25 Nov 09:15 IST, plus fills since")

            page.get_by_role("button", name="Paper").click()
            expect(page.locator("body")).to_have_attribute("data-loaded-broker", "paper")
            expect(page.locator("#strategies tbody tr")).to_have_count(2)
            expect(page.locator("#funds")).to_contain_text("paper money")
            browser.close()
        assert errors == []
    finally:
        _run_elsewhere(cache.set(key("zerodha", "portfolio"),
                                 documents()[key("zerodha", "portfolio")]))


def test_capital_added_or_withdrawn_steps_the_curve_but_is_not_its_change(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, cache, _ = server
    original = documents()[key("paper", "portfolio")]
    doc = msgspec.json.decode(original, type=PortfolioView)
    lakh = 1_00_000_00
    try:
        with sync_playwright() as pw:
            browser, page, errors = open_dashboard(pw, url, lambda d: d.dismiss())
            change = page.locator("#curve-change")
            expect(change).to_have_text("+₹3,483.38 since 09:15:00")
            # a strategy added from the 21st point on (₹10 lakh more capital), then one
            # removed instead: the curve steps, its change is still the P&L's
            for moved, text in ((10 * lakh, "capital +₹10,00,000.00"),
                                (-10 * lakh, "capital -₹10,00,000.00")):
                capital = [1_00_00_000_00 + (moved if i >= 20 else 0) for i in range(41)]
                curve = [(ts, e + c - capital[0])
                         for (ts, e), c in zip(doc.equity_curve, capital, strict=True)]
                _run_elsewhere(cache.set(key("paper", "portfolio"), enc(msgspec.structs.replace(
                    doc, equity_curve=curve, curve_capital=capital))))
                expect(change).to_have_text(f"+₹3,483.38 since 09:15:00 · {text}", timeout=5000)
                expect(change).to_have_class("count gain")
                expect(page.locator("#curve .capital-change")).to_have_count(1)
                expect(page.locator("#curve .capital-change title")).to_have_text(text)
            browser.close()
        assert errors == []
    finally:
        _run_elsewhere(cache.set(key("paper", "portfolio"), original))


def test_no_amount_breaks_after_its_sign_where_text_wraps(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """Notes that wrap (the P&L by day's strategies, the cash card's holdings) wrap between
    amounts, never inside one: "sma_cross_banks -" on one line and "₹1,043.46" on the next
    read as two figures."""
    from playwright.sync_api import expect, sync_playwright

    url, cache, _ = server
    original = documents()[key("paper", "portfolio")]
    doc = msgspec.json.decode(original, type=PortfolioView)
    ids = ["breakout_metals", "ema_cross_it", "mean_reversion_energy", "momentum_auto",
           "rsi_fmcg", "sma_cross_banks", "vwap_reversion_finance"]
    day = DayPnlView(day=doc.days[-1].day, pnl=-7 * 1_043_46,
                     strategies={sid: -1_043_46 for sid in ids})
    _run_elsewhere(cache.set(key("paper", "portfolio"), enc(msgspec.structs.replace(
        doc, days=[*doc.days[:-1], day]))))
    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            errors: list[str] = []
            for width in (1440, 390):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(url + "/")
                expect(page.locator("body")).to_have_attribute("data-loaded-broker", "paper")
                expect(page.locator("#days tbody tr").first).to_contain_text(
                    "vwap_reversion_finance -₹1,043.46")
                expect(page.locator("#exposure")).to_contain_text("holdings -₹8,295.50")
                split = page.evaluate(r"""() => {
                  const split = [], walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
                  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
                    for (const m of n.data.matchAll(/[-+]?₹[\d,]+\.\d\d/g)) {
                      const r = document.createRange();
                      r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
                      // one box per line the amount is on; none when not rendered
                      if (r.getClientRects().length > 1) split.push(m[0]);
                    }
                  }
                  return split; }""")
                assert split == [], f"at {width} px"
                page.close()
            browser.close()
        assert errors == []
    finally:
        _run_elsewhere(cache.set(key("paper", "portfolio"), original))


def test_the_kill_switch_says_so_when_the_api_cannot_be_reached(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """Pressed while the API is down (or the connection drops), the kill switch must not
    fail silently: the trader is told trading was NOT stopped, and can press it again."""
    from playwright.sync_api import Dialog, Route, expect, sync_playwright

    url, _, control = server
    dialogs: list[tuple[str, str]] = []

    def answer(dialog: Dialog) -> None:
        dialogs.append((dialog.type, dialog.message))
        # confirm the stop, decline flattening, acknowledge the alert
        dialog.dismiss() if "close every open" in dialog.message else dialog.accept()

    def down(route: Route) -> None:
        route.abort("connectionrefused") if route.request.method == "POST" else route.continue_()

    with sync_playwright() as pw:
        browser, page, errors = open_dashboard(pw, url, answer)
        # the live tab: the other tests leave its switch alone
        page.get_by_role("button", name="Zerodha (live)").click()
        expect(page.locator("body")).to_have_attribute("data-loaded-broker", "zerodha")
        calls = len(control.calls)
        page.route("**/api/v1/kill-switch", down)
        with page.expect_event("dialog", predicate=lambda d: d.type == "alert", timeout=5000):
            page.get_by_role("button", name="Stop zerodha").click()
        assert dialogs[-1][1].startswith(
            "The kill switch was NOT changed: zerodha is still trading. Cannot reach the API ("
        ), dialogs
        expect(page.locator("#kill")).to_have_text("Stop zerodha")
        expect(page.locator("#killed")).to_be_hidden()
        assert len(control.calls) == calls
        browser.close()
    assert errors == []


def test_when_the_api_is_down_the_figures_shown_say_they_are_not_live(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """The API down, the last figures stay on the page: the banner says from when (IST) and
    that they are not live, and they are greyed; an error answer is told apart from no
    answer; the connection back, the page is live again."""
    import re

    from playwright.sync_api import Route, expect, sync_playwright

    url, _, _ = server
    with sync_playwright() as pw:
        browser, page, errors = open_dashboard(pw, url, lambda d: d.dismiss())
        updated = page.locator("#updated")
        expect(updated).to_have_text(re.compile(r"^updated \d\d:\d\d:\d\d IST$"))
        banner = page.locator("#banner")
        expect(banner).to_be_hidden()
        expect(banner).to_have_attribute("role", "alert")
        page.route("**/api/v1/**", lambda route: route.abort("connectionrefused"))
        expect(banner).to_be_visible(timeout=5000)
        expect(banner).to_contain_text("Cannot reach the API")
        # (read once the banner is up: a poll in flight as the route went in may still land)
        expect(banner).to_contain_text(re.compile(
            r"The paper figures below are from \d\d:\d\d:\d\d IST, not live\."))
        last = updated.text_content().removeprefix("updated ")  # type: ignore[union-attr]
        expect(banner).to_contain_text(f"The paper figures below are from {last}, not live.")
        # another tab while the API is away: the figures shown are still paper's, and say so
        page.get_by_role("button", name="Zerodha (live)").click()
        expect(banner).to_contain_text(
            f"The paper figures (not zerodha's) below are from {last}, not live.", timeout=5000)
        page.get_by_role("button", name="Paper").click()
        expect(page.locator("main")).to_have_class("stale")
        expect(page.locator("#equity")).to_have_text("₹1,00,02,583.38")  # kept, greyed

        def broken(route: Route) -> None:
            if "/portfolios/" in route.request.url:
                route.fulfill(status=500, json={"detail": "cache unavailable"})
            else:
                route.continue_()

        page.unroute("**/api/v1/**")
        page.route("**/api/v1/**", broken)
        expect(banner).to_contain_text(
            "The API answered with an error (/api/v1/portfolios/paper: 500 cache unavailable)",
            timeout=5000)
        expect(banner).to_contain_text("not live")

        page.unroute("**/api/v1/**")
        expect(banner).to_be_hidden(timeout=5000)
        expect(page.locator("main")).not_to_have_class("stale")
        browser.close()
    assert errors == []


def test_a_poll_while_trading_keeps_the_focused_button_and_a_press_on_it(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """Live, every poll changes some figure of the strategies and orders tables. Redrawn
    whole, they took keyboard focus off a Halt or Cancel button every 1.5 s, and a press
    held across a poll was no click. Rows and cells that did not change are kept."""
    from playwright.sync_api import Dialog, expect, sync_playwright

    url, cache, _ = server
    confirms: list[str] = []

    def answer(dialog: Dialog) -> None:
        confirms.append(dialog.message)
        dialog.dismiss()  # nothing is sent

    strategies = documents()[STRATEGIES_KEY]
    orders = documents()[key("paper", "orders")]
    try:
        with sync_playwright() as pw:
            browser, page, errors = open_dashboard(pw, url, answer)
            halt = page.get_by_role("button", name="Halt strategy sma_cross_banks", exact=True)
            cancel = page.get_by_role("button", name="Cancel order o3", exact=True)
            focused = "() => document.activeElement.getAttribute('aria-label')"

            # the strategy signals again: its row's figures change, its buttons stay
            halt.focus()
            more = msgspec.json.decode(strategies, type=list[StrategyView])
            more[0] = msgspec.structs.replace(more[0], signals=3)
            _run_elsewhere(cache.set(STRATEGIES_KEY, enc(more)))
            expect(page.locator("#strategies tbody tr").first.locator("td").nth(5)).to_have_text(
                "3", timeout=5000)
            assert page.evaluate(focused) == "Halt strategy sma_cross_banks"
            page.keyboard.press("Enter")
            assert confirms[-1] == ("Halt strategy sma_cross_banks? Its open orders are "
                                    "cancelled; its positions stay open.")

            # a new order comes in above the open one: the open one's Cancel keeps the focus
            cancel.focus()
            newer = msgspec.json.decode(orders, type=list[OrderView])
            newer.insert(0, msgspec.structs.replace(newer[1], order_id="o9", ts=T0 + 200 * S))
            _run_elsewhere(cache.set(key("paper", "orders"), enc(newer)))
            expect(page.locator("#orders tbody tr")).to_have_count(5, timeout=5000)
            assert page.evaluate(focused) == "Cancel order o3"

            # pressed, a poll redraws the table, released: a click all the same
            box = halt.bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            more[0] = msgspec.structs.replace(more[0], signals=4)
            _run_elsewhere(cache.set(STRATEGIES_KEY, enc(more)))
            expect(page.locator("#strategies tbody tr").first.locator("td").nth(5)).to_have_text(
                "4", timeout=5000)
            asked = len(confirms)
            page.mouse.up()
            expect(page.locator("#strategies")).to_be_visible()  # the dialog is answered
            assert len(confirms) == asked + 1
            browser.close()
        assert errors == []
    finally:
        _run_elsewhere(cache.set(STRATEGIES_KEY, strategies))
        _run_elsewhere(cache.set(key("paper", "orders"), orders))


def test_when_the_api_stops_answering_the_figures_say_they_are_not_live(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """An API that takes connections but does not answer (its event loop held by a strategy's
    on_tick, a stopped process) is not live either. With no time limit on the polls, 12 s
    into such a stall the dot stayed green, no banner, the figures not greyed, and a new poll
    of the seven routes went out every 1.5 s on top of those still waiting."""
    from playwright.sync_api import Request, Route, expect, sync_playwright

    url, _, _ = server
    held: list[Route] = []
    waiting: set[Request] = set()
    most_waiting = 0

    def started(r: Request) -> None:
        nonlocal most_waiting
        if "/api/v1/portfolios/" in r.url:
            waiting.add(r)
            most_waiting = max(most_waiting, len(waiting))

    with sync_playwright() as pw:
        browser, page, errors = open_dashboard(pw, url, lambda d: d.dismiss())
        page.on("request", started)
        page.on("requestfinished", lambda r: waiting.discard(r))
        page.on("requestfailed", lambda r: waiting.discard(r))
        page.route("**/api/v1/**", lambda route: held.append(route))  # taken, never answered
        banner = page.locator("#banner")
        expect(banner).to_be_visible(timeout=8000)
        expect(banner).to_contain_text("The API did not answer within 5 s")
        expect(banner).to_contain_text("The paper figures below are from")
        expect(page.locator("main")).to_have_class("stale")
        expect(page.locator("#conn")).to_have_class("dot bad")
        page.wait_for_timeout(3000)
        assert most_waiting == 1, f"{most_waiting} polls of the portfolio waiting at once"

        page.unroute("**/api/v1/**")
        expect(banner).to_be_hidden(timeout=8000)
        expect(page.locator("main")).not_to_have_class("stale")
        browser.close()
    assert errors == []


def test_a_resting_stop_shows_its_trigger_price(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """A bracket's stop-loss rests as SL-M (a trigger) or SL (a trigger and a limit). The
    orders table showed "SL-M" with no price at all, and the SL's limit alone, "@ ₹1,689.00":
    a resting SELL at ₹1,689 with the market at ₹1,724.90 reads as a limit order that should
    have filled, not a stop waiting for the price to fall to ₹1,690."""
    from playwright.sync_api import expect, sync_playwright

    url, cache, _ = server
    before = documents()[key("paper", "orders")]
    stops = [
        OrderView(order_id="o5", strategy_id="sma_cross_banks", instrument_token=341249,
                  side="SELL", quantity=25, order_type="SL", status="SUBMITTED",
                  limit_price=1_689_00, trigger_price=1_690_00, ts=T0 + 103 * S,
                  origin="bracket", parent_order_id="o1"),
        OrderView(order_id="o4", strategy_id="sma_cross_banks", instrument_token=1270529,
                  side="BUY", quantity=40, order_type="SL-M", status="SUBMITTED",
                  trigger_price=1_305_50, ts=T0 + 102 * S, origin="bracket",
                  parent_order_id="o0"),
    ]
    orders = msgspec.json.decode(before, type=list[OrderView])
    _run_elsewhere(cache.set(key("paper", "orders"), enc([*stops, *orders])))
    try:
        with sync_playwright() as pw:
            browser, page, errors = open_dashboard(pw, url, lambda d: d.dismiss())
            rows = page.locator("#orders tbody tr")
            expect(rows).to_have_count(6)
            expect(rows.nth(0).locator("td").nth(5)).to_have_text("trigger ₹1,690.00 @ ₹1,689.00")
            expect(rows.nth(1).locator("td").nth(5)).to_have_text("trigger ₹1,305.50")
            expect(rows.nth(2).locator("td").nth(5)).to_have_text("@ ₹1,716.00")  # a limit
            expect(rows.nth(3).locator("td").nth(5)).to_have_text("₹1,283.10")  # filled: avg
            overflow = page.evaluate("() => { const p = document.querySelector('#orders')"
                                     ".closest('.panel'); return p.scrollWidth - p.clientWidth; }")
            assert overflow <= 0, f"the orders are {overflow} px wider than their panel"
            browser.close()
        assert errors == []
    finally:
        _run_elsewhere(cache.set(key("paper", "orders"), before))


def test_the_equity_curve_ends_at_the_equity_shown(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """The projector adds a curve point on each fill and on each second of event time with
    positions open, so the summary's equity can be ticks ahead of the curve's last point.
    On a run of the sample strategies the curve said "-₹2,687.25 since 09:15:01" beside an
    equity and a net P&L of -₹2,690.50: two figures for one change. The curve now ends at
    the equity shown, at the summary's time."""
    from playwright.sync_api import expect, sync_playwright

    url, cache, _ = server
    original = documents()[key("paper", "portfolio")]
    doc = msgspec.json.decode(original, type=PortfolioView)
    last_ts, last_equity = doc.equity_curve[-1]
    later = msgspec.structs.replace(doc, as_of=last_ts + 800_000_000, equity=last_equity - 3_25,
                                    curve_capital=[1_00_00_000_00] * len(doc.equity_curve))
    _run_elsewhere(cache.set(key("paper", "portfolio"), enc(later)))
    try:
        with sync_playwright() as pw:
            browser, page, errors = open_dashboard(pw, url, lambda d: d.dismiss())
            expect(page.locator("#equity")).to_have_text("₹1,00,02,580.13")
            # the first point is ₹99,99,100.00: +₹3,483.38 to the last point, ₹3.25 less now
            expect(page.locator("#curve-change")).to_have_text("+₹3,480.13 since 09:15:00")
            expect(page.locator("#curve .capital-change")).to_have_count(0)
            expect(page.locator("#curve text.axis").last).to_have_text("09:35:00")
            browser.close()
        assert errors == []
    finally:
        _run_elsewhere(cache.set(key("paper", "portfolio"), original))


def _live_kill_switch(page: Any) -> Any:
    """The live tab shown, its kill switch off: the switch's button."""
    from playwright.sync_api import expect

    page.get_by_role("button", name="Zerodha (live)").click()
    expect(page.locator("body")).to_have_attribute("data-loaded-broker", "zerodha")
    kill = page.locator("#kill")
    expect(kill).to_have_text("Stop zerodha")
    return kill


def _release_live_switch(control: RecordingControl) -> None:
    """The live tab's kill switch off again, for the tests after one that set it."""
    async def release() -> None:
        await control.set_kill_switch("zerodha", False, False)

    _run_elsewhere(release())


def test_a_poll_answered_before_the_kill_switch_was_set_does_not_undo_it_on_screen(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """A poll's kill-switch state read before the trader's Stop was set, and drawn after it:
    the button went back to "Stop zerodha" and the banner away, for a poll, over a switch
    that was on. A trader pressing Stop at a bad moment reads that as not stopped."""
    from playwright.sync_api import APIResponse, Dialog, Route, expect, sync_playwright

    url, _, control = server
    held: list[tuple[Route, APIResponse]] = []

    def answer(dialog: Dialog) -> None:
        dialog.dismiss() if "close every open" in dialog.message else dialog.accept()

    def hold_reads(route: Route) -> None:
        if route.request.method == "GET":  # read now, answered when the test says
            held.append((route, route.fetch()))
        else:
            route.continue_()

    try:
        with sync_playwright() as pw:
            browser, page, errors = open_dashboard(pw, url, answer)
            kill = _live_kill_switch(page)
            page.route("**/api/v1/kill-switch", hold_reads)
            deadline = time.monotonic() + 5
            while not held and time.monotonic() < deadline:
                page.wait_for_timeout(50)
            assert held, "no poll read the kill switch"
            stale_route, stale = held[0]
            assert b'"zerodha","active":false' in stale.body()
            with page.expect_response(lambda r: r.request.method == "POST"
                                      and r.url.endswith("/api/v1/kill-switch")):
                kill.click()
            expect(kill).to_have_text("Resume zerodha")
            stale_route.fulfill(response=stale)  # the poll from before the Stop ends
            while len(held) < 2 and time.monotonic() < deadline + 5:
                page.wait_for_timeout(50)  # the next poll has begun: that one was drawn
            assert len(held) >= 2
            expect(kill).to_have_text("Resume zerodha", timeout=1)
            expect(page.locator("#killed")).to_be_visible(timeout=1)
            browser.close()
        assert errors == []
    finally:
        _release_live_switch(control)


def test_a_stop_on_its_way_says_so_and_a_second_press_sends_nothing(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """Pressed, the Stop showed no change until the API answered: a trader pressed it again,
    and the second press (the page still said "Stop") was a second Stop, or, once the first
    was drawn, a Resume. On its way, it says "Stopping zerodha…" and takes no press."""
    from playwright.sync_api import Dialog, Route, expect, sync_playwright

    url, _, control = server
    posts: list[Route] = []

    def answer(dialog: Dialog) -> None:
        dialog.dismiss() if "close every open" in dialog.message else dialog.accept()

    def hold_posts(route: Route) -> None:
        posts.append(route) if route.request.method == "POST" else route.continue_()

    try:
        with sync_playwright() as pw:
            browser, page, errors = open_dashboard(pw, url, answer)
            kill = _live_kill_switch(page)
            page.route("**/api/v1/kill-switch", hold_posts)
            kill.click()
            expect(kill).to_have_text("Stopping zerodha…")
            expect(kill).to_be_disabled()
            kill.click(force=True)  # a second press while it is on its way
            page.wait_for_timeout(1500)  # a poll or two: the text stays
            expect(kill).to_have_text("Stopping zerodha…")
            assert len(posts) == 1
            posts[0].continue_()
            expect(kill).to_have_text("Resume zerodha")
            expect(kill).to_be_enabled()
            expect(page.locator("#killed")).to_be_visible()
            assert len(posts) == 1 and len(control.calls) >= 1
            browser.close()
        assert errors == []
    finally:
        _release_live_switch(control)


def test_after_a_switch_of_tab_the_other_brokers_figures_are_greyed_until_its_own_come(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """Zerodha (live) pressed, paper's figures stayed on the page as they were, not greyed,
    until the live account's answer came: with the API slow to answer, the paper equity read
    as the live account's."""
    from playwright.sync_api import Route, expect, sync_playwright

    url, _, _ = server
    held: list[Route] = []
    with sync_playwright() as pw:
        browser, page, errors = open_dashboard(pw, url, lambda d: d.dismiss())
        page.route("**/api/v1/portfolios/zerodha", lambda route: held.append(route))
        page.get_by_role("button", name="Zerodha (live)").click()
        # at once: not once the poll gives up waiting (5 s)
        expect(page.locator("main")).to_have_class("stale", timeout=1000)
        expect(page.locator("#updated")).to_have_text("loading zerodha…", timeout=1000)
        expect(page.locator("#equity")).to_have_text("₹1,00,02,583.38")  # paper's, greyed
        assert page.locator("body").get_attribute("data-loaded-broker") == "paper"
        held[0].continue_()
        page.unroute("**/api/v1/portfolios/zerodha")
        expect(page.locator("body")).to_have_attribute("data-loaded-broker", "zerodha")
        expect(page.locator("main")).not_to_have_class("stale")
        expect(page.locator("#equity")).to_have_text("₹4,98,765.43")
        browser.close()
    assert errors == []


def test_orders_and_signals_of_more_than_one_day_say_which_day(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """The orders and signals tables showed the time alone: after a replay over days, or a
    run into the next session, yesterday's 15:19:40 sell sat under today's 09:15:40 buy as if
    of the same day. Rows of more than one IST day now carry their day, as the curve does."""
    from playwright.sync_api import expect, sync_playwright

    url, cache, _ = server
    orders_before = documents()[key("paper", "orders")]
    signals_before = documents()[key("paper", "signals")]
    orders = msgspec.json.decode(orders_before, type=list[OrderView])
    signals = msgspec.json.decode(signals_before, type=list[SignalView])
    yesterday = T0 - DAY + (6 * 3600 + 4 * 60) * S  # 24 Nov 15:19:00 IST
    orders[-1] = msgspec.structs.replace(orders[-1], ts=yesterday + 40 * S)
    signals[-1] = msgspec.structs.replace(signals[-1], ts=yesterday + 39 * S)
    _run_elsewhere(cache.set(key("paper", "orders"), enc(orders)))
    _run_elsewhere(cache.set(key("paper", "signals"), enc(signals)))
    try:
        with sync_playwright() as pw:
            browser, page, errors = open_dashboard(pw, url, lambda d: d.dismiss())
            times = page.locator("#orders tbody tr td:first-child")
            expect(times).to_have_text(["25 Nov, 09:16:41", "25 Nov, 09:16:40",
                                        "25 Nov, 09:16:39", "24 Nov, 15:19:40"])
            times = page.locator("#signals tbody tr td:first-child")
            expect(times).to_have_text(["25 Nov, 09:17:30", "25 Nov, 09:17:00",
                                        "24 Nov, 15:19:39"])
            for table in ("#orders", "#signals"):
                overflow = page.evaluate(
                    "t => { const p = document.querySelector(t).closest('.panel');"
                    " return p.scrollWidth - p.clientWidth; }", table)
                assert overflow <= 0, f"{table} is {overflow} px wider than its panel"
            # of one day, the time alone, as before
            _run_elsewhere(cache.set(key("paper", "orders"), orders_before))
            expect(page.locator("#orders tbody tr td:first-child").first).to_have_text(
                "09:16:41", timeout=5000)
            browser.close()
        assert errors == []
    finally:
        _run_elsewhere(cache.set(key("paper", "orders"), orders_before))
        _run_elsewhere(cache.set(key("paper", "signals"), signals_before))


def test_the_kill_switch_banner_says_what_its_flatten_left_open(
    server: tuple[str, MemoryCache, RecordingControl],
) -> None:
    """With flatten, the banner said "open positions were closed at market" from the moment
    the switch was set, whatever happened to the closing orders: a flatten the venue rejects
    is not sent again (RMS: margin exceeds available funds), and the position stays open
    under a banner saying it was closed. It now counts what the positions table shows open."""
    from playwright.sync_api import expect, sync_playwright

    url, cache, control = server
    held = PositionView(strategy_id="sma_cross_banks", instrument_token=341249, quantity=25,
                        average_price=1_718_35, last_price=1_724_90, realized=0,
                        unrealized=163_75, charges=31_12)
    closed = msgspec.structs.replace(held, quantity=0, unrealized=0, realized=163_75)

    async def kill(active: bool) -> None:
        await control.set_kill_switch("zerodha", active, active)

    _run_elsewhere(cache.set(key("zerodha", "positions"), enc([held])))
    _run_elsewhere(kill(True))
    try:
        with sync_playwright() as pw:
            browser, page, errors = open_dashboard(pw, url, lambda d: d.dismiss())
            page.get_by_role("button", name="Zerodha (live)").click()
            banner = page.locator("#killed")
            expect(banner).to_have_text(
                "Kill switch ON for zerodha: no new orders are sent; positions closing at "
                "market: 1 still open (see Positions).")
            _run_elsewhere(cache.set(key("zerodha", "positions"), enc([closed])))
            expect(banner).to_have_text(
                "Kill switch ON for zerodha: no new orders are sent; every position closed.",
                timeout=5000)
            browser.close()
        assert errors == []
    finally:
        _run_elsewhere(kill(False))
        _run_elsewhere(cache.delete(key("zerodha", "positions")))
