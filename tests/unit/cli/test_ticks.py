"""`alpha-panda ticks generate|export`: a sample file over whole sessions; a log's ticks back
as a file that loads to the same ticks."""

from __future__ import annotations

import asyncio
import resource
import signal
import subprocess
import sys
from datetime import datetime, time
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from alpha_panda.backtest.engine import run_backtest
from alpha_panda.cli import app
from alpha_panda.domain.clock import IST, ist_date
from alpha_panda.domain.events import MarketTick
from alpha_panda.execution.market import nse_tick_sizes
from alpha_panda.marketdata.files import iter_ticks, load_ticks
from alpha_panda.marketdata.instruments import SIM_INSTRUMENTS
from alpha_panda.services.feed import TickPublisher
from alpha_panda.services.logs import open_log
from alpha_panda.services.strategy_configs import SAMPLE_STRATEGIES
from alpha_panda.strategy.config import config_from_mapping, load_strategy_dir
from alpha_panda.stream.log import Output
from alpha_panda.stream.topics import MARKET_TICKS


def test_generate_writes_the_simulators_market_over_trading_sessions(tmp_path: Path) -> None:
    out = tmp_path / "ticks.parquet"
    # 2026-12-04 is a Friday: the sessions are Friday, Monday and Tuesday
    args = ["ticks", "generate", str(out), "--ticks", "30000", "--instruments", "5",
            "--days", "3", "--seed", "7", "--start", "2026-12-04"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert ("wrote 30,000 ticks of 5 instruments over 3 session(s), 2026-12-04 to 2026-12-08"
            in result.output)
    cols = load_ticks(out)
    assert len(cols) == 30_000 and len(set(cols.instrument_token.tolist())) == 5
    assert (np.diff(cols.ts) >= 0).all()
    days: dict[str, int] = {}
    for ts in cols.ts[:: 97].tolist() + [int(cols.ts[-1])]:
        at = datetime.fromtimestamp(ts // 1_000_000_000, IST)
        assert time(9, 15) <= at.time() < time(15, 30) and at.weekday() < 5, at
        days[at.date().isoformat()] = days.get(at.date().isoformat(), 0) + 1
    assert sorted(days) == ["2026-12-04", "2026-12-07", "2026-12-08"]
    sizes = nse_tick_sizes()
    # every price on NSE's grid of its day, each tick carrying the previous close; and each
    # instrument moves about the daily volatility asked (1.5%), whatever its price: the
    # old walk's fixed ±0.05 steps moved MARUTI 0.03% a day
    for token in set(cols.instrument_token.tolist()):
        mine = cols.instrument_token == token
        prices, closes = cols.last_price[mine], cols.extras["close"][mine]
        first_day = ist_date(int(cols.ts[mine][0]))
        assert (prices % sizes.at(first_day, int(closes[0])) == 0).all()
        day_one = prices[: len(prices) // 3]
        assert 0.5 < 100 * (day_one.max() - day_one.min()) / day_one[0] < 6, token
    again = tmp_path / "again.parquet"
    assert CliRunner().invoke(app, [*args[:2], str(again), *args[3:]]).exit_code == 0
    assert again.read_bytes() == out.read_bytes()  # the same seed writes the same file
    bad = CliRunner().invoke(app, [*args, "--start", "2026-13-01"])
    assert bad.exit_code == 2 and "--start '2026-13-01' is not a date (YYYY-MM-DD)" in bad.output


def test_a_small_file_still_has_every_session_asked_each_from_its_open(tmp_path: Path) -> None:
    # 7 ticks over 7 days gave 4 sessions, and 10 ticks said "of 20 instruments"
    out = tmp_path / "few.csv"
    result = CliRunner().invoke(app, ["ticks", "generate", str(out), "--ticks", "7", "--days",
                                      "7", "--start", "2026-12-07"])
    assert result.exit_code == 0, result.output
    assert "7 ticks of 7 instruments over 7 session(s), 2026-12-07 to 2026-12-15" in result.output
    for ts in load_ticks(out).ts.tolist():
        assert datetime.fromtimestamp(ts // 1_000_000_000, IST).time() == time(9, 15)


def test_export_writes_the_logs_ticks_in_time_order(tmp_path: Path) -> None:
    ticks = [
        MarketTick(instrument_token=738561, last_price=1289_90, ts=3_000, volume=1_000_000,
                   last_quantity=28, open=1280_00, high=1290_00, low=1279_50, close=1281_00),
        MarketTick(instrument_token=341249, last_price=1719_65, ts=1_000, volume=24),
        MarketTick(instrument_token=738561, last_price=1290_00, ts=2_000, volume=1_000_040,
                   last_quantity=40, open=1280_00, high=1290_00, low=1279_50, close=1281_00),
    ]

    async def record() -> None:
        log = open_log("embedded", tmp_path)
        await log.start()
        try:
            await TickPublisher(log, "kite").publish(ticks[:2], 0)
            await TickPublisher(log, "replay:other.csv").publish(ticks[2:], 0)
            await log.append([Output(MARKET_TICKS, b"738561", b"{not a tick", ())])
        finally:
            await log.close()

    asyncio.run(record())
    out = tmp_path / "recorded.csv"
    result = CliRunner().invoke(app, ["ticks", "export", str(out), "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "wrote 3 ticks" in result.output and "(1 malformed records skipped)" in result.output
    cols = load_ticks(out)
    assert cols.ts.tolist() == [1_000, 2_000, 3_000]
    assert cols.last_price.tolist() == [1719_65, 1290_00, 1289_90]
    assert cols.volume.tolist() == [24, 1_000_040, 1_000_000]
    assert cols.extras["last_quantity"].tolist() == [0, 40, 28]
    assert cols.extras["open"].tolist()[1:] == [1280_00, 1280_00]
    assert cols.nulls["open"].tolist() == [True, False, False]

    only = tmp_path / "kite.parquet"
    result = CliRunner().invoke(app, ["ticks", "export", str(only), "--data-dir", str(tmp_path),
                                      "--source", "kite"])
    assert result.exit_code == 0, result.output
    assert load_ticks(only).ts.tolist() == [1_000, 3_000]
    none = CliRunner().invoke(app, ["ticks", "export", str(tmp_path / "x.csv"),
                                    "--data-dir", str(tmp_path), "--source", "sim"])
    assert none.exit_code == 1 and "no ticks on market.ticks from source 'sim'" in none.output
    # and which sources there are: a replay's is `replay:FILE`, not `replay`
    assert none.stderr.strip().endswith(
        "; the sources there: 'kite' (2 ticks), 'replay:other.csv' (1 tick)")
    missing = tmp_path / "no-such-dir"
    gone = CliRunner().invoke(app, ["ticks", "export", str(tmp_path / "y.csv"),
                                    "--data-dir", str(missing)])
    assert gone.exit_code == 2 and "no data directory" in gone.output and not missing.exists()


def test_generate_writes_gzipped_csv_and_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    gz = tmp_path / "ticks.csv.gz"
    result = CliRunner().invoke(app, ["ticks", "generate", str(gz), "--ticks", "50"])
    assert result.exit_code == 0, result.output
    assert gz.read_bytes()[:2] == b"\x1f\x8b" and len(load_ticks(gz)) == 50
    for out, message in ((tmp_path / "ticks.txt", "a tick file is .csv, .csv.gz, .parquet or .pq"),
                         (tmp_path / "no" / "such" / "dir.csv", "cannot write")):
        bad = CliRunner().invoke(app, ["ticks", "generate", str(out), "--ticks", "50"])
        assert bad.exit_code == 2 and message in bad.output, bad.output
        assert not out.exists()


def test_generate_by_default_writes_every_instrument_the_sample_strategies_trade(
        tmp_path: Path) -> None:
    # with 20 of the 25 by default, 3 sample strategies had instruments with no tick in a
    # generated file (breakout_metals' TATASTEEL, rsi_fmcg's, mean_reversion_energy's)
    out = tmp_path / "ticks.csv"
    result = CliRunner().invoke(app, ["ticks", "generate", str(out), "--ticks", "500"])
    assert result.exit_code == 0, result.output
    assert f"of {len(SIM_INSTRUMENTS)} instruments" in result.output
    tokens = set(load_ticks(out).instrument_token.tolist())
    configs, errors = load_strategy_dir(SAMPLE_STRATEGIES)
    assert configs and not errors
    assert {t for c in configs for t in c.instruments} <= tokens


def _file_size_limit() -> None:  # (in the child: a write past it fails, EFBIG)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


def test_a_write_that_fails_part_way_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    # The file was written in place: a disk that filled up after 1 MB left those first
    # 21,285 rows and a cut one as ticks.csv, where a good file of that name had been.
    out = tmp_path / "ticks.csv"
    out.write_text("timestamp,instrument_token,last_price\n1775447100000000000,738561,1289\n")
    before = out.read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "alpha_panda.cli", "ticks", "generate", str(out),
         "--ticks", "100000"], preexec_fn=_file_size_limit, capture_output=True, text=True,
        timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: cannot write {out}: ")
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ticks.csv"]  # no part left beside it


def test_an_exported_index_is_replayed_as_one_that_cannot_be_traded(tmp_path: Path) -> None:
    # NIFTY 50's ticks say `tradable: false` on the live feed, where the paper exchange
    # rejects an order on it (NOT_TRADABLE). Exported, the flag was lost: the file's backtest
    # bought 1 NIFTY 50 at the index's ₹21,800.00 and sold it at ₹22,000.00 (2 fills) where
    # the live session could not.
    nifty = 256265
    prices = [22_000_00] * 5 + [21_800_00, 22_000_00]
    ticks = [MarketTick(instrument_token=nifty, last_price=p, ts=1_704_080_700_000_000_000 + k * 10**9,
                        close=22_000_00, tradable=False) for k, p in enumerate(prices)]

    async def record() -> None:
        log = open_log("embedded", tmp_path)
        await log.start()
        try:
            await TickPublisher(log, "kite").publish(ticks, 0)
        finally:
            await log.close()

    asyncio.run(record())
    for name in ("day.csv", "day.parquet"):
        out = tmp_path / name
        result = CliRunner().invoke(app, ["ticks", "export", str(out), "--data-dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        cols = load_ticks(out)
        assert [t.tradable for t in iter_ticks(cols)] == [False] * len(prices)
        config = config_from_mapping({"id": "vwap", "strategy": "vwap_reversion",
                                      "instruments": [nifty], "brokers": ["paper"],
                                      "params": {"band_bps": 50, "min_ticks": 3}})
        summary = run_backtest(config, cols).to_dict(timings=False)
        assert summary["fills"] == 0, summary
        assert summary["rejections"] == {"NOT_TRADABLE": 1}, summary


def test_generate_into_a_directory_that_does_not_exist_names_it(tmp_path: Path) -> None:
    # the error named the hidden file written beside the target ('.t.csv.partial')
    out = tmp_path / "nodir" / "t.csv"
    result = CliRunner().invoke(app, ["ticks", "generate", str(out), "--ticks", "10"])
    assert result.exit_code == 2
    assert f"directory {tmp_path / 'nodir'} does not exist" in result.output
    assert not (tmp_path / "nodir").exists()
