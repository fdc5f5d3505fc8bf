"""What is wrong with a signal a strategy returned: the runner's checks, spelled out.

The runner tests the usual case inline, and ``_typed`` (``StrategyRunner._accept``, per
signal); ``_invalid`` says what is wrong otherwise, for the error that takes the strategy
out of service. Separate from ``runner`` as pure functions of a signal.
"""

from __future__ import annotations

from collections.abc import Collection

from alpha_panda.domain.events import Signal
from alpha_panda.domain.values import OrderType, Product, Side, Validity


def _invalid(sig: object, sid: str, instruments: Collection[int]) -> str | None:
    if not isinstance(sig, Signal):
        return f"returned {type(sig).__name__}, not a Signal"
    if sig.strategy_id != sid:
        return f"emitted a signal for strategy {sig.strategy_id!r}"
    if sig.instrument_token not in instruments:
        return f"emitted a signal for instrument {sig.instrument_token} it does not trade"
    if type(sig.quantity) is not int:
        return (f"emitted a signal with quantity {sig.quantity!r} "
                f"({type(sig.quantity).__name__}): quantities are whole shares (int)")
    if sig.quantity <= 0:
        return f"emitted a signal with quantity {sig.quantity}"
    return _typed(sig)


_PRICES = ("limit_price", "trigger_price", "take_profit", "stop_loss", "price_hint")
_ENUMS = (("side", Side), ("order_type", OrderType), ("product", Product), ("validity", Validity))


def _typed(sig: Signal) -> str | None:
    """What is of the wrong type in ``sig`` (a ``Signal`` is not checked when built): the
    log's codec would refuse it downstream, and the backtest would misread it."""
    if type(sig.instrument_token) is not int:
        return f"emitted a signal for instrument {sig.instrument_token!r}: expected an int token"
    for name in _PRICES:
        value = getattr(sig, name)
        if value is not None and type(value) is not int:
            return (f"emitted a signal with {name} {value!r} ({type(value).__name__}): prices "
                    "are int paise (an average is a float: round it, e.g. int(x) // t * t)")
    for name, kind in _ENUMS:
        value = getattr(sig, name)
        if not isinstance(value, kind):
            return (f"emitted a signal with {name} {value!r}: expected a {kind.__name__} "
                    f"(from alpha_panda.strategy import {kind.__name__})")
    if not isinstance(sig.reason, str):
        return f"emitted a signal with reason {sig.reason!r}: expected text"
    return None
