"""KiteTicker binary frames: the decoder (public API) and an encoder for tests and fakes.

Layout (Kite Connect v3 WebSocket, all integers big-endian):

    frame   = int16 packet count, then per packet: int16 length, packet bytes
    packet  = int32 instrument_token, then int32 fields by length:
      8     LTP          ltp
      28    index quote  ltp high low open close change
      32    index full   ... + exchange_timestamp
      44    quote        ltp last_qty avg_price volume buy_qty sell_qty open high low close
      184   full         ... + last_trade_time oi oi_high oi_low exchange_timestamp,
                         then 10 depth entries (5 bids, 5 offers) of
                         uint32 quantity, int32 price, uint16 orders, 2 bytes padding
    (the token, quantities and times are unsigned: ``_FIELDS``)

A 1-byte (or empty) binary message is a heartbeat. The low byte of the token is the
exchange segment; prices are integers divided by 10^7 for currency (CDS), 10^4 for BSE
currency (BCD) and NSE commodity (NCO), and 100 for everything else, i.e. paise.
Sub-paisa prices are rounded half-even to paise and the exact last price is kept in
``MarketTick.price_e4``.

Exchange timestamps are Unix epoch seconds: an absolute instant, so the UTC nanosecond
time is ``seconds * 10^9`` whatever the exchange's (IST) wall clock shows. (Reading them
with a naive local-time conversion is the classic error; there is nothing to shift.)
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from typing import Final

from alpha_panda.domain.errors import DecodeError, ValidationError
from alpha_panda.domain.events import Depth, DepthLevel, MarketTick

SEG_NSE_CM, SEG_NSE_FO, SEG_NSE_CD, SEG_BSE_CM, SEG_BSE_FO, SEG_BSE_CD = 1, 2, 3, 4, 5, 6
SEG_MCX_FO, SEG_MCX_SX, SEG_INDICES, SEG_NCO = 7, 8, 9, 12

LTP_LEN: Final = 8
INDEX_QUOTE_LEN: Final = 28
INDEX_FULL_LEN: Final = 32
QUOTE_LEN: Final = 44
FULL_LEN: Final = 184
PACKET_LENGTHS: Final = (LTP_LEN, INDEX_QUOTE_LEN, INDEX_FULL_LEN, QUOTE_LEN, FULL_LEN)

_NS: Final = 1_000_000_000
# The token, quantities, times and a level's orders are unsigned on the wire, as the official
# client reads them (">I", ">H"): read signed, a day's volume past 2^31 shares came out
# negative. Prices (and an index's change) are signed.
_FIELDS: Final = {LTP_LEN: struct.Struct(">Ii"), INDEX_QUOTE_LEN: struct.Struct(">I6i"),
                  INDEX_FULL_LEN: struct.Struct(">I6iI"),
                  QUOTE_LEN: struct.Struct(">IiIiIIIiiii"),
                  FULL_LEN: struct.Struct(">IiIiIIIiiiiIIIII")}
_DEPTH_ENTRY = struct.Struct(">IiH2x")
_I32 = struct.Struct(">i")


def segment_of(token: int) -> int:
    """Kite's exchange segment code: the low byte of the instrument token."""
    return token & 0xFF


def price_divisor(token: int) -> int:
    """Integer divisor that turns a raw price into rupees for this token's segment."""
    seg = segment_of(token)
    if seg == SEG_NSE_CD:
        return 10_000_000
    if seg in (SEG_BSE_CD, SEG_NCO):  # (NSE commodity: as kiteconnect's parser divides it)
        return 10_000
    return 100


def _to_paise(raw: int, divisor: int) -> int:
    if divisor == 100:
        return raw
    # raw / (divisor / 100), rounded half to even, in integers only
    q, r = divmod(raw * 100, divisor)
    twice = 2 * r
    if twice > divisor or (twice == divisor and q % 2 == 1):
        q += 1
    return q


def _from_paise(paise: int, divisor: int) -> int:
    return paise * (divisor // 100)


def _e4(raw: int, divisor: int) -> int:
    # exact for currency prices on their 0.0025 tick grid; finer raw digits are truncated
    return raw * 10_000 // divisor


def parse_ticker_frame(frame: bytes, *, received_ns: int | None = None) -> list[MarketTick]:
    """Decode one binary KiteTicker message into ticks (a heartbeat gives ``[]``).

    The ticks hold Kite's fields as sent: ``volume`` is the day's cumulative volume and
    ``last_quantity`` the last trade's, repeated on quotes in which nothing traded.
    ``KiteTickerClient`` turns them into what the log means by them (``TradedSince``).

    ``received_ns`` stamps packets that carry no exchange timestamp (LTP, quote,
    index quote); it defaults to the current time. Raises ``DecodeError`` naming the
    packet and offset when the frame is truncated, has trailing bytes or a packet of an
    unknown length.
    """
    if len(frame) <= 1:
        return []
    now = time.time_ns() if received_ns is None else received_ns
    count = struct.unpack_from(">h", frame, 0)[0]
    if count < 0:
        raise DecodeError(f"ticker frame has a negative packet count {count}")
    ticks: list[MarketTick] = []
    pos = 2
    for i in range(count):
        if pos + 2 > len(frame):
            raise DecodeError(f"ticker frame truncated: packet {i} length missing at byte {pos}")
        length = struct.unpack_from(">h", frame, pos)[0]
        pos += 2
        if pos + length > len(frame):
            raise DecodeError(
                f"ticker frame truncated: packet {i} declares {length} bytes at byte {pos}, "
                f"{len(frame) - pos} remain"
            )
        ticks.append(_parse_packet(frame[pos : pos + length], i, now))
        pos += length
    if pos != len(frame):
        raise DecodeError(f"ticker frame has {len(frame) - pos} trailing bytes after {count} packets")
    return ticks


def _parse_packet(p: bytes, index: int, now: int) -> MarketTick:
    n = len(p)
    if n not in PACKET_LENGTHS:
        raise DecodeError(f"ticker packet {index} has unknown length {n} (expected one of "
                          f"{', '.join(map(str, PACKET_LENGTHS))})")
    f = _FIELDS[n].unpack_from(p, 0)
    token = f[0]
    div = price_divisor(token)
    tradable = segment_of(token) != SEG_INDICES
    px = [_to_paise(v, div) for v in f]
    e4 = _e4(f[1], div) if div != 100 else None
    if n == LTP_LEN:
        return MarketTick(instrument_token=token, last_price=px[1], ts=now, tradable=tradable,
                          price_e4=e4)
    if n in (INDEX_QUOTE_LEN, INDEX_FULL_LEN):
        ts = f[7] * _NS if n == INDEX_FULL_LEN and f[7] > 0 else now
        return MarketTick(instrument_token=token, last_price=px[1], ts=ts, high=px[2], low=px[3],
                          open=px[4], close=px[5], change=_change(px[1], px[5]),
                          tradable=tradable, price_e4=e4)
    depth = None
    ts = now
    oi = None
    if n == FULL_LEN:
        oi = f[12]
        if f[15] > 0:
            ts = f[15] * _NS
        levels = [_DEPTH_ENTRY.unpack_from(p, 64 + 12 * k) for k in range(10)]
        book = [DepthLevel(_to_paise(price, div), qty, orders) for qty, price, orders in levels]
        depth = Depth(buy=_trim(book[:5]), sell=_trim(book[5:]))
    return MarketTick(
        instrument_token=token, last_price=px[1], ts=ts, last_quantity=f[2], average_price=px[3],
        volume=f[4], buy_quantity=f[5], sell_quantity=f[6], open=px[7], high=px[8], low=px[9],
        close=px[10], change=_change(px[1], px[10]), oi=oi, depth=depth, tradable=tradable,
        price_e4=e4,
    )


def _change(last: int, close: int) -> float | None:
    # percent change from the previous close, as Kite's own clients report it
    return (last - close) * 100 / close if close else None


def _trim(levels: list[DepthLevel]) -> tuple[DepthLevel, ...]:
    # Kite pads missing levels with zeros; an empty level is not a quote
    while levels and levels[-1] == DepthLevel(0, 0, 0):
        levels = levels[:-1]
    return tuple(levels)


# ---------------------------------------------------------------------------- encoder


def encode_packet(tick: MarketTick, length: int) -> bytes:
    """Encode one tick as a Kite packet of ``length`` bytes (fields it lacks are zero)."""
    token = tick.instrument_token
    div = price_divisor(token)

    def raw(paise: int | None) -> int:
        return _from_paise(paise or 0, div)

    ltp = tick.price_e4 * div // 10_000 if tick.price_e4 is not None else raw(tick.last_price)
    ts = tick.ts // _NS
    if length == LTP_LEN:
        fields = [token, ltp]
    elif length in (INDEX_QUOTE_LEN, INDEX_FULL_LEN):
        change = ltp - raw(tick.close) if tick.close else 0
        fields = [token, ltp, raw(tick.high), raw(tick.low), raw(tick.open), raw(tick.close), change]
        if length == INDEX_FULL_LEN:
            fields.append(ts)
    elif length in (QUOTE_LEN, FULL_LEN):
        fields = [token, ltp, tick.last_quantity, raw(tick.average_price), tick.volume,
                  tick.buy_quantity or 0, tick.sell_quantity or 0, raw(tick.open), raw(tick.high),
                  raw(tick.low), raw(tick.close)]
        if length == FULL_LEN:
            fields += [ts, tick.oi or 0, 0, 0, ts]
    else:
        raise ValidationError(f"no Kite packet has length {length}")
    try:
        out = bytearray(_FIELDS[length].pack(*fields))
    except struct.error as exc:
        raise ValidationError(f"tick does not fit a Kite packet: {exc}") from exc
    if length == FULL_LEN:
        depth = tick.depth or Depth()
        for side in (depth.buy, depth.sell):
            padded = list(side[:5]) + [DepthLevel(0, 0, 0)] * (5 - len(side[:5]))
            for lvl in padded:
                out += _DEPTH_ENTRY.pack(lvl.quantity, raw(lvl.price), lvl.orders)
    return bytes(out)


def encode_ticker_frame(packets: Sequence[tuple[MarketTick, int]]) -> bytes:
    """A whole binary message from ``(tick, packet_length)`` pairs."""
    out = bytearray(struct.pack(">h", len(packets)))
    for tick, length in packets:
        body = encode_packet(tick, length)
        out += struct.pack(">h", len(body)) + body
    return bytes(out)


HEARTBEAT: Final = b"\x00"
"""Kite's 1-byte keep-alive message."""
