"""A service task that fails during a run (the feed, a processor) ends a replay run to its end
instead of leaving it waiting forever for a drain that cannot come, and the run exits 1: the
figures it prints are those of an incomplete run. (The feed's crash is injected: it stands for
any bug in a service task, such as the OverflowError an infinite ``--speed`` raised in it.)"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alpha_panda.cli.main import app
from alpha_panda.services.feed import ReplayFeed
from alpha_panda.testing.pipeline import run_replay, settings_for, write_strategy


async def _crashing_run(self: ReplayFeed, stop: asyncio.Event) -> None:
    raise OverflowError("cannot convert float infinity to integer")


@pytest.mark.timeout(60)
async def test_a_feed_that_fails_ends_a_replay_run_with_the_failure(
        tmp_path: Path, tick_file, monkeypatch: pytest.MonkeyPatch) -> None:
    path, cols = tick_file(2000, 2)
    write_strategy(tmp_path / "strategies", tokens=sorted(set(cols.instrument_token.tolist())))
    monkeypatch.setattr(ReplayFeed, "run", _crashing_run)
    system = await asyncio.wait_for(run_replay(settings_for(tmp_path, path)), 30)
    assert system.failures == ["feed: OverflowError('cannot convert float infinity to integer')"]


@pytest.mark.timeout(60)
def test_the_run_command_exits_1_naming_the_failed_service(
        tmp_path: Path, tick_file, monkeypatch: pytest.MonkeyPatch) -> None:
    path, cols = tick_file(2000, 2)
    strategies = tmp_path / "strategies"
    write_strategy(strategies, tokens=sorted(set(cols.instrument_token.tolist())))
    monkeypatch.setattr(ReplayFeed, "run", _crashing_run)
    result = CliRunner().invoke(app, [
        "run", "--feed", f"replay:{path}", "--strategies", str(strategies), "--no-api",
        "--exit-at-end", "--json", "--data-dir", str(tmp_path / "data"), "--log", "memory"])
    assert result.exit_code == 1, result.output
    assert ("services failed, so the run is incomplete: feed: OverflowError("
            in result.stderr)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["ticks_published"] == 0 and summary["fills"] == 0


@pytest.mark.timeout(60)
def test_a_service_process_whose_task_fails_exits_1_at_once(
        tmp_path: Path, tick_file, monkeypatch: pytest.MonkeyPatch) -> None:
    # one service per process: it exits for its supervisor to restart it, not sit idle
    path, _ = tick_file(200, 2)
    monkeypatch.setattr(ReplayFeed, "run", _crashing_run)
    monkeypatch.setenv("ALPHA_PANDA_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["service", "feed", "--feed", f"replay:{path}",
                                      "--log", "memory"])
    assert result.exit_code == 1, result.output
    assert "failed: feed: OverflowError(" in result.stderr


@pytest.mark.timeout(60)
async def test_a_processor_stopped_on_a_fatal_error_ends_a_replay_run_with_the_failure(
        tmp_path: Path, tick_file, monkeypatch: pytest.MonkeyPatch) -> None:
    # a fatal error (a broken invariant) stops the processor with state FAILED, not by
    # raising: the run must see that too, or it waits for a drain that cannot come
    from alpha_panda.domain.errors import InvariantViolation
    from alpha_panda.services.portfolio import PortfolioHandler

    def broken(self: PortfolioHandler, *args: object) -> object:
        raise InvariantViolation("the ledger's books do not balance")

    path, cols = tick_file(2000, 2)
    write_strategy(tmp_path / "strategies", tokens=sorted(set(cols.instrument_token.tolist())))
    monkeypatch.setattr(PortfolioHandler, "handle_batch", broken)
    monkeypatch.setattr(PortfolioHandler, "handle", broken)
    system = await asyncio.wait_for(run_replay(settings_for(tmp_path, path)), 30)
    [failure] = system.failures  # (it said "see processor.fatal", and not what failed)
    assert failure.startswith("paper.portfolio: InvariantViolation: ")
    assert failure.endswith("the ledger's books do not balance")


@pytest.mark.timeout(60)
async def test_a_run_cancelled_as_it_starts_stops_its_services_before_closing_the_log(
        tmp_path: Path, tick_file) -> None:
    # Ctrl-C in the moment before the run takes SIGINT over (asyncio.run's own handler
    # cancels the run's task) reached the run just after its services had started: it
    # closed the log under them, and each failed "InvariantViolation: the log is closed"
    # (processor.fatal with a traceback, a ProgrammingError from the storage) on the way out
    from alpha_panda.observability.health import State
    from alpha_panda.services.app import RunOptions, SystemRun

    path, cols = tick_file(200_000, 2)
    write_strategy(tmp_path / "strategies", tokens=sorted(set(cols.instrument_token.tolist())))
    system = SystemRun(settings_for(tmp_path, path), RunOptions(progress=False))
    task = asyncio.create_task(system.run())
    while system.pipeline is None or system.feed is None or not all(
            p.state is State.RUNNING for p in system.pipeline.processors):
        assert not task.done()
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)  # (what was left running fails here, once the log is closed)
    states = {p.name: p.state for p in system.pipeline.processors}
    assert State.FAILED not in states.values(), states
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()
                and not t.done()]
