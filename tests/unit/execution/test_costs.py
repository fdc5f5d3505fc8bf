"""Zerodha's charges against worked examples computed by hand from the rate card.

Hand computations use the 2026-04-01 card (alpha_panda/data/charges/zerodha_2026-04-01.json):
NSE transaction 0.00307% (equity), 0.00183% (futures), 0.03553% (options premium);
STT 0.1% both sides (delivery), 0.025% sell (intraday), 0.05% sell (futures), 0.15% sell
(options); stamp 0.015% / 0.003% / 0.002% / 0.003% on buys; SEBI ₹10/crore; GST 18%.
Every component is rounded half up to the paisa, but a round trip's STT (the calculator's:
each leg its scrip's only trade of its day), which is rounded half up to the rupee.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alpha_panda.domain.errors import ConfigurationError, ValidationError
from alpha_panda.domain.events import Charges
from alpha_panda.domain.values import Product, Side
from alpha_panda.execution.costs import CostModel, Segment


@pytest.fixture(scope="module")
def model() -> CostModel:
    return CostModel.load(as_of=date(2026, 11, 24))


def test_the_newest_card_in_force_is_chosen_by_date() -> None:
    assert CostModel.load(as_of=date(2025, 6, 1)).version == "2024-10-01"
    assert CostModel.load(as_of=date(2026, 4, 1)).version == "2026-04-01"
    assert CostModel.load().version == "2026-04-01"
    with pytest.raises(ConfigurationError):
        CostModel.load(as_of=date(2020, 1, 1))


def test_equity_intraday_round_trip(model: CostModel) -> None:
    # buy 400 @ ₹1,000 (₹4,00,000), sell 400 @ ₹1,100 (₹4,40,000)
    rt = model.round_trip(Segment.EQUITY_INTRADAY, 1000_00, 1100_00, 400)
    # buy: brokerage min(20, 120) = 20; txn 12.28; SEBI 0.40; stamp 12.00;
    # GST 18% of 32.68 = 5.8824 -> 5.88
    assert rt.buy == Charges(brokerage=2000, stt=0, exchange_txn=1228, sebi=40, stamp_duty=1200, gst=588)
    # sell: brokerage 20; STT 110.00; txn 13.508 -> 13.51; SEBI 0.44; GST 18% of 33.95 = 6.111 -> 6.11
    assert rt.sell == Charges(brokerage=2000, stt=11000, exchange_txn=1351, sebi=44, stamp_duty=0, gst=611)
    assert rt.turnover == 840_000_00
    assert rt.total_charges == 200_62
    assert rt.gross_pnl == 40_000_00
    assert rt.net_pnl == 39_799_38


def test_equity_delivery_round_trip(model: CostModel) -> None:
    rt = model.round_trip(Segment.EQUITY_DELIVERY, 1000_00, 1100_00, 400)
    # zero brokerage; STT 0.1% both sides; stamp 0.015% = 60 on the buy; the sell (from
    # holdings, on a later day) pays the DP charge: ₹13 + 18% GST = ₹15.34 (₹13.50, so
    # ₹15.93, on the 2024 card)
    assert rt.buy == Charges(brokerage=0, stt=400_00, exchange_txn=1228, sebi=40, stamp_duty=60_00, gst=228)
    assert rt.sell == Charges(
        brokerage=0, stt=440_00, exchange_txn=1351, sebi=44, stamp_duty=0, gst=251, dp=15_34)
    assert rt.total_charges == 931_42 + 15_34


def test_the_dp_charge_is_on_both_cards_and_only_in_delivery() -> None:
    # Zerodha's support article now says ₹13 + 18% GST
    for as_of, dp, with_gst in ((date(2025, 1, 1), 13_50, 15_93), (date(2026, 11, 24), 13_00, 15_34)):
        model = CostModel.load(as_of=as_of)
        assert model.rates(Segment.EQUITY_DELIVERY).dp_charge == dp
        assert model.dp_charge() == model.dp_charge(Segment.EQUITY_DELIVERY) == with_gst
        assert model.dp_charge(Segment.EQUITY_INTRADAY) == 0
        assert model.round_trip(Segment.EQUITY_INTRADAY, 100_00, 100_00, 1).sell.dp == 0
    assert Charges(stt=100, dp=15_93).total == 16_93


def test_a_card_without_a_dp_charge_is_still_valid() -> None:
    import json

    from alpha_panda.execution.costs import CHARGES_DIR

    raw = json.loads((CHARGES_DIR / "zerodha_2026-04-01.json").read_text())
    del raw["segments"]["equity_delivery"]["dp_charge_rupees"]
    assert CostModel.from_dict(raw).dp_charge() == 0


def test_futures_round_trip(model: CostModel) -> None:
    # buy 250 @ 2,000 (₹5,00,000), sell 250 @ 2,010 (₹5,02,500)
    rt = model.round_trip(Segment.FUTURES, 2000_00, 2010_00, 250)
    assert rt.buy == Charges(brokerage=2000, stt=0, exchange_txn=915, sebi=50, stamp_duty=1000, gst=534)
    # STT 0.05% of 5,02,500 = 251.25, the day's STT: ₹251; txn 9.19575 -> 9.20; SEBI
    # 0.5025 -> 0.50; GST of 29.70 = 5.346
    assert rt.sell == Charges(brokerage=2000, stt=25100, exchange_txn=920, sebi=50, stamp_duty=0, gst=535)
    assert rt.total_charges == 331_04
    # an order's STT stays to the paisa (the day's rounding is the calculator's)
    assert model.charges(Segment.FUTURES, Side.SELL, 2010_00, 250).stt == 251_25


def test_options_round_trip_flat_brokerage(model: CostModel) -> None:
    # 75 units, premium 100 -> 110: turnover 7,500 and 8,250
    rt = model.round_trip(Segment.OPTIONS, 100_00, 110_00, 75)
    # txn 2.66475 -> 2.66; SEBI 0.0075 -> 0.01; stamp 0.225 -> 0.23; GST of 22.67 = 4.0806 -> 4.08
    assert rt.buy == Charges(brokerage=2000, stt=0, exchange_txn=266, sebi=1, stamp_duty=23, gst=408)
    # STT 0.15% of 8,250 = 12.375 -> ₹12 (the day's STT, to the rupee); txn 2.931225 ->
    # 2.93; GST of 22.94 = 4.1292 -> 4.13
    assert rt.sell == Charges(brokerage=2000, stt=1200, exchange_txn=293, sebi=1, stamp_duty=0, gst=413)
    assert rt.total_charges == 66_05


def test_intraday_brokerage_below_the_cap_is_0_03_percent(model: CostModel) -> None:
    # ₹1,000 of turnover: 0.03% = ₹0.30, well under ₹20
    assert model.charges(Segment.EQUITY_INTRADAY, Side.BUY, 100_00, 10).brokerage == 30


def test_older_card_uses_its_own_rates() -> None:
    old = CostModel.load(as_of=date(2025, 1, 1))
    sell = old.charges(Segment.FUTURES, Side.SELL, 2010_00, 250)
    assert sell.stt == 100_50  # 0.02% of ₹5,02,500
    # NSE's transaction charge 0.00173% + its IPFT levy 0.0001% (₹10 a crore), which the
    # contract note puts under transaction charges: 9.19575 -> 9.20 (without IPFT 8.69)
    assert sell.exchange_txn == 920


def test_nse_transaction_charges_include_the_ipft_levy_on_both_cards() -> None:
    # Zerodha's support page "What are IPFT charges?": ₹10 a crore of NSE equity and
    # futures turnover, ₹50 a crore of options premium, under transaction charges
    ipft = {Segment.EQUITY_DELIVERY: "0.0001", Segment.EQUITY_INTRADAY: "0.0001",
            Segment.FUTURES: "0.0001", Segment.OPTIONS: "0.0005"}
    base = {Segment.EQUITY_DELIVERY: "0.00297", Segment.EQUITY_INTRADAY: "0.00297",
            Segment.FUTURES: "0.00173", Segment.OPTIONS: "0.03503"}
    for as_of in (date(2025, 1, 1), date(2026, 11, 24)):
        model = CostModel.load(as_of=as_of)
        for segment, levy in ipft.items():
            assert model.rates(segment).exchange_txn_percent["NSE"] == (
                Decimal(base[segment]) + Decimal(levy)), (as_of, segment)


def test_partial_fills_pay_brokerage_once_and_add_up_to_the_order(model: CostModel) -> None:
    seg, side = Segment.EQUITY_INTRADAY, Side.SELL
    fills = [(137, 1000_05), (150, 1000_00), (113, 999_95)]
    turnover, parts = 0, []
    for qty, price in fills:
        parts.append(model.fill_charges(seg, side, turnover, turnover + qty * price))
        turnover += qty * price
    whole = model.order_charges(seg, side, turnover)
    assert [p.brokerage for p in parts] == [2000, 0, 0]
    for item in ("brokerage", "stt", "exchange_txn", "sebi", "stamp_duty", "gst", "dp"):
        assert sum(getattr(p, item) for p in parts) == getattr(whole, item)


def test_segment_from_product() -> None:
    assert Segment.for_product(Product.CNC) is Segment.EQUITY_DELIVERY
    assert Segment.for_product(Product.MIS) is Segment.EQUITY_INTRADAY
    assert Segment.for_product(Product.NRML) is Segment.FUTURES
    assert Segment.for_product(Product.NRML, options=True) is Segment.OPTIONS


def test_bad_inputs_are_errors(model: CostModel) -> None:
    with pytest.raises(ValidationError):
        model.round_trip(Segment.EQUITY_DELIVERY, 100, 100, 0)
    with pytest.raises(ValidationError):
        model.charges(Segment.FUTURES, Side.BUY, 100_00, 1, exchange="MCX")
    with pytest.raises(ConfigurationError):
        CostModel.from_dict({"version": "x"})


def _decimal_charges(model: CostModel, segment: Segment, side: Side, turnover: int,
                     exchange: str) -> Charges:
    """The charges of an order by Decimal arithmetic, each item rounded half up to the
    paisa: the reference the model's integer fractions must equal."""
    def paise(x: Decimal) -> int:
        return int(x.to_integral_value(rounding=ROUND_HALF_UP))

    if turnover == 0:
        return Charges()  # an order with nothing executed pays nothing, flat fee included
    r = model.rates(segment)
    t, hundred = Decimal(turnover), Decimal(100)
    if r.brokerage_flat is not None:
        brokerage = r.brokerage_flat
    else:
        brokerage = paise(t * (r.brokerage_percent or Decimal(0)) / hundred)
        if r.brokerage_cap is not None:
            brokerage = min(brokerage, r.brokerage_cap)
    txn = paise(t * r.exchange_txn_percent[exchange] / hundred)
    sebi = paise(t * Decimal(10) * hundred / Decimal(10**9))  # both cards: ₹10 a crore, GST 18%
    buy = side is Side.BUY
    return Charges(
        brokerage=brokerage, stt=paise(t * (r.stt_buy_percent if buy else r.stt_sell_percent)
                                       / hundred),
        exchange_txn=txn, sebi=sebi,
        stamp_duty=paise(t * r.stamp_buy_percent / hundred) if buy else 0,
        gst=paise(Decimal(brokerage + txn + sebi) * Decimal(18) / hundred))


@settings(max_examples=1000, deadline=None)
@given(turnover=st.one_of(st.integers(0, 10**15),
                          # on the half paisa of delivery STT: 0.1% of k,500 paise is k.5
                          st.integers(0, 10**6).map(lambda k: k * 1_000 + 500)),
       segment=st.sampled_from(list(Segment)), side=st.sampled_from(list(Side)),
       exchange=st.sampled_from(["NSE", "BSE"]),
       card=st.sampled_from([date(2025, 6, 1), date(2026, 11, 24)]))
def test_the_charges_equal_decimal_arithmetic_to_the_paisa(
        turnover: int, segment: Segment, side: Side, exchange: str, card: date) -> None:
    model = CostModel.load(as_of=card)
    assert model.order_charges(segment, side, turnover, exchange) == _decimal_charges(
        model, segment, side, turnover, exchange)


def test_a_half_paisa_rounds_up_and_a_cap_holds(model: CostModel) -> None:
    # 0.025% STT of 2,000 paise is 0.5 paise: 1; of 1,998, 0.4995: 0. 0.03% brokerage of
    # ₹1,00,000 is ₹30, capped at ₹20.
    assert model.order_charges(Segment.EQUITY_INTRADAY, Side.SELL, 2_000).stt == 1
    assert model.order_charges(Segment.EQUITY_INTRADAY, Side.SELL, 1_998).stt == 0
    assert model.order_charges(Segment.EQUITY_INTRADAY, Side.BUY, 100_000_00).brokerage == 20_00


def test_a_card_shipped_before_it_takes_effect_is_not_used_before_then(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a card is added when new rates are announced (the Budget's STT, weeks ahead): the live
    # engine's charges and `alpha-panda charges` load the card in force today, not the newest
    import json

    from alpha_panda.execution import costs

    raw = json.loads((costs.CHARGES_DIR / "zerodha_2026-04-01.json").read_text())
    for effective in ("2024-10-01", "2999-04-01"):
        (tmp_path / f"zerodha_{effective}.json").write_text(json.dumps({**raw, "version": effective}))
    monkeypatch.setattr(costs, "CHARGES_DIR", tmp_path)
    assert CostModel.load().version == "2024-10-01"
    assert CostModel.load(as_of=date(2999, 4, 1)).version == "2999-04-01"
