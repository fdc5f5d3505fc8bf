"""KiteTicker binary frames: documented layouts, segments, heartbeats, malformed input."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alpha_panda.adapters.zerodha import encode_ticker_frame, parse_ticker_frame
from alpha_panda.adapters.zerodha.ticker_codec import (
    FULL_LEN,
    INDEX_FULL_LEN,
    INDEX_QUOTE_LEN,
    LTP_LEN,
    QUOTE_LEN,
)
from alpha_panda.domain.errors import DecodeError
from alpha_panda.domain.events import Depth, DepthLevel, MarketTick

INFY = 408065  # NSE equity (segment 1)
NIFTY = 256265  # index (segment 9)
USDINR = 412675  # NSE currency future (segment 3)
BSE_CD = 1030 | 6  # a BSE currency token (segment 6)
NOW = 1_700_000_000_000_000_000
IST = timezone(timedelta(hours=5, minutes=30))


def _frame(*packets: bytes) -> bytes:
    out = struct.pack(">h", len(packets))
    for p in packets:
        out += struct.pack(">h", len(p)) + p
    return out


def test_heartbeat_and_empty_frames_give_no_ticks() -> None:
    assert parse_ticker_frame(b"\x00") == []
    assert parse_ticker_frame(b"") == []
    assert parse_ticker_frame(b"\x00\x00") == []


def test_equity_full_packet_hand_built_from_the_documented_layout() -> None:
    # 09:15:07 IST on 2026-11-24 is 03:45:07 UTC
    ts = int(datetime(2026, 11, 24, 9, 15, 7, tzinfo=IST).timestamp())
    head = struct.pack(">11i", INFY, 188_055, 12, 187_950, 1_234_567, 900, 800,
                       187_000, 189_000, 186_500, 187_500)
    tail = struct.pack(">5i", ts - 1, 42, 0, 0, ts)
    depth = b"".join(struct.pack(">iih2x", 10 + i, 188_050 - 5 * i, 3) for i in range(5))
    depth += struct.pack(">iih2x", 7, 188_060, 2) + struct.pack(">iih2x", 0, 0, 0) * 4
    [tick] = parse_ticker_frame(_frame(head + tail + depth), received_ns=NOW)
    assert tick.instrument_token == INFY and tick.tradable
    assert tick.last_price == 188_055  # ₹1,880.55 in paise
    assert (tick.open, tick.high, tick.low, tick.close) == (187_000, 189_000, 186_500, 187_500)
    assert (tick.volume, tick.last_quantity, tick.average_price) == (1_234_567, 12, 187_950)
    assert (tick.buy_quantity, tick.sell_quantity, tick.oi) == (900, 800, 42)
    assert tick.ts == int(datetime(2026, 11, 24, 3, 45, 7, tzinfo=UTC).timestamp()) * 10**9
    assert tick.depth is not None
    assert tick.depth.buy[0] == DepthLevel(188_050, 10, 3) and len(tick.depth.buy) == 5
    assert tick.depth.sell == (DepthLevel(188_060, 7, 2),)  # zero padding is not a level
    assert tick.change == pytest.approx((188_055 - 187_500) * 100 / 187_500)
    assert tick.price_e4 is None


def test_quantities_past_2_31_are_read_unsigned_as_kiteconnect_reads_them() -> None:
    # Kite sends quantities as unsigned 32-bit integers (the official client unpacks ">I"):
    # a day's volume of 2.32 billion shares (a Vodafone Idea day) read signed came out as
    # -1,976,967,296, and every later tick of the day too
    from kiteconnect import KiteTicker

    ts = 1_764_000_000
    head = struct.pack(">IiIiIIIiiii", INFY, 7_15, 10_000, 7_12, 2_318_000_000, 2_200_000_000,
                       2_150_000_000, 7_00, 7_20, 6_95, 7_05)
    tail = struct.pack(">5I", ts, 2_147_483_648, 0, 0, ts)
    depth = struct.pack(">IiH2x", 41_000_000, 7_14, 33_000) * 10
    frame = _frame(head + tail + depth)
    [tick] = parse_ticker_frame(frame, received_ns=NOW)
    [official] = KiteTicker("key", "token")._parse_binary(frame)
    assert (tick.volume, tick.buy_quantity, tick.sell_quantity, tick.last_quantity, tick.oi) == (
        official["volume_traded"], official["total_buy_quantity"],
        official["total_sell_quantity"], official["last_traded_quantity"], official["oi"]) == (
        2_318_000_000, 2_200_000_000, 2_150_000_000, 10_000, 2_147_483_648)
    assert tick.depth is not None and tick.depth.buy[0] == DepthLevel(7_14, 41_000_000, 33_000)
    assert official["depth"]["buy"][0]["orders"] == 33_000
    assert parse_ticker_frame(encode_ticker_frame([(tick, FULL_LEN)]), received_ns=NOW) == [tick]


def test_index_packets_are_not_tradable_and_carry_ohlc() -> None:
    quote = struct.pack(">7i", NIFTY, 2_450_010, 2_460_000, 2_440_000, 2_445_000, 2_430_000, 20_010)
    [q] = parse_ticker_frame(_frame(quote), received_ns=NOW)
    assert not q.tradable and q.last_price == 2_450_010 and q.ts == NOW
    assert (q.high, q.low, q.open, q.close) == (2_460_000, 2_440_000, 2_445_000, 2_430_000)
    full = quote + struct.pack(">i", 1_764_000_000)
    [f] = parse_ticker_frame(_frame(full), received_ns=NOW)
    assert f.ts == 1_764_000_000 * 10**9


def test_currency_prices_use_the_1e7_divisor_and_keep_the_exact_price() -> None:
    # ₹84.2525 on the CDS segment is sent as 842525000 (four decimals * 10^7)
    [t] = parse_ticker_frame(_frame(struct.pack(">2i", USDINR, 842_525_000)), received_ns=NOW)
    assert t.price_e4 == 842_525
    assert t.last_price == 8_425  # 8425.25 paise rounds half-even to 8425
    [b] = parse_ticker_frame(_frame(struct.pack(">2i", BSE_CD, 842_575)), received_ns=NOW)
    assert b.price_e4 == 842_575 and b.last_price == 8_426  # 8425.75 -> 8426


def test_nse_commodity_prices_use_the_1e4_divisor_as_kiteconnect_does() -> None:
    # NSE commodity (NCO, segment 12) is sent in 1/10,000 rupee, as the official client's
    # parser divides it: read as paise, ₹5,123.45 came out as ₹5,12,345.00
    nco = (54_321 << 8) | 12
    [t] = parse_ticker_frame(_frame(struct.pack(">2i", nco, 51_234_500)), received_ns=NOW)
    assert t.last_price == 512_345 and t.price_e4 == 51_234_500
    quote = struct.pack(">11i", nco, 51_234_500, 10, 51_200_000, 7, 0, 0,
                        51_000_000, 51_300_000, 50_900_000, 51_100_000)
    [q] = parse_ticker_frame(_frame(quote), received_ns=NOW)
    assert (q.last_price, q.average_price, q.open, q.high, q.low, q.close) == (
        512_345, 512_000, 510_000, 513_000, 509_000, 511_000)
    assert encode_ticker_frame([(q, QUOTE_LEN)]) == _frame(quote)


def test_several_packets_in_one_frame_and_ltp_mode() -> None:
    frame = _frame(struct.pack(">2i", INFY, 100_05), struct.pack(">2i", NIFTY, 2_000_000))
    ticks = parse_ticker_frame(frame, received_ns=NOW)
    assert [(t.instrument_token, t.last_price, t.ts) for t in ticks] == [
        (INFY, 100_05, NOW), (NIFTY, 2_000_000, NOW)]


@pytest.mark.parametrize("frame, words", [
    (b"\x00\x01\x00", "length missing"),
    (_frame(struct.pack(">2i", INFY, 1))[:-1], "truncated"),
    (_frame(struct.pack(">3i", INFY, 1, 2)), "unknown length 12"),
    (_frame(struct.pack(">2i", INFY, 1)) + b"\x00", "trailing"),
    (b"\xff\xff", "negative"),
])
def test_malformed_frames_raise_a_clear_decode_error(frame: bytes, words: str) -> None:
    with pytest.raises(DecodeError, match=words):
        parse_ticker_frame(frame)


# ---------------------------------------------------------------------------- round trips

_price = st.integers(min_value=1, max_value=2**31 // 100_000 - 1)
_qty = st.integers(min_value=0, max_value=2**31 - 1)
_ts = st.integers(min_value=1, max_value=2**31 - 1).map(lambda s: s * 10**9)
_equity_token = st.integers(min_value=1, max_value=2**23).map(lambda n: (n << 8) | 1)
_level = st.builds(DepthLevel, _price, st.integers(1, 10**6), st.integers(0, 30_000))


@st.composite
def _tick_and_length(draw: st.DrawFn) -> tuple[MarketTick, int]:
    kind = draw(st.sampled_from(["ltp", "quote", "full", "index", "index_full", "cds", "bcd"]))
    if kind.startswith("index"):
        token = (draw(st.integers(1, 2**23)) << 8) | 9
        close = draw(_price)
        last = draw(_price)
        length = INDEX_FULL_LEN if kind == "index_full" else INDEX_QUOTE_LEN
        tick = MarketTick(instrument_token=token, last_price=last,
                          ts=draw(_ts) if length == INDEX_FULL_LEN else NOW,
                          high=draw(_price), low=draw(_price), open=draw(_price), close=close,
                          change=(last - close) * 100 / close, tradable=False)
        return tick, length
    if kind in ("cds", "bcd"):
        seg, div = (3, 10**7) if kind == "cds" else (6, 10**4)
        e4 = draw(st.integers(1, (2**31 - 1) * 10_000 // div))
        q, r = divmod(e4, 100)
        paise = q + (1 if 2 * r > 100 or (2 * r == 100 and q % 2) else 0)
        token = (draw(st.integers(1, 2**23)) << 8) | seg
        if not draw(st.booleans()):
            return MarketTick(instrument_token=token, last_price=paise, ts=NOW, price_e4=e4), LTP_LEN
        # full currency packet: other prices on the paisa grid survive the 10^7 divisor
        cpx = st.integers(1, (2**31 - 1) * 100 // div)
        close = draw(cpx)
        lvl = st.builds(DepthLevel, cpx, st.integers(1, 10**6), st.integers(0, 30_000))
        tick = MarketTick(instrument_token=token, last_price=paise, ts=draw(_ts), price_e4=e4,
                          volume=draw(_qty), last_quantity=draw(_qty), average_price=draw(cpx),
                          open=draw(cpx), high=draw(cpx), low=draw(cpx), close=close,
                          change=(paise - close) * 100 / close, oi=draw(_qty),
                          buy_quantity=draw(_qty), sell_quantity=draw(_qty),
                          depth=Depth(buy=tuple(draw(st.lists(lvl, max_size=5))),
                                      sell=tuple(draw(st.lists(lvl, max_size=5)))))
        return tick, FULL_LEN
    token = draw(_equity_token)
    last = draw(_price)
    if kind == "ltp":
        return MarketTick(instrument_token=token, last_price=last, ts=NOW), LTP_LEN
    close = draw(_price)
    full = kind == "full"
    depth = Depth(buy=tuple(draw(st.lists(_level, max_size=5))),
                  sell=tuple(draw(st.lists(_level, max_size=5)))) if full else None
    tick = MarketTick(instrument_token=token, last_price=last, ts=draw(_ts) if full else NOW,
                      volume=draw(_qty), last_quantity=draw(_qty), average_price=draw(_price),
                      open=draw(_price), high=draw(_price), low=draw(_price), close=close,
                      change=(last - close) * 100 / close, oi=draw(_qty) if full else None,
                      buy_quantity=draw(_qty), sell_quantity=draw(_qty), depth=depth)
    return tick, (FULL_LEN if full else QUOTE_LEN)


@given(st.lists(_tick_and_length(), min_size=1, max_size=6))
def test_encode_then_parse_round_trips(packets: list[tuple[MarketTick, int]]) -> None:
    frame = encode_ticker_frame(packets)
    assert parse_ticker_frame(frame, received_ns=NOW) == [t for t, _ in packets]


@given(st.binary(max_size=300))
def test_arbitrary_bytes_either_parse_or_raise_decode_error(frame: bytes) -> None:
    try:
        ticks = parse_ticker_frame(frame, received_ns=NOW)
    except DecodeError:
        return
    assert all(isinstance(t, MarketTick) for t in ticks)
