"""``alpha-panda run --log kafka://HOST:PORT``: the whole system in one process on the
broker gives the same trades and P&L as on the embedded log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alpha_panda.marketdata.files import generate_random_walk, write_ticks
from alpha_panda.settings import Settings
from alpha_panda.testing.pipeline import append_poison_tick, write_strategy
from alpha_panda.testing.tansu import tansu_broker

pytestmark = pytest.mark.integration

TOKENS = [408065, 738561, 1270529, 341249]


def run(root: Path, ticks: Path, log: str) -> dict[str, object]:
    env = {**os.environ, "ALPHA_PANDA_KAFKA__SESSION_TIMEOUT_MS": "2000",
           "ALPHA_PANDA_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
           "ALPHA_PANDA_KAFKA__MAX_POLL_INTERVAL_MS": "10000"}
    done = subprocess.run(
        [sys.executable, "-m", "alpha_panda.cli", "run", "--log", log, "--feed",
         f"replay:{ticks}", "--strategies", str(root / "strategies"), "--exit-at-end", "--json",
         "--no-api", "--data-dir", str(root / f"data-{log[:5]}")],
        # A hang guard, not a speed test. (These 5,000 ticks once took 43-120 s and more on
        # Tansu: ``--exit-at-end`` waited for end offsets that counted a transaction marker
        # as a record now and then; now 3.4-4.1 s.)
        capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_run_on_kafka_trades_exactly_like_the_embedded_log(tmp_path: Path) -> None:
    ticks = tmp_path / "ticks.csv"
    write_ticks(ticks, generate_random_walk(5000, TOKENS, seed=5))
    write_strategy(tmp_path / "strategies", tokens=TOKENS)
    # a malformed tick first on each: the four services reading ticks dead-letter it
    sqlite = f"sqlite:{tmp_path / 'log.sqlite'}"
    asyncio.run(append_poison_tick(Settings(log=sqlite, data_dir=tmp_path / "data-sqlit")))
    embedded = run(tmp_path, ticks, sqlite)
    with tansu_broker() as broker:
        asyncio.run(append_poison_tick(Settings(log=broker.url, data_dir=tmp_path / "data-kafka")))
        kafka = run(tmp_path, ticks, broker.url)
    keys = ["ticks", "fills", "round_trips", "realized_pnl", "unrealized_pnl", "charges",
            "open_positions", "dead_letters", "dead_letters_by_topic"]
    assert embedded["fills"], "the reference run filled nothing"
    # (on Kafka each letter's transaction marker takes an offset: counted, it read 7)
    assert embedded["dead_letters_by_topic"] == {"market.ticks.dlq": 4}
    assert {k: kafka[k] for k in keys} == {k: embedded[k] for k in keys}
