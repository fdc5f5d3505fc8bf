"""Two processes running the same service on one embedded log are refused: a second
``alpha-panda run`` on a data directory in use used to run beside the first, both handling
every record and committing over each other's offsets (the replay's fills and P&L came out
wrong). The lock goes with the process: a run after it (even after ``kill -9``) starts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alpha_panda.cli.main import app
from alpha_panda.testing.pipeline import run_replay, settings_for, write_strategy
from tests.integration.pipeline.test_crash_recovery import fills_of


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "alpha_panda.cli", *args]


async def _started(proc: subprocess.Popen[bytes], data: Path) -> None:
    deadline = time.monotonic() + 60
    while not (data / "log.sqlite").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the first run must start"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)


@pytest.mark.timeout(240)
async def test_a_second_run_on_a_data_dir_in_use_is_refused_and_changes_nothing(
        tmp_path: Path, tick_file) -> None:
    path, cols = tick_file(8000, 3)
    strategies = tmp_path / "strategies"
    write_strategy(strategies, tokens=sorted(set(cols.instrument_token.tolist())))
    clean = await run_replay(settings_for(tmp_path / "clean", path).model_copy(
        update={"strategies_dir": strategies}))
    expected = await fills_of(clean.settings.data_dir)
    assert len(expected) > 20

    data = tmp_path / "shared"
    common = ["run", "--feed", f"replay:{path}", "--no-api", "--data-dir", str(data),
              "--strategies", str(strategies), "--exit-at-end"]
    env = {**os.environ, "ALPHA_PANDA_LOG_LEVEL": "WARNING"}
    first = subprocess.Popen(cli(*common, "--speed", "0.5"), env=env,  # noqa: ASYNC220
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        await _started(first, data)
        second = await asyncio.to_thread(subprocess.run, cli(*common), env=env,
                                         capture_output=True, text=True, timeout=120,
                                         check=False)
        assert second.returncode == 2, second.stderr[-3000:]
        # (named with its command line: which of the trader's terminals or units it is)
        said = " ".join(second.stderr.split())
        assert (f"process {first.pid} (alpha-panda run --feed replay:{path} --no-api "
                f"--data-dir {data}" in said), said[-3000:]
        assert f"is already running feed on {data / 'log.sqlite'}" in said
        assert "Stop it first, or give this one its own data directory" in second.stderr
        assert "Traceback" not in second.stderr

        # nor can one of its services be started on its own beside it
        alone = await asyncio.to_thread(
            subprocess.run, cli("service", "strategy-runner", "--log", "embedded",
                                "--strategies", str(strategies), "--duration", "20"),
            env={**env, "ALPHA_PANDA_DATA_DIR": str(data)}, capture_output=True, text=True,
            timeout=120, check=False)
        assert alone.returncode == 2, alone.stderr[-3000:]
        assert "is already running strategy-runner" in alone.stderr
        # (it told `service` to take a --data-dir, an option `service` does not have)
        assert "ALPHA_PANDA_DATA_DIR" in " ".join(alone.stderr.split())
    finally:
        first.send_signal(signal.SIGKILL)  # the lock goes with the process
        first.wait(timeout=10)
    assert first.stderr is not None
    first.stderr.close()

    # the restart after the kill takes the lock and ends as an uninterrupted run does
    done = await asyncio.to_thread(subprocess.run, cli(*common), env=env, capture_output=True,
                                   text=True, timeout=200, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert await fills_of(data) == expected


def test_a_data_dir_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    # (a read-only file system said "OSError: [Errno 30] Read-only file system" under a
    # traceback; as root no permission stops a write, so a file stands where the locks go)
    data = tmp_path / "data"
    data.mkdir()
    (data / "log.sqlite.locks").write_text("")
    result = CliRunner().invoke(app, ["run", "--no-api", "--duration", "1",
                                      "--data-dir", str(data)])
    assert result.exit_code == 2, result.output
    assert f"cannot write in {data}" in result.stderr
    assert "the data directory must be writable" in result.stderr


async def _locked(data: Path, proc: subprocess.Popen[bytes]) -> None:
    from alpha_panda.adapters.sqlite_log.lock import lock_holders

    deadline = time.monotonic() + 60
    while not lock_holders(data / "log.sqlite"):
        assert proc.poll() is None and time.monotonic() < deadline, "the run must start"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_preflight_names_the_process_that_holds_the_data_dir(tmp_path: Path) -> None:
    # preflight said every check was ok while a run held the data directory, and the run
    # it vouched for was then refused by the lock
    from alpha_panda.adapters.sqlite_log.lock import lock_holders
    from alpha_panda.services.preflight import run_checks
    from alpha_panda.settings import Settings

    data = tmp_path / "data"
    settings = Settings().model_copy(update={"data_dir": data})
    [lock] = [r for r in await run_checks(settings) if r.name == "run lock"]
    assert lock.ok and lock.detail.startswith("free"), lock.detail
    env = {**os.environ, "ALPHA_PANDA_LOG_LEVEL": "WARNING"}
    first = subprocess.Popen(cli("run", "--no-api", "--data-dir", str(data), "--duration", "60"),  # noqa: ASYNC220
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await _locked(data, first)
        [lock] = [r for r in await run_checks(settings) if r.name == "run lock"]
        assert not lock.ok
        assert lock.detail.startswith(f"process {first.pid} (alpha-panda run --no-api "), lock.detail
        assert "runs feed, strategy-runner, risk-manager" in lock.detail
        assert "`run` would be refused" in lock.detail
        # it only looked: the run still holds every lock, and a second preflight says the same
        assert {h.pid for h in lock_holders(data / "log.sqlite")} == {first.pid}
        result = await asyncio.to_thread(
            subprocess.run, cli("preflight", "--data-dir", str(data), "--port", "8899"),
            env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 1, result.stdout
        assert f"process {first.pid}" in result.stdout
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    # the lock goes with the process (the lock files stay, holding nothing)
    [lock] = [r for r in await run_checks(settings) if r.name == "run lock"]
    assert lock.ok and lock.detail.startswith("free"), lock.detail
