"""Kite's instrument master: downloaded once per IST day, cached on disk, looked up both ways.

Strategies may name instruments ``EXCHANGE:SYMBOL`` (``NSE:INFY``); orders need the
exchange and trading symbol of a token; the feed needs tokens. Tick sizes are kept as
exact ``Decimal`` rupees because currency ticks (0.0025) are finer than a paisa.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from alpha_panda.adapters.zerodha.session import trading_day
from alpha_panda.domain.errors import ConfigurationError


class KiteInstrument(msgspec.Struct, frozen=True, kw_only=True):
    instrument_token: int
    exchange: str
    tradingsymbol: str
    name: str = ""
    segment: str = ""
    instrument_type: str = ""
    tick_size: Decimal = Decimal("0.05")
    lot_size: int = 1
    expiry: str = ""

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"


def from_kite_row(row: dict[str, Any]) -> KiteInstrument:
    """One row of ``KiteConnect.instruments()`` (already typed by the client)."""
    return KiteInstrument(
        instrument_token=int(row["instrument_token"]), exchange=str(row["exchange"]),
        tradingsymbol=str(row["tradingsymbol"]), name=str(row.get("name") or ""),
        segment=str(row.get("segment") or ""), instrument_type=str(row.get("instrument_type") or ""),
        tick_size=Decimal(str(row.get("tick_size") or "0")), lot_size=int(row.get("lot_size") or 0),
        expiry=str(row.get("expiry") or ""))


class InstrumentMaster:
    """Token <-> ``EXCHANGE:SYMBOL`` lookups over one day's instrument list."""

    def __init__(self, instruments: Iterable[KiteInstrument] = ()) -> None:
        self._by_token: dict[int, KiteInstrument] = {}
        self._by_key: dict[str, KiteInstrument] = {}
        self.update(instruments)

    def update(self, instruments: Iterable[KiteInstrument]) -> None:
        """Add (or replace) instruments; used to fill a master others already hold."""
        for inst in instruments:
            self._by_token[inst.instrument_token] = inst
            self._by_key[inst.key] = inst

    def __iter__(self) -> Iterator[KiteInstrument]:
        return iter(self._by_token.values())

    def __len__(self) -> int:
        return len(self._by_token)

    def get(self, token: int) -> KiteInstrument | None:
        return self._by_token.get(token)

    def by_name(self, name: str) -> KiteInstrument | None:
        return self._by_key.get(name.strip().upper())

    def resolve(self, ref: int | str) -> int:
        """A token from a token or an ``EXCHANGE:SYMBOL`` name; unknown names are errors."""
        if isinstance(ref, int) or ref.isdigit():
            return int(ref)
        inst = self.by_name(ref)
        if inst is None:
            raise ConfigurationError(f"unknown instrument {ref!r} (expected EXCHANGE:SYMBOL "
                                     "from Kite's instrument list)")
        return inst.instrument_token

    @classmethod
    async def load(cls, cache_dir: Path,
                   download: Callable[[], Awaitable[list[dict[str, Any]]]],
                   *, now_ns: int | None = None, fresh: bool = False) -> InstrumentMaster:
        """Today's cached list, or a fresh download (then cached) when there is none or
        ``fresh`` asks for one."""
        path = cache_dir / f"kite-instruments-{trading_day(now_ns).isoformat()}.json"
        if path.exists() and not fresh:
            rows = msgspec.json.decode(path.read_bytes(), type=list[KiteInstrument])
            return cls(rows)
        instruments = [from_kite_row(r) for r in await download()]
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(instruments))
        tmp.replace(path)
        for old in cache_dir.glob("kite-instruments-*.json"):
            if old != path:
                old.unlink(missing_ok=True)  # yesterday's list is stale: tokens get reused
        return cls(instruments)
