"""The read API as a client sees it: exact money, filters, errors, health and controls."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import msgspec
import pytest

from alpha_panda.adapters.redis.cache import RedisCache
from alpha_panda.api.app import create_app
from alpha_panda.domain.errors import ConfigurationError, ValidationError
from alpha_panda.observability.health import HealthRegistry, State
from alpha_panda.readmodel.memory import MemoryCache
from alpha_panda.readmodel.views import PortfolioView, PositionView, StrategyPnlView
from alpha_panda.testing.control import RecordingControl
from alpha_panda.testing.redis_server import free_port

from .conftest import T0, Component

BROKER_ROUTES = ["portfolios", "positions", "orders", "signals"]


@pytest.mark.parametrize("route", BROKER_ROUTES)
@pytest.mark.parametrize("broker", ["paper", "zerodha"])
async def test_fresh_system_answers_empty_not_errors(
    client: httpx.AsyncClient, route: str, broker: str
) -> None:
    r = await client.get(f"/api/v1/{route}/{broker}")
    assert r.status_code == 200
    body = r.json()
    if route == "portfolios":
        assert body["broker"] == broker
        # the live account's funds are Kite's: unknown until read, never paper money
        cash = None if broker == "zerodha" else "0.00"
        assert body["cash"] == body["equity"] == cash and body["fills"] == 0
        assert body["equity_curve"] == [] and body["as_of_time"] is None
    else:
        assert body == [] and r.headers["x-total-count"] == "0"


async def test_live_funds_not_read_are_null_with_the_reason_while_pnl_shows(
    client: httpx.AsyncClient, filled: MemoryCache
) -> None:
    view = PortfolioView(
        broker="zerodha", as_of=T0, cash=None, realized=-1_250_00, unrealized=12_30,
        charges=64_20, gross_exposure=17_000_00, open_positions=1, fills=3,
        funds_from_broker=True,
        strategies=[StrategyPnlView(strategy_id="live_sma", realized=-1_250_00, unrealized=12_30,
                                    charges=64_20, cash=None, gross_exposure=17_000_00,
                                    open_positions=1, fills=3)])
    await filled.set("zerodha:portfolio", msgspec.json.encode(view))
    body = (await client.get("/api/v1/portfolios/zerodha")).json()
    assert body["cash"] is None and body["equity"] is None
    assert body["funds"] == "funds: not read from Kite yet" and body["funds_time"] is None
    assert body["net_pnl"] == "-1301.90" and body["realized"] == "-1250.00"
    [strategy] = body["strategies"]
    assert strategy["cash"] is None and strategy["equity"] is None
    assert strategy["net_pnl"] == "-1301.90"
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]["Portfolio"]
    assert "not been read yet" in schema["properties"]["cash"]["description"]


async def test_live_funds_read_from_kite_say_when(
    client: httpx.AsyncClient, filled: MemoryCache
) -> None:
    view = PortfolioView(
        broker="zerodha", as_of=T0, cash=4_98_765_43, realized=0, unrealized=0, charges=0,
        gross_exposure=0, open_positions=0, fills=0, funds_from_broker=True,
        funds_at=T0, equity=4_98_765_43)
    await filled.set("zerodha:portfolio", msgspec.json.encode(view))
    body = (await client.get("/api/v1/portfolios/zerodha")).json()
    assert body["cash"] == body["equity"] == "498765.43"
    assert body["funds"] == "Kite's cash at 24 Nov 21:30 IST, plus fills since"  # T0 in IST
    assert body["funds_time"] == "2025-11-24T16:00:00Z"
    paper = (await client.get("/api/v1/portfolios/paper")).json()
    assert paper["funds"].startswith("paper money")


@pytest.mark.parametrize("route", BROKER_ROUTES)
async def test_unknown_broker_is_404_naming_the_valid_ones(
    client: httpx.AsyncClient, route: str
) -> None:
    r = await client.get(f"/api/v1/{route}/kite")
    assert r.status_code == 404
    assert r.json() == {"detail": "unknown broker 'kite': expected one of paper, zerodha"}


async def test_portfolio_money_is_exact_rupee_strings(
    client: httpx.AsyncClient, filled: MemoryCache
) -> None:
    body = (await client.get("/api/v1/portfolios/paper")).json()
    assert body["cash"] == "99812345.67"
    assert body["realized"] == "1234.50"
    assert body["unrealized"] == "-56.05"
    assert body["charges"] == "42.17"
    # equity = cash + marked value of open positions (10 × 1719.55 − 50 × 1281.01), to the paisa
    assert body["market_value"] == "-46855.00"
    assert body["equity"] == "99765490.67"
    assert body["equity_curve"][-1]["equity"] == body["equity"]
    assert body["net_pnl"] == "1136.28"  # 1234.50 − 56.05 − 42.17
    assert body["equity_curve"][0] == {  # (a read model written without the capital)
        "ts": T0, "time": "2025-11-24T16:00:00Z", "equity": "100000000.00", "capital": None
    }
    assert body["open_positions"] == 2 and body["fills"] == 5
    assert body["strategies"][0]["strategy_id"] == "sma_cross_banks"
    assert body["strategies"][0]["equity"] == "99765490.67"
    # paper data never leaks into zerodha
    zerodha = (await client.get("/api/v1/portfolios/zerodha")).json()
    assert zerodha["cash"] is None and zerodha["strategies"] == []


async def test_the_projectors_equity_wins_when_written(
    client: httpx.AsyncClient, filled: MemoryCache
) -> None:
    raw = await filled.get("paper:portfolio")
    assert raw is not None
    doc = msgspec.json.decode(raw, type=PortfolioView)
    await filled.set("paper:portfolio", msgspec.json.encode(msgspec.structs.replace(doc, equity=5)))
    assert (await client.get("/api/v1/portfolios/paper")).json()["equity"] == "0.05"


async def test_the_equity_curve_says_the_capital_under_each_point(
    client: httpx.AsyncClient, filled: MemoryCache
) -> None:
    # a strategy removed between the points: ₹10 lakh of capital went out, not of P&L
    raw = await filled.get("paper:portfolio")
    assert raw is not None
    doc = msgspec.json.decode(raw, type=PortfolioView)
    await filled.set("paper:portfolio", msgspec.json.encode(msgspec.structs.replace(
        doc, curve_capital=[100_000_000_00, 99_000_000_00])))
    curve = (await client.get("/api/v1/portfolios/paper")).json()["equity_curve"]
    assert [(p["equity"], p["capital"]) for p in curve] == [
        ("100000000.00", "100000000.00"), ("99765490.67", "99000000.00")]
    # equity less capital is the net P&L: the curve fell ₹2,34,509.33, the P&L rose
    pnl = [Decimal(p["equity"]) - Decimal(p["capital"]) for p in curve]
    assert pnl == [Decimal("0.00"), Decimal("765490.67")]


async def test_positions_open_first_with_symbols(
    client: httpx.AsyncClient, filled: MemoryCache
) -> None:
    r = await client.get("/api/v1/positions/paper")
    assert r.headers["x-total-count"] == "3"
    rows = [(p["symbol"], p["quantity"], p["market_value"]) for p in r.json()]
    assert rows == [
        ("HDFCBANK", 10, "17195.50"),
        ("ICICIBANK", -50, "-64050.50"),
        ("INFY", 0, "0.00"),
    ]
    open_only = (await client.get("/api/v1/positions/paper?include_closed=false")).json()
    assert [p["symbol"] for p in open_only] == ["HDFCBANK", "ICICIBANK"]


async def test_orders_filters_newest_first(client: httpx.AsyncClient, filled: MemoryCache) -> None:
    every = (await client.get("/api/v1/orders/paper")).json()
    assert [o["order_id"] for o in every] == ["o3", "o2", "o1"]
    o3 = every[0]
    assert o3["limit_price"] == "1281.05" and o3["trigger_price"] is None
    assert o3["symbol"] == "ICICIBANK"
    assert (o3["product"], o3["validity"], o3["parent_order_id"]) == ("MIS", "DAY", "o0")
    assert (every[1]["product"], every[1]["parent_order_id"]) == (None, None)  # an old view
    filled_only = (await client.get("/api/v1/orders/paper?status=filled")).json()
    assert [o["order_id"] for o in filled_only] == ["o2"]
    assert filled_only[0]["average_price"] == "1720.10"
    mine = await client.get("/api/v1/orders/paper?strategy_id=sma_cross_banks&limit=1")
    assert mine.headers["x-total-count"] == "2" and [o["order_id"] for o in mine.json()] == ["o3"]
    rejected = (await client.get("/api/v1/orders/paper?status=REJECTED")).json()
    assert rejected[0]["reason"] == "insufficient funds"
    # every order that may still fill, in one ask
    still_open = (await client.get("/api/v1/orders/paper?status=open")).json()
    assert [o["order_id"] for o in still_open] == ["o3"]


async def test_signals_show_rejections_with_reasons(
    client: httpx.AsyncClient, filled: MemoryCache
) -> None:
    r = await client.get("/api/v1/signals/paper?status=rejected")
    assert r.headers["x-total-count"] == "1"
    [s] = r.json()
    assert (s["reason_code"], s["message"]) == ("MAX_POSITION", "position 110 would exceed max 50")
    assert s["symbol"] == "HDFCBANK" and s["time"] == "2025-11-24T16:00:02.500000Z"


async def test_strategies_with_status(client: httpx.AsyncClient, filled: MemoryCache) -> None:
    body = (await client.get("/api/v1/strategies")).json()
    assert [(s["id"], s["status"]) for s in body] == [("sma_cross_banks", "ACTIVE"), ("broken", "FAILED")]
    assert body[0]["symbols"] == ["HDFCBANK", "ICICIBANK"]
    assert body[1]["error"] == "ZeroDivisionError: division by zero"


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("status=SHIPPED", "query parameter 'status'"),
        ("limit=0", "greater than or equal to 1"),
        ("limit=5000", "less than or equal to 1000"),
        ("limit=ten", "valid integer"),
    ],
)
async def test_bad_query_params_are_422_with_a_clear_message(
    client: httpx.AsyncClient, query: str, fragment: str
) -> None:
    r = await client.get(f"/api/v1/orders/paper?{query}")
    assert r.status_code == 422
    assert fragment in r.json()["detail"]


async def test_health_and_readiness(client: httpx.AsyncClient, registry: HealthRegistry) -> None:
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/ready")).status_code == 503  # nothing registered yet
    feed, risk = Component("feed"), Component("risk", State.STARTING, ready=False)
    registry.register(feed)
    registry.register(risk)
    r = await client.get("/ready")
    assert r.status_code == 503 and r.json()["status"] == "not_ready"
    assert {c["name"]: c["ready"] for c in r.json()["components"]} == {"feed": True, "risk": False}
    assert (await client.get("/health")).status_code == 200  # starting is alive
    risk.state, risk.ready = State.RUNNING, True
    assert (await client.get("/ready")).status_code == 200
    feed.state, feed.ready = State.FAILED, False
    r = await client.get("/health")
    assert r.status_code == 503 and r.json()["status"] == "failed"


async def test_metrics_alone_reports_each_component_as_it_is_now(
        client: httpx.AsyncClient, registry: HealthRegistry) -> None:
    # a Prometheus scrapes /metrics only, nothing polls /health or /ready
    engine = Component("metrics-engine", State.STARTING, ready=False)
    registry.register(engine)
    assert 'alpha_panda_component_ready{component="metrics-engine"} 0.0' in (
        await client.get("/metrics")).text
    engine.state, engine.ready = State.RUNNING, True
    assert 'alpha_panda_component_ready{component="metrics-engine"} 1.0' in (
        await client.get("/metrics")).text
    engine.state, engine.ready = State.FAILED, False
    assert 'alpha_panda_component_ready{component="metrics-engine"} 0.0' in (
        await client.get("/metrics")).text


async def test_metrics_counts_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/api/v1/orders/zerodha")
    text = (await client.get("/metrics")).text
    assert 'route="/api/v1/orders/{broker}"' in text
    assert "alpha_panda_http_request_duration_seconds_bucket" in text


async def test_kill_switch_calls_control(
    client: httpx.AsyncClient, control: RecordingControl
) -> None:
    r = await client.post("/api/v1/kill-switch", json={"active": True, "flatten": True, "broker": "zerodha"})
    assert r.status_code == 200
    assert r.json()["active"] is True and r.json()["set_at"] > 0
    assert control.calls == [("zerodha", True, True)]
    states = {k["broker"]: k["active"] for k in (await client.get("/api/v1/kill-switch")).json()}
    assert states == {"paper": False, "zerodha": True}
    bad = await client.post("/api/v1/kill-switch", json={"active": True, "broker": "kite"})
    assert bad.status_code == 404 and control.calls == [("zerodha", True, True)]
    control.refuse = ConfigurationError("zerodha is not running in this process")
    refused = await client.post("/api/v1/kill-switch", json={"active": False, "broker": "zerodha"})
    assert refused.status_code == 409 and "not running" in refused.json()["detail"]
    # a refused request leaves the last known state alone
    states = {k["broker"]: k["active"] for k in (await client.get("/api/v1/kill-switch")).json()}
    assert states["zerodha"] is True
    missing = await client.post("/api/v1/kill-switch", json={"broker": "paper"})
    assert missing.status_code == 422 and "active" in missing.json()["detail"]
    # a release with flatten would close nothing: refused, not silently dropped
    control.refuse = None
    both = await client.post("/api/v1/kill-switch",
                             json={"active": False, "flatten": True, "broker": "paper"})
    assert both.status_code == 422 and both.json()["detail"].startswith(
        "flatten applies only when switching trading off")
    assert control.calls == [("zerodha", True, True)]


async def test_kill_switch_without_a_pipeline_is_503() -> None:
    app = create_app(cache=MemoryCache(), health=HealthRegistry())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        r = await c.post("/api/v1/kill-switch", json={"active": True, "broker": "paper"})
    assert r.status_code == 503


async def test_cancel_asks_control_for_open_orders_only(
    client: httpx.AsyncClient, control: RecordingControl, filled: MemoryCache
) -> None:
    r = await client.post("/api/v1/orders/paper/o3/cancel")
    assert r.status_code == 202
    assert r.json() == {"broker": "paper", "order_id": "o3", "strategy_id": "sma_cross_banks",
                        "status": "requested", "order_status": "SUBMITTED", "requested_at": T0}
    assert control.cancels == [("paper", "o3")]
    for order_id, status in (("o2", "FILLED"), ("o1", "REJECTED")):
        closed = await client.post(f"/api/v1/orders/paper/{order_id}/cancel")
        assert closed.status_code == 409
        assert closed.json()["detail"] == (f"order {order_id} is {status}: "
                                           "nothing is left of it to cancel")
    missing = await client.post("/api/v1/orders/paper/nope/cancel")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no open order 'nope' on paper"
    unknown = await client.post("/api/v1/orders/kite/o3/cancel")
    assert unknown.status_code == 404 and "unknown broker 'kite'" in unknown.json()["detail"]
    assert control.cancels == [("paper", "o3")]  # nothing more was asked
    bad = await client.post("/api/v1/orders/paper/x%20y/cancel")
    assert bad.status_code == 422 and bad.json()["detail"] == "not an order id: 'x y'"
    # a 5,000-character id came back whole in the message: what is echoed is capped
    long = await client.post(f"/api/v1/orders/paper/{'a' * 5000}/cancel")
    assert long.status_code == 422
    assert long.json()["detail"] == (f"not an order id: '{'a' * 64}'… (5000 characters; an "
                                     "order id has at most 64)")
    control.refuse = ValidationError("unknown broker 'paper'")  # the pipeline's own refusal
    refused = await client.post("/api/v1/orders/paper/o3/cancel")
    assert refused.status_code == 422 and refused.json()["detail"] == "unknown broker 'paper'"
    assert control.cancels == [("paper", "o3")]


async def test_cancel_without_a_pipeline_is_503() -> None:
    app = create_app(cache=MemoryCache(), health=HealthRegistry())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        r = await c.post("/api/v1/orders/paper/o3/cancel")
    assert r.status_code == 503


async def test_openapi_documents_money_as_exact_strings(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    realized = schema["components"]["schemas"]["Portfolio"]["properties"]["realized"]
    assert realized["type"] == "string" and realized["pattern"] == r"^-?\d+\.\d{2}$"
    assert "rupees" in realized["description"]
    cash = schema["components"]["schemas"]["Portfolio"]["properties"]["cash"]
    assert {"type": "null"} in cash["anyOf"]  # a live account's, not read from Kite yet
    assert "/api/v1/kill-switch" in schema["paths"]
    orders = schema["paths"]["/api/v1/orders/{broker}"]["get"]["responses"]["200"]
    assert {"X-Total-Count", "X-Kept-Latest"} <= set(orders["headers"])
    for path, kept in (("/api/v1/orders/paper", "500"), ("/api/v1/signals/paper", "500"),
                       ("/api/v1/positions/paper", None)):
        listed = await client.get(path)
        assert listed.headers.get("X-Kept-Latest") == kept, path
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_corrupt_document_is_500_naming_the_key(
    client: httpx.AsyncClient, cache: MemoryCache
) -> None:
    await cache.set("paper:orders", b'{"not": "a list"}')
    r = await client.get("/api/v1/orders/paper")
    assert r.status_code == 500 and "'paper:orders'" in r.json()["detail"]


async def test_unreachable_redis_is_503_with_retry_after() -> None:
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.5)
    app = create_app(cache=cache, health=HealthRegistry())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as c:
        r = await c.get("/api/v1/portfolios/paper")
    await cache.close()
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert "read model unavailable" in r.json()["detail"]


async def test_requests_continue_the_callers_trace(client: httpx.AsyncClient) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    from alpha_panda.observability.tracing import add_span_exporter, setup_tracing

    setup_tracing("api-test", "none")
    spans = InMemorySpanExporter()
    add_span_exporter(spans)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    traceparent = f"00-{trace_id}-00f067aa0ba902b7-01"
    await client.get("/api/v1/orders/paper", headers={"traceparent": traceparent})
    [span] = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert span.name == "GET /api/v1/orders/{broker}"
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == "00f067aa0ba902b7"


async def test_zerodha_login_routes_are_included_only_when_present(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    from alpha_panda.api import app as app_module

    present = importlib.util.find_spec("alpha_panda.api.routes.auth") is not None
    paths = create_app(cache=MemoryCache(), health=HealthRegistry()).openapi()["paths"]
    assert ("/auth/zerodha/callback" in paths) is present
    # a build without the Zerodha module still serves everything else
    monkeypatch.setattr(app_module, "_AUTH_MODULE", "alpha_panda.api.routes.no_such_auth")
    paths = create_app(cache=MemoryCache(), health=HealthRegistry()).openapi()["paths"]
    assert "/auth/zerodha/callback" not in paths and "/api/v1/strategies" in paths


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("orders", ("'OPEN', 'SUBMITTED', 'PARTIALLY_FILLED', 'FILLED', 'REJECTED' or "
                   "'CANCELLED'")),
        ("signals", "'VALIDATED' or 'REJECTED'"),
    ],
)
async def test_a_bad_status_filter_echoes_what_was_sent(
    client: httpx.AsyncClient, path: str, allowed: str
) -> None:
    r = await client.get(f"/api/v1/{path}/paper?status=bogus")
    assert r.status_code == 422
    assert r.json()["detail"] == (
        f"query parameter 'status': Input should be {allowed} (got 'bogus')")
    assert r.json()["errors"][0]["input"] == "bogus"


def test_the_login_writes_the_session_under_the_running_systems_data_dir(tmp_path: Path) -> None:
    # `run --data-dir /srv/ap`: the dashboard's Kite login must store the session where the
    # engine and preflight read it, not under ./data of the directory it was started in
    from types import SimpleNamespace

    from alpha_panda.api.routes.auth import get_zerodha_settings
    from alpha_panda.settings import Settings

    running = Settings().model_copy(update={"data_dir": tmp_path / "srv"})
    app = create_app(cache=MemoryCache(), health=HealthRegistry(), app_settings=running)
    zs = get_zerodha_settings(SimpleNamespace(app=app))  # type: ignore[arg-type]
    assert zs.session_path == tmp_path / "srv" / "zerodha_session.enc"


async def test_a_halt_without_a_body_halts_as_the_readme_says(
    client: httpx.AsyncClient, control: RecordingControl, filled: MemoryCache
) -> None:
    # `curl -X POST .../halt`: every field of the body has its default (active, no flatten);
    # it was refused 422 "body: Field required"
    r = await client.post("/api/v1/strategies/sma_cross_banks/halt")
    assert r.status_code == 200, r.text
    assert (r.json()["active"], r.json()["flatten"]) == (True, False)
    assert control.halts == [("paper", "sma_cross_banks", True, False)]
    assert (await client.post("/api/v1/strategies/nope/halt")).status_code == 404
    # a body is still checked as strictly as before
    for bad in ({"active": "no"}, {"flaten": True}):
        assert (await client.post("/api/v1/strategies/sma_cross_banks/halt",
                                  json=bad)).status_code == 422
    assert len(control.halts) == 1


async def test_flatten_with_a_release_is_refused_not_dropped(
    client: httpx.AsyncClient, control: RecordingControl, filled: MemoryCache
) -> None:
    # {"active": false, "flatten": true} answered 200 and put the strategy back without
    # closing anything: the trader who asked for a flatten got none, and was not told
    r = await client.post("/api/v1/strategies/sma_cross_banks/halt",
                          json={"active": False, "flatten": True})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == (
        "flatten applies only when halting (active: true): a strategy put back in service "
        "keeps its positions; halt it with flatten to close them")
    assert control.halts == []
    ok = await client.post("/api/v1/strategies/sma_cross_banks/halt",
                           json={"active": False, "flatten": False})
    assert ok.status_code == 200 and control.halts == [("paper", "sma_cross_banks", False, False)]


async def test_the_portfolio_reads_its_documents_of_one_flush_together() -> None:
    """The portfolio and positions documents are written in one flush (one transaction on
    Redis and the shared SQLite cache): read apart, a flush of another process between
    the two reads showed cash and equity before a buy next to a market value after it."""

    def flush(cash: int, quantity: int) -> dict[str, bytes]:
        view = PortfolioView(broker="paper", as_of=T0, cash=cash, realized=0, unrealized=0,
                             charges=0, gross_exposure=quantity * 100_00, open_positions=1,
                             fills=1, equity=cash + quantity * 100_00)
        position = PositionView(strategy_id="s", instrument_token=7, quantity=quantity,
                                average_price=100_00, last_price=100_00, realized=0,
                                unrealized=0, charges=0)
        return {"paper:portfolio": msgspec.json.encode(view),
                "paper:positions": msgspec.json.encode([position])}

    class WrittenBetweenReads(MemoryCache):
        """Another process's flush lands after the first single-key read."""

        async def get(self, key: str) -> bytes | None:
            value = await super().get(key)
            await self.set_many(flush(1_000_000_00 - 20 * 100_00, 20))
            return value

    cache = WrittenBetweenReads()
    await cache.set_many(flush(1_000_000_00 - 10 * 100_00, 10))
    app = create_app(cache=cache, health=HealthRegistry())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://api") as c:
        body = (await c.get("/api/v1/portfolios/paper")).json()
    assert Decimal(body["cash"]) + Decimal(body["market_value"]) == Decimal(body["equity"])


async def test_openapi_documents_the_422_body_as_served(client: httpx.AsyncClient) -> None:
    """The 422 body is ``{"detail": "<one line>", "errors": [...]}``: the schema said
    FastAPI's default, ``detail`` an array of objects, which a client generated from
    /openapi.json fails to parse on every bad request."""
    served = (await client.get("/api/v1/orders/paper?limit=0")).json()
    schema = (await client.get("/openapi.json")).json()
    responses = schema["paths"]["/api/v1/orders/{broker}"]["get"]["responses"]
    ref = responses["422"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert body["properties"]["detail"]["type"] == "string"
    assert isinstance(served["detail"], str)
    assert body["properties"]["errors"]["type"] == "array"
    assert set(served) <= set(body["properties"]) and "detail" in body["required"]
