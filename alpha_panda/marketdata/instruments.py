"""NSE-like instruments the simulator trades (real Kite tokens and symbols, NSE equity)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True, slots=True)
class Instrument:
    instrument_token: int
    tradingsymbol: str
    exchange: str
    start_price: int  # paise, the simulator's opening price
    tick_size: int | None = None  # paise; None: NSE's for the day and price band
    lot_size: int = 1
    segment: str = "NSE"

    @property
    def name(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"


_NSE: Final = [
    (738561, "RELIANCE", 1_290_00), (341249, "HDFCBANK", 1_720_00), (1270529, "ICICIBANK", 1_280_00),
    (408065, "INFY", 1_880_00), (2953217, "TCS", 4_100_00), (779521, "SBIN", 810_00),
    (424961, "ITC", 470_00), (2939649, "LT", 3_600_00), (1510401, "AXISBANK", 1_150_00),
    (492033, "KOTAKBANK", 1_760_00), (2714625, "BHARTIARTL", 1_590_00),
    (356865, "HINDUNILVR", 2_350_00), (81153, "BAJFINANCE", 6_900_00), (2815745, "MARUTI", 11_200_00),
    (60417, "ASIANPAINT", 2_280_00), (897537, "TITAN", 3_300_00), (857857, "SUNPHARMA", 1_750_00),
    (969473, "WIPRO", 300_00), (2952193, "ULTRACEMCO", 11_300_00), (884737, "TATAMOTORS", 760_00),
    (4598529, "NESTLEIND", 2_250_00), (3834113, "POWERGRID", 320_00), (2977281, "NTPC", 360_00),
    (633601, "ONGC", 260_00), (895745, "TATASTEEL", 150_00),
]

SIM_INSTRUMENTS: Final[tuple[Instrument, ...]] = tuple(
    Instrument(token, symbol, "NSE", price) for token, symbol, price in _NSE
)
BY_TOKEN: Final = {i.instrument_token: i for i in SIM_INSTRUMENTS}
BY_NAME: Final = {i.name: i for i in SIM_INSTRUMENTS}


def symbol_of(token: int) -> str | None:
    inst = BY_TOKEN.get(token)
    return inst.tradingsymbol if inst else None
