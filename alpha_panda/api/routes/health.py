"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from alpha_panda.api import schemas as s
from alpha_panda.domain.errors import AlphaPandaError
from alpha_panda.observability.health import ComponentStatus, HealthRegistry
from alpha_panda.observability.logging import get_logger
from alpha_panda.observability.metrics import COMPONENT_UP, METRICS_CONTENT_TYPE, metrics_text
from alpha_panda.stream.dlq import DeadLetterCounts
from alpha_panda.stream.metrics import DEAD_LETTERS_ON_LOG

log = get_logger(__name__)

router = APIRouter(tags=["operations"])


def _components(statuses: list[ComponentStatus]) -> list[s.ComponentHealth]:
    out = []
    for c in statuses:
        COMPONENT_UP.labels(c.name).set(1 if c.ready else 0)
        out.append(
            s.ComponentHealth(
                name=c.name, state=c.state.value, ready=c.ready, detail=c.detail, lag=c.lag,
                processed=c.processed, errors=c.errors,
            )
        )
    return out


def _registry(request: Request) -> HealthRegistry:
    registry: HealthRegistry = request.app.state.health
    return registry


def _answer(status: str, code: int, components: list[s.ComponentHealth]) -> JSONResponse:
    body = s.Health(status=status, components=components)
    return JSONResponse(body.model_dump(mode="json"), status_code=code)


@router.get("/health", response_model=s.Health, responses={503: {"model": s.Health}})
async def health(request: Request) -> JSONResponse:
    """Liveness: 200 while no component has FAILED, else 503 (restart the process)."""
    statuses = _registry(request).snapshot()
    components = _components(statuses)
    if any(c.state == "failed" for c in components):
        return _answer("failed", 503, components)
    return _answer("ok", 200, components)


@router.get("/ready", response_model=s.Health, responses={503: {"model": s.Health}})
async def ready(request: Request) -> JSONResponse:
    """Readiness: 200 only when every registered component is ready, else 503 with each status."""
    statuses = _registry(request).snapshot()
    components = _components(statuses)
    if statuses and all(c.ready for c in statuses):
        return _answer("ready", 200, components)
    return _answer("not_ready", 503, components)


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Every Prometheus metric of this process (text exposition format)."""
    # alpha_panda_component_ready as of now: it was set only by /health and /ready, so a
    # Prometheus that scrapes /metrics alone read no component (or one long since failed
    # still ready) unless something else polled those
    _components(_registry(request).snapshot())
    # the log's dead letters, as of now and the same after a restart (the process's own
    # count started from 0 with it, and an alert on it went quiet)
    counts: DeadLetterCounts | None = request.app.state.dead_letters
    if counts is not None:
        try:
            DEAD_LETTERS_ON_LOG.set(await counts.refresh())
        except AlphaPandaError as exc:  # the log unreachable: the last counts read stand
            log.warning("metrics.dead_letters_unread", error=str(exc))
    return Response(content=metrics_text(), media_type=METRICS_CONTENT_TYPE)
