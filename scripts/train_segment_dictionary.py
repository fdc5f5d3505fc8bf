"""Train the zstd dictionary the SQLite log compresses its small segments with.

Runs the whole pipeline on the simulator at its default rate (a live feed: a few ticks per
append, so small segments) for ``--seconds``, with the sample strategies trading; then
appends Kite full-mode ticks (OHLC, depth, open interest) built around the simulator's
prices, in packets of 1 to 30 instruments as KiteTicker sends them; and trains a
dictionary on every segment the log compresses with one (64 bytes to 16 KiB), as the log
packs it: ticks, signals, orders, fills, P&L snapshots.

Writes ``alpha_panda/data/zstd/segments-<id>.zdict`` and prints how much it shrinks the
segments it was not trained on. An id's bytes must never change (logs on disk name the
dictionary they need) and new segments take the highest id, so ``--id`` must be above
every shipped one.

    python scripts/train_segment_dictionary.py --id 0x41500001 --seconds 120
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import tempfile
from pathlib import Path

import zstandard

from alpha_panda.adapters.sqlite_log import SqliteLog, dictionary
from alpha_panda.adapters.sqlite_log.segments import (
    _DICT_BELOW,
    _DICT_FROM,
    _encode_segment,
    _SegmentCodec,
)
from alpha_panda.domain.events import Depth, DepthLevel, MarketTick
from alpha_panda.marketdata.instruments import SIM_INSTRUMENTS
from alpha_panda.observability.logging import configure_logging
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.feed import TickPublisher
from alpha_panda.services.logs import EMBEDDED_FILE
from alpha_panda.settings import ApiSettings, Settings

DICT_BYTES = 16 * 1024  # 8 KiB shrank held-out segments 5.9-fold, 16 KiB 6.3, 32 KiB 6.3


async def _run_pipeline(data_dir: Path, seconds: float) -> None:
    settings = Settings().model_copy(update={
        "data_dir": data_dir, "log": "embedded", "feed": "sim",
        "api": ApiSettings(enabled=False), "log_level": "WARNING"})
    await SystemRun(settings, RunOptions(duration=seconds, progress=False)).run()


def _kite_tick(rng: random.Random, token: int, price: int, ts: int) -> MarketTick:
    step = 5  # paise: the 0.05 grid
    levels = 5

    def side(sign: int) -> tuple[DepthLevel, ...]:
        return tuple(DepthLevel(price + sign * step * (k + 1), rng.randrange(1, 5000),
                                rng.randrange(1, 40)) for k in range(levels))

    close = price - rng.randrange(-400, 400) * step
    return MarketTick(
        instrument_token=token, last_price=price, ts=ts, last_quantity=rng.randrange(1, 500),
        average_price=price - rng.randrange(-50, 50) * step, volume=rng.randrange(10**4, 10**8),
        buy_quantity=rng.randrange(10**3, 10**7), sell_quantity=rng.randrange(10**3, 10**7),
        open=close + rng.randrange(-100, 100) * step, high=price + rng.randrange(0, 300) * step,
        low=price - rng.randrange(0, 300) * step, close=close,
        change=round((price - close) * 100 / close, 6),
        oi=rng.choice([None, rng.randrange(10**4, 10**7)]),
        depth=Depth(buy=side(-1), sell=side(1)))


async def _append_kite_ticks(path: Path, appends: int) -> None:
    rng = random.Random(11)
    log = SqliteLog(path)
    publisher = TickPublisher(log, "kite")
    prices = {i.instrument_token: 100_000 + rng.randrange(0, 400_000) * 5 for i in SIM_INSTRUMENTS}
    ts, seq = 1_796_269_500_000_000_000, 0
    for _ in range(appends):
        batch = []
        for _ in range(rng.randrange(1, 31)):
            token = rng.choice(list(prices))
            prices[token] += rng.randrange(-4, 5) * 5
            ts += rng.randrange(1, 50_000_000)
            batch.append(_kite_tick(rng, token, prices[token], ts))
        await publisher.publish(batch, seq)
        seq += len(batch)
    await log.close()


def _small_segments(path: Path) -> list[bytes]:
    """Every segment the log compresses with a dictionary, as it packs it before."""
    codec = _SegmentCodec()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    out = []
    for (data,) in db.execute("SELECT data FROM segments"):
        raw = _encode_segment(codec.unpack(data))
        if _DICT_FROM <= len(raw) < _DICT_BELOW:
            out.append(raw)
    db.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--id", type=lambda s: int(s, 0), required=True,
                    help="the new dictionary's id (e.g. 0x41500001); never reuse one")
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--kite-appends", type=int, default=1000)
    args = ap.parse_args()
    target = Path(dictionary.__file__).parents[2] / "data" / "zstd" / dictionary.file_name(args.id)
    shipped = max(dictionary.dictionaries(), default=0)
    if args.id <= shipped:
        raise SystemExit(f"--id {args.id:#x}: new segments take the highest id, and "
                         f"{shipped:#x} ships already; ids are never reused")
    configure_logging(json=False, level="WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_run_pipeline(Path(tmp), args.seconds))
        path = Path(tmp) / EMBEDDED_FILE
        asyncio.run(_append_kite_ticks(path, args.kite_appends))
        samples = _small_segments(path)
    random.Random(3).shuffle(samples)
    held_out, train = samples[: len(samples) // 5], samples[len(samples) // 5:]
    trained = zstandard.train_dictionary(DICT_BYTES, list[bytes | bytearray | memoryview](train),
                                         dict_id=args.id, level=1)
    compress = zstandard.ZstdCompressor(level=1, dict_data=trained).compress
    raw = sum(map(len, held_out))
    packed = sum(min(len(compress(s)), len(s)) for s in held_out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(trained.as_bytes())
    print(f"{target}: {len(trained.as_bytes()):,} bytes from {len(train):,} segments; "
          f"{len(held_out):,} others shrink {raw / packed:.2f}-fold ({raw:,} -> {packed:,} bytes)")


if __name__ == "__main__":
    main()
