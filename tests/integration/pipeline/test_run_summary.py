"""``run --feed replay:F --exit-at-end --json``: a failed strategy is in the summary and the
exit status, as in ``backtest``."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from alpha_panda.cli.main import app
from alpha_panda.domain.events import CODEC, MarketTick, OrderFilled, Signal, new_envelope
from alpha_panda.services.logs import open_log
from alpha_panda.settings import Settings
from alpha_panda.strategy.base import Context, Strategy
from alpha_panda.stream.log import Output
from alpha_panda.stream.topics import MARKET_TICKS, REGISTRY
from alpha_panda.testing.pipeline import append_poison_tick, logged, write_strategy


class Crash(Strategy):
    """Raises on its first tick."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        raise ZeroDivisionError("bad maths")


class BuyOnce(Strategy):
    """Buys 10 at its first tick and holds."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal] | None:
        return None if ctx.position() else [ctx.buy(10)]


def test_a_failed_strategy_is_listed_and_the_run_exits_1(tmp_path: Path, tick_file) -> None:
    path, cols = tick_file(3000, 2, seed=5)
    tokens = sorted(set(cols.instrument_token.tolist()))
    strategies = tmp_path / "strategies"
    write_strategy(strategies, id="ok", tokens=tokens)
    (strategies / "crash.yaml").write_text(
        f"id: crash\nstrategy: {__name__}:Crash\ninstruments: [{tokens[0]}]\nbrokers: [paper]\n")
    result = CliRunner().invoke(app, [
        "run", "--feed", f"replay:{path}", "--strategies", str(strategies), "--no-api",
        "--exit-at-end", "--json", "--data-dir", str(tmp_path / "data"), "--log", "memory"])
    assert result.exit_code == 1, result.output
    assert "strategies failed and were taken out of service: crash" in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["strategies_failed"] == ["crash"]
    assert summary["ticks"] == summary["ticks_published"] == 3000 and summary["fills"] > 0


def test_an_invalid_strategy_file_makes_the_run_exit_1(tmp_path: Path, tick_file) -> None:
    path, _ = tick_file(1000, 2, seed=5)
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "typo.yaml").write_text(
        "id: typo\nstrategy: sma_cross\ninstruments: [738561]\nparams: {fast: 30, slow: 10}\n")
    result = CliRunner().invoke(app, [
        "run", "--feed", f"replay:{path}", "--strategies", str(strategies), "--no-api",
        "--exit-at-end", "--json", "--data-dir", str(tmp_path / "data"), "--log", "memory"])
    assert result.exit_code == 1, result.output
    assert "1 strategy file(s) invalid, so not run:" in result.stderr
    assert "typo.yaml: params" in result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["fills"] == 0
    [invalid] = summary["strategies_invalid"]  # a script reading only the JSON sees it too
    assert "typo.yaml: params: fast (30) must be smaller than slow (10)" in invalid


def test_a_replay_stopped_early_is_summed_up_at_the_last_tick_it_published(tmp_path: Path,
                                                                          tick_file) -> None:
    # its equity curve was marked at the file's last prices, which the run never reached
    path, cols = tick_file(3000, 2, seed=5)
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "hold.yaml").write_text(f"id: hold\nstrategy: {__name__}:BuyOnce\n"
                                          f"instruments: [{cols.instrument_token[0]}]\n")
    result = CliRunner().invoke(app, [
        "run", "--feed", f"replay:{path}", "--speed", "0.5", "--duration", "2",
        "--strategies", str(strategies), "--no-api", "--json",
        "--data-dir", str(tmp_path / "data"), "--log", "memory"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0 < s["ticks_published"] < 3000 and s["fills"] == s["open_positions"] == 1
    assert s["ticks"] == s["ticks_published"]  # not the file's 3000
    # the 10 bought at the first tick's price, marked at the last tick published
    token = int(cols.instrument_token[0])
    prices = cols.last_price[: s["ticks_published"]][cols.instrument_token[: s["ticks_published"]] == token]
    held = Decimal(10 * int(prices[-1] - prices[0])) / 100
    assert Decimal(s["final_equity"]) == Decimal(s["initial_equity"]) + held - Decimal(s["charges"])



def test_dead_letters_of_the_run_are_counted_and_warned_of(tmp_path: Path, tick_file) -> None:
    # a malformed tick is set aside on market.ticks.dlq: the run goes on and exits 0, but
    # the trader is told, in the JSON and on stderr, and only of this run's letters
    path, cols = tick_file(1000, 2, seed=5)
    strategies, data = tmp_path / "strategies", tmp_path / "data"
    write_strategy(strategies, tokens=sorted(set(cols.instrument_token.tolist())))

    def run() -> tuple[dict[str, Any], str]:
        result = CliRunner().invoke(app, [
            "run", "--feed", f"replay:{path}", "--strategies", str(strategies), "--no-api",
            "--exit-at-end", "--json", "--data-dir", str(data)])
        assert result.exit_code == 0, result.output  # a dead letter is handled, not a failure
        return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr

    asyncio.run(append_poison_tick(Settings(log="embedded", data_dir=data)))
    summary, stderr = run()
    # one letter from each of the four services that read market.ticks, as `dlq list` shows
    assert summary["dead_letters"] == 4
    assert summary["dead_letters_by_topic"] == {"market.ticks.dlq": 4}
    assert summary["fills"] > 0
    assert ("warning: 4 dead letters written during this run (market.ticks.dlq: 4): records "
            "set aside unprocessed; see `alpha-panda dlq list`\n") in stderr
    # the next run on the same log writes none: the letter of the run before is not counted
    summary, stderr = run()
    assert summary["dead_letters"] == 0 and summary["dead_letters_by_topic"] == {}
    assert "dead letters written" not in stderr
    # and a replay at full speed says how it differs from a backtest, and how to compare
    assert "note: replayed as fast as possible, so fills reached the strategies many ticks " \
        "later than in a backtest" in stderr


def run_after(path: Path, strategies: Path, data: Path, outputs: list[Output]) -> dict[str, Any]:
    """``run --exit-at-end --json`` of the replay ``path`` on ``data`` after ``outputs`` were
    appended to its log (its topics made): the summary, the run having exited 0."""
    async def append() -> None:
        log = open_log("embedded", data)
        await log.start()
        try:
            await log.ensure_topics(REGISTRY.all())
            await log.append(outputs)
        finally:
            await log.close()

    asyncio.run(append())
    result = CliRunner().invoke(app, [
        "run", "--feed", f"replay:{path}", "--strategies", str(strategies), "--no-api",
        "--exit-at-end", "--json", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


def test_a_malformed_record_on_an_order_topic_still_gets_the_summary(tmp_path: Path,
                                                                     tick_file) -> None:
    # the services dead-letter it and go on; the summary, read from the log at the end,
    # decoded every fill and ended the run with "error: malformed order_filled payload",
    # exit 2 and no JSON at all
    path, cols = tick_file(1000, 2, seed=5)
    strategies, data = tmp_path / "strategies", tmp_path / "data"
    write_strategy(strategies, tokens=sorted(set(cols.instrument_token.tolist())))
    junk = (b'{"id":"junk","type":"order_filled","ts":1,"source":"x","key":"x",'
            b'"correlation_id":"junk","data":{}}')

    summary = run_after(path, strategies, data, [
        Output(f"paper.{name}", b"x", junk, (("id", b"junk"),)) for name in (
            "orders.filled", "orders.rejected", "orders.cancelled", "signals.validated",
            "signals.rejected", "pnl.snapshots")])
    assert summary["fills"] > 0 and summary["dead_letters"] > 0
    # the junk counts as none of them
    assert summary["orders_rejected"] == summary["orders_cancelled"] == 0
    assert summary["signals"] == summary["orders"] and summary["signals_rejected"] == 0


def test_a_tick_at_no_price_on_the_log_is_dead_lettered_not_traded_at(tmp_path: Path,
                                                                       tick_file) -> None:
    # a last price of 0 (a Kite instrument with no trade yet, a bad append) filled the
    # strategy's market buy at ₹0 and marked what it held down to nothing
    path, cols = tick_file(1000, 2, seed=5)
    token = int(cols.instrument_token[0])
    strategies, data = tmp_path / "strategies", tmp_path / "data"
    strategies.mkdir()
    (strategies / "hold.yaml").write_text(f"id: hold\nstrategy: {__name__}:BuyOnce\n"
                                          f"instruments: [{token}]\n")
    zero = new_envelope(MarketTick(instrument_token=token, last_price=0, ts=int(cols.ts[0])),
                        id="zero", ts=int(cols.ts[0]), source="kite", key=str(token),
                        correlation_id="zero")

    summary = run_after(path, strategies, data, [
        Output(MARKET_TICKS, str(token).encode(), CODEC.encode(zero), (("id", b"zero"),))])
    assert summary["dead_letters_by_topic"] == {"market.ticks.dlq": 4}
    fills = asyncio.run(logged(data, "paper.orders.filled", OrderFilled))
    assert [f.quantity for f in fills] == [10] and fills[0].price > 0
    assert Decimal(summary["unrealized_pnl"]) > -Decimal(10 * fills[0].price) / 200


async def test_a_replay_warns_of_a_strategy_token_its_file_never_ticks(
        tmp_path: Path, tick_file) -> None:
    # A token typo (or another file's instrument) never traded, and the replay said nothing,
    # where `backtest` of the same file warns and `run` on the simulator does too.
    from structlog.testing import capture_logs

    from alpha_panda.testing.pipeline import run_replay, settings_for

    path, cols = tick_file(1000, 2, seed=5)
    tokens = sorted(set(cols.instrument_token.tolist()))
    write_strategy(tmp_path / "strategies", id="typo", tokens=[tokens[0], 123456])
    with capture_logs() as logs:
        await run_replay(settings_for(tmp_path, path))
    warned = [e for e in logs if e["event"] == "strategy.instruments_not_in_file"]
    assert warned == [{
        "event": "strategy.instruments_not_in_file", "log_level": "warning",
        "strategy": "typo", "source": str(tmp_path / "strategies" / "typo.yaml"),
        "instruments": [123456], "file": str(path),
        "detail": "no tick of these in the replayed file: this strategy never trades them"}]
