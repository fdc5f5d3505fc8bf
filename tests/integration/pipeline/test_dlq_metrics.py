"""``/metrics``' dead-letter count comes from the log: the same after a restart. The
process's own counter started from 0 with each process, so an alert on dead letters went
quiet at every restart while the letters were still there, unreplayed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.stream.dlq import DeadLetterCounts
from alpha_panda.stream.log import Output
from alpha_panda.stream.topics import REGISTRY, dlq_topic
from alpha_panda.testing.pipeline import append_poison_tick, settings_for, write_strategy

PORT = 8811


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "alpha_panda.cli", *args]


def _sample(metrics: str, name: str, topic: str) -> float | None:
    found = re.search(rf'^{name}\{{[^}}]*topic="{re.escape(topic)}"[^}}]*\}} (\S+)$', metrics,
                      re.MULTILINE)
    return float(found.group(1)) if found else None


async def _scrape(proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as client:
        while True:
            assert proc.poll() is None, "the run must start"
            try:
                answer = await client.get(f"http://127.0.0.1:{PORT}/metrics")
                return answer.text
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the API must answer"
                await asyncio.sleep(0.2)


@pytest.mark.timeout(180)
async def test_the_dead_letter_count_is_the_logs_after_a_restart(tmp_path: Path,
                                                                   tick_file) -> None:
    path, cols = tick_file(500, 2)
    settings = settings_for(tmp_path, path)
    write_strategy(tmp_path / "strategies", tokens=sorted(set(cols.instrument_token.tolist())))
    await append_poison_tick(settings)  # each of the 4 services that read ticks: a letter
    env = {**os.environ, "ALPHA_PANDA_LOG_LEVEL": "WARNING"}
    data = ["--data-dir", str(settings.data_dir), "--strategies", str(tmp_path / "strategies")]
    first = await asyncio.to_thread(
        subprocess.run, cli("run", "--feed", f"replay:{path}", "--exit-at-end", "--no-api",
                            *data), env=env, capture_output=True, text=True, timeout=120,
        check=False)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "4 dead letters written during this run" in first.stderr

    # the restart: a run of the simulator with the API, on the same data directory
    again = subprocess.Popen(cli("run", "--port", str(PORT), "--duration", "60", *data),  # noqa: ASYNC220
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        metrics = await _scrape(again)
    finally:
        again.send_signal(signal.SIGINT)
        await asyncio.to_thread(again.wait, 30)
    ticks_dlq = dlq_topic("market.ticks")
    assert _sample(metrics, "alpha_panda_dead_letters_total", ticks_dlq) == 4.0
    assert _sample(metrics, "alpha_panda_dead_letters_total", dlq_topic("paper.control")) == 0.0
    # (the process's own count of the letters it wrote: none, in this process)
    assert _sample(metrics, "alpha_panda_stream_dead_letters_total", "market.ticks") is None


@pytest.mark.parametrize("contiguous", [True, False], ids=["end-offsets", "read"])
async def test_counts_follow_new_letters_as_read_from_the_log(tmp_path: Path,
                                                               contiguous: bool) -> None:
    # (read: the way a Kafka log is counted, its transaction markers taking offsets)
    log = SqliteLog(tmp_path / "log.sqlite")
    await log.start()
    try:
        await log.ensure_topics(REGISTRY.all())
        letters = DeadLetterCounts(log, contiguous=contiguous)
        topic = dlq_topic("market.ticks")
        assert (await letters.refresh())[topic] == 0
        await log.append([Output(topic, b"k", b"x", (), 0)] * 3)
        assert (await letters.refresh())[topic] == 3
        await log.append([Output(topic, b"k", b"x", (), 0)] * 2)
        counts = await letters.refresh()
        assert counts[topic] == 5 and counts[dlq_topic("paper.control")] == 0
        # a fresh reader (the restart) reads the same from the log
        assert (await DeadLetterCounts(log, contiguous=contiguous).refresh())[topic] == 5
    finally:
        await log.close()


async def test_letters_another_process_writes_are_counted(tmp_path: Path) -> None:
    # (an API alone beside the services' processes on one embedded log: its count stood
    # at what its own process had seen, 0)
    reader, writer = SqliteLog(tmp_path / "log.sqlite"), SqliteLog(tmp_path / "log.sqlite")
    await reader.start()
    await writer.start()
    try:
        await reader.ensure_topics(REGISTRY.all())
        await writer.ensure_topics(REGISTRY.all())
        letters = DeadLetterCounts(reader)
        topic = dlq_topic("market.ticks")
        assert (await letters.refresh())[topic] == 0
        await writer.append([Output(topic, b"k", b"x", (), 0)] * 4)
        await asyncio.sleep(0.05)  # (the reader looks again at most every 20 ms)
        assert (await letters.refresh())[topic] == 4
    finally:
        await writer.close()
        await reader.close()
