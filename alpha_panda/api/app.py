"""The FastAPI application: the read API, operator controls and the dashboard.

``create_app`` is the only entry point. The app holds no state of its own: every answer
comes from the cache (filled by the projector), the health registry, or ``Control``.
"""

from __future__ import annotations

import importlib
import importlib.util
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from alpha_panda import __version__
from alpha_panda.api.control import Control
from alpha_panda.api.routes import control as control_routes
from alpha_panda.api.routes import health as health_routes
from alpha_panda.api.routes import trading as trading_routes
from alpha_panda.domain.errors import InvariantViolation, TransientError
from alpha_panda.observability.health import HealthRegistry
from alpha_panda.observability.logging import get_logger
from alpha_panda.observability.metrics import HTTP_LATENCY, HTTP_REQUESTS
from alpha_panda.readmodel.cache import Cache
from alpha_panda.settings import ApiSettings
from alpha_panda.stream.dlq import DeadLetterCounts

STATIC_DIR = Path(__file__).parent / "static"
_AUTH_MODULE = "alpha_panda.api.routes.auth"
log = get_logger(__name__)


def create_app(
    *,
    cache: Cache,
    health: HealthRegistry,
    control: Control | None = None,
    settings: ApiSettings | None = None,
    app_settings: Any = None,
    dead_letters: DeadLetterCounts | None = None,
) -> FastAPI:
    """Build the API over ``cache`` (read model) and ``health`` (components of this process).

    Args:
        cache: where the projector writes the read-model documents.
        health: the components whose state ``/health`` and ``/ready`` report.
        control: the running pipeline's controls (kill switch); None: the endpoint answers 503.
        settings: the API section of the settings (host and port are the server's business).
        app_settings: the running system's settings (its data directory holds the Kite
            session the login writes); None: read from the environment when needed.
        dead_letters: the log's dead-letter counts, read for each ``/metrics`` scrape;
            None: ``alpha_panda_dead_letters_total`` is not served.
    """
    # FastAPIOffline serves Swagger UI and ReDoc from the package: /docs works offline
    app = FastAPIOffline(
        title="Alpha Panda",
        version=__version__,
        description=(
            "Read API of Alpha Panda: portfolios, positions, orders, signals and strategies per "
            "broker (paper, zerodha), served from the read-model cache. Money is exact: rupee "
            "decimal strings with two places, never floats."
        ),
    )
    app.state.cache = cache
    app.state.health = health
    app.state.control = control
    app.state.settings = settings or ApiSettings.model_validate({})
    app.state.app_settings = app_settings
    app.state.dead_letters = dead_letters
    app.include_router(health_routes.router)
    app.include_router(trading_routes.router)
    app.include_router(control_routes.router)
    _include_auth(app)
    _install_error_handlers(app)
    _document_errors(app)
    _install_metrics(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    return app


def _include_auth(app: FastAPI) -> None:
    # the Zerodha login routes are optional: absent in a build without them, but an error
    # inside a module that exists must surface, not silently drop the login page
    if importlib.util.find_spec(_AUTH_MODULE) is None:
        return
    module = importlib.import_module(_AUTH_MODULE)
    app.include_router(module.router)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [_describe(e) for e in exc.errors()]
        return JSONResponse(
            {"detail": "; ".join(errors), "errors": _jsonable(exc.errors())}, status_code=422
        )

    @app.exception_handler(TransientError)
    async def unavailable(_: Request, exc: TransientError) -> JSONResponse:
        log.warning("read model unavailable", error=str(exc))
        return JSONResponse(
            {"detail": f"read model unavailable, retry shortly: {exc}"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(InvariantViolation)
    async def broken(_: Request, exc: InvariantViolation) -> JSONResponse:
        log.error("read model corrupt", error=str(exc))
        return JSONResponse({"detail": str(exc)}, status_code=500)


_BAD_REQUEST_BODY: dict[str, Any] = {
    "title": "HTTPValidationError",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "title": "Detail",
                   "description": "What is wrong, in one line: each parameter and why."},
        "errors": {"type": "array", "title": "Errors",
                   "items": {"$ref": "#/components/schemas/ValidationError"},
                   "description": "The same, one object per error (absent when a route "
                                  "refuses the request as a whole)."},
    },
}


def _document_errors(app: FastAPI) -> None:
    """The 422 body in the OpenAPI schema as ``bad_request`` serves it (FastAPI documents
    its own: ``detail`` an array, which a generated client then fails to parse)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schemas = schema.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = _BAD_REQUEST_BODY
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _describe(error: Any) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()))
    where = where.replace("query.", "query parameter '", 1)
    if where.startswith("query parameter '"):
        where += "'"
    value = error.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, dict) else ""
    return f"{where}: {error.get('msg', 'invalid')}{shown}"


def _jsonable(errors: Any) -> list[dict[str, Any]]:
    # pydantic may put exception objects in ``ctx``; keep what JSON can carry
    out = []
    for e in errors:
        item = {k: v for k, v in e.items() if k in ("type", "loc", "msg", "input")}
        if not isinstance(item.get("input"), str | int | float | bool | type(None) | list | dict):
            item["input"] = repr(item.get("input"))
        out.append(item)
    return out


def _install_metrics(app: FastAPI) -> None:
    # tracing needs nothing here: FastAPI's native telemetry opens a server span per request
    # and continues the caller's W3C traceparent; this adds the Prometheus side
    @app.middleware("http")
    async def count(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        # the route template, not the raw path: /api/v1/orders/{broker}, bounded label values
        name = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(request.method, name, str(response.status_code)).inc()
        HTTP_LATENCY.labels(request.method, name).observe(time.perf_counter() - start)
        return response
