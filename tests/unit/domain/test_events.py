from __future__ import annotations

import pytest

from alpha_panda.domain.errors import DecodeError, ValidationError
from alpha_panda.domain.events import (
    CODEC,
    MarketTick,
    OrderFilled,
    Signal,
    derive_id,
    new_envelope,
)
from alpha_panda.domain.values import Side, format_rupees, to_paise


def _tick_env() -> bytes:
    tick = MarketTick(instrument_token=738561, last_price=250005, ts=1_700_000_000_000_000_000)
    return CODEC.encode(new_envelope(tick, id="t1", ts=tick.ts, source="sim", key="738561"))


def test_envelope_round_trips_with_its_payload_type() -> None:
    env = CODEC.decode(_tick_env())
    assert isinstance(env.data, MarketTick)
    assert env.data.last_price == 250005
    assert env.correlation_id == "t1" and env.causation_id is None


def test_malformed_payload_names_the_field() -> None:
    raw = _tick_env().replace(b'"last_price":250005', b'"last_price":"2500.05"')
    with pytest.raises(DecodeError, match=r"last_price"):
        CODEC.decode(raw)


def test_unknown_type_and_garbage_are_decode_errors() -> None:
    with pytest.raises(DecodeError, match="unknown event type"):
        CODEC.decode(_tick_env().replace(b'"market_tick"', b'"nope"'))
    with pytest.raises(DecodeError):
        CODEC.decode(b"\x00not json")


def test_decode_as_refuses_the_wrong_type() -> None:
    with pytest.raises(DecodeError, match="expected event type 'order_filled'"):
        CODEC.decode_as(_tick_env(), OrderFilled)


def test_children_follow_correlation_and_causation() -> None:
    parent = CODEC.decode(_tick_env())
    sig = Signal(strategy_id="s", instrument_token=1, side=Side.BUY, quantity=1)
    child = new_envelope(sig, id=derive_id(parent.id, "strategy:s"), ts=1, source="runner",
                         key="s:1", broker="paper", parent=parent)
    assert child.correlation_id == parent.correlation_id
    assert child.causation_id == parent.id


def test_derived_ids_are_deterministic_and_distinct() -> None:
    assert derive_id("a", "risk") == derive_id("a", "risk")
    assert len({derive_id("a", "risk"), derive_id("a", "risk", 1), derive_id("b", "risk"),
                derive_id("a", "paper")}) == 4


def test_paise_conversion_is_exact() -> None:
    assert to_paise("101.05") == 10105
    assert to_paise(101.05) == 10105
    assert to_paise(0.1) + to_paise(0.2) == to_paise(0.3)
    assert format_rupees(-123456) == "-₹1,234.56"
    # lakh and crore, as the dashboard and Kite group them
    assert [format_rupees(p) for p in (0, 5, 99_999_99, 5_76_225_00, -1_23_45_678_00)] == [
        "₹0.00", "₹0.05", "₹99,999.99", "₹5,76,225.00", "-₹1,23,45,678.00"]
    with pytest.raises(ValidationError, match="fractions of a paisa"):
        to_paise("1.001")
