"""Operator controls: the kill switch, and the trader's cancel of one order.

``GET /api/v1/kill-switch`` shows each broker's switch as its risk manager applies it, or,
for a broker whose risk manager is not running, as last set on the log (``Control``): the
switch it will apply when it starts.
"""

from __future__ import annotations

import msgspec
from fastapi import APIRouter, HTTPException, Request

from alpha_panda.api import schemas as s
from alpha_panda.api.control import Control, check_order_id
from alpha_panda.api.documents import DocumentReader, parse_broker
from alpha_panda.domain.errors import ConfigurationError, ValidationError
from alpha_panda.domain.values import BROKERS
from alpha_panda.observability.logging import get_logger
from alpha_panda.readmodel.cache import Cache
from alpha_panda.readmodel.views import OPEN_STATUSES, KillSwitchView, key

router = APIRouter(prefix="/api/v1", tags=["control"])
log = get_logger(__name__)


def _control(request: Request, nothing: str) -> Control:
    """The running pipeline's controls; 503 in a process that runs none (the API alone)."""
    control: Control | None = request.app.state.control
    if control is None:
        raise HTTPException(503, detail=f"no trading pipeline runs in this process: {nothing}")
    return control


@router.get("/kill-switch", response_model=list[s.KillSwitchState])
async def kill_switches(request: Request) -> list[s.KillSwitchState]:
    """Each broker's kill switch as its risk manager applies it (restored from the log on
    restart); for a broker with no risk manager running, as last set on the log."""
    cache: Cache = request.app.state.cache
    control: Control | None = request.app.state.control
    out = []
    for b in BROKERS:
        raw = await cache.get(key(b, "kill_switch"))
        if raw is not None:
            view = msgspec.json.decode(raw, type=KillSwitchView)
            out.append(s.KillSwitchState(broker=b.value, active=view.active, flatten=view.flatten,
                                         set_at=view.set_at))
            continue
        last = await control.kill_switch(b.value) if control is not None else None
        out.append(s.KillSwitchState(broker=b.value, active=False, flatten=False) if last is None
                   else s.KillSwitchState(broker=b.value, active=last.active,
                                          flatten=last.flatten, set_at=last.set_at))
    return out


@router.post(
    "/kill-switch",
    response_model=s.KillSwitchState,
    responses={
        404: {"description": "unknown broker"},
        409: {"description": "the running system refused the request"},
        422: {"description": "a bad body, or flatten with active: false"},
        503: {"description": "no pipeline in this process to control"},
    },
)
async def kill_switch(body: s.KillSwitchRequest, request: Request) -> s.KillSwitchState:
    """Stop (or resume) new orders on one broker; with ``flatten``, also close its positions.
    ``flatten`` with ``active: false`` is refused (422): it would resume and close nothing."""
    broker = parse_broker(body.broker)
    if body.flatten and not body.active:
        raise HTTPException(422, detail=(
            "flatten applies only when switching trading off (active: true): releasing the "
            "switch keeps the positions; set it with flatten to close them"))
    control = _control(request, "nothing to stop")
    try:
        done = await control.set_kill_switch(broker.value, body.active, body.flatten)
    except (ValidationError, ConfigurationError) as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    log.warning("kill switch set", broker=broker.value, active=done.active, flatten=done.flatten)
    # as set on the log: what GET reads back until its risk manager applies it
    return s.KillSwitchState(broker=broker.value, active=done.active, flatten=done.flatten,
                             set_at=done.set_at)


@router.post(
    "/strategies/{strategy_id}/halt",
    response_model=s.HaltState,
    responses={
        404: {"description": "no such strategy"},
        422: {"description": "a bad body, or flatten with active: false"},
        503: {"description": "no pipeline in this process to control"},
    },
)
async def halt_strategy(strategy_id: str, request: Request,
                        body: s.HaltRequest | None = None) -> s.HaltState:
    """Take one strategy out of service on each of its brokers, the others trading on: its
    open orders are cancelled, what it signals goes nowhere (it still sees the ticks), and
    with ``flatten`` its positions are closed at market. ``active: false`` puts it back.
    Accepted, not done: its status in ``GET /api/v1/strategies`` shows when it is. Without
    a body it is halted, its positions kept (every field's default). ``flatten`` with
    ``active: false`` is refused (422): it would put the strategy back and close nothing."""
    body = body or s.HaltRequest()
    if body.flatten and not body.active:
        raise HTTPException(422, detail=(
            "flatten applies only when halting (active: true): a strategy put back in "
            "service keeps its positions; halt it with flatten to close them"))
    control = _control(request, "nothing to halt")
    view = next((v for v in await DocumentReader(request.app.state.cache).strategies()
                 if v.id == strategy_id and v.status != "INVALID"), None)
    if view is None:
        raise HTTPException(404, detail=f"no strategy {strategy_id!r} runs here")
    done = [await control.halt_strategy(b, strategy_id, body.active, body.flatten)
            for b in view.brokers]
    log.warning("strategy halt requested", strategy_id=strategy_id, active=body.active,
                flatten=body.flatten, brokers=view.brokers)
    return s.HaltState(strategy_id=strategy_id, active=body.active,
                       flatten=body.flatten, brokers=list(view.brokers),
                       requested_at=done[0].requested_at if done else 0)


@router.post(
    "/orders/{broker}/{order_id}/cancel",
    status_code=202,
    response_model=s.CancelState,
    responses={
        404: {"description": "unknown broker, or no such order on it"},
        409: {"description": "the order is closed already (filled, rejected or cancelled)"},
        422: {"description": "not an order id"},
        503: {"description": "no pipeline in this process to control"},
    },
)
async def cancel_order(broker: str, order_id: str, request: Request) -> s.CancelState:
    """Cancel what is left of one open order (reason ``user``). Accepted, not done: the
    broker's trading engine cancels it, or finds it filled first; the order's status then
    shows which (``GET /api/v1/orders/{broker}``)."""
    b = parse_broker(broker)
    control = _control(request, "nothing to cancel")
    try:
        check_order_id(order_id)
        # every open order is in the read model (closed ones only among the latest)
        view = next((o for o in await DocumentReader(request.app.state.cache).orders(b)
                     if o.order_id == order_id), None)
        if view is None:
            raise HTTPException(404, detail=f"no open order {order_id!r} on {b.value}")
        if view.status not in OPEN_STATUSES:
            raise HTTPException(409, detail=f"order {order_id} is {view.status}: "
                                            "nothing is left of it to cancel")
        done = await control.cancel_order(b.value, order_id)
    except ValidationError as exc:
        raise HTTPException(422, detail=str(exc)) from exc
    log.warning("order cancel requested", broker=b.value, order_id=order_id)
    return s.CancelState(broker=b.value, order_id=order_id, strategy_id=view.strategy_id,
                         status="requested", order_status=view.status,
                         requested_at=done.requested_at)
