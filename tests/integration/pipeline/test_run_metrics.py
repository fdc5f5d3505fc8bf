"""What a running system says about itself: ``/metrics``' process info (the
``alpha_panda_process_info`` series had no label at all: nothing called for them), and its
OpenTelemetry spans as ``ALPHA_PANDA_TRACING`` asks."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from alpha_panda import __version__
from alpha_panda.domain.events import CODEC
from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.services.logs import open_log
from alpha_panda.settings import ApiSettings, Settings, SimulatorSettings
from alpha_panda.stream.log import Record, read_topic
from alpha_panda.stream.topics import MARKET_TICKS
from alpha_panda.testing.pipeline import write_strategy
from alpha_panda.testing.redis_server import free_port


async def test_a_running_system_names_itself_in_process_info(tmp_path: Path) -> None:
    write_strategy(tmp_path / "strategies", tokens=[738561, 341249])
    port = free_port()
    settings = Settings().model_copy(update={
        "data_dir": tmp_path / "data", "strategies_dir": tmp_path / "strategies",
        "api": ApiSettings(port=port), "simulator": SimulatorSettings(rate=500, seed=5)})
    system = SystemRun(settings, RunOptions(progress=False))
    task = asyncio.create_task(system.run())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(400):
                try:
                    if (await client.get("/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
            text = (await client.get("/metrics")).text
    finally:
        system.stop.set()
        await task
    [info] = re.findall(r"^alpha_panda_process_info\{(.*)\} 1\.0$", text, re.MULTILINE)
    labels = dict(re.findall(r'(\w+)="([^"]*)"', info))
    assert labels["service"] == "run" and labels["version"] == __version__
    assert labels["log"] == "embedded" and labels["feed"] == "sim" and labels["live"] == "false"


def _traced_replay(tmp_path: Path, tick_file: Any) -> subprocess.CompletedProcess[str]:
    """``run`` of 1,000 ticks of 2 instruments with ``ALPHA_PANDA_TRACING=console``: spans
    on stderr, the JSON summary on stdout."""
    path, cols = tick_file(1000, 2)
    write_strategy(tmp_path / "strategies", tokens=sorted(set(cols.instrument_token.tolist())))
    env = {**os.environ, "ALPHA_PANDA_TRACING": "console", "ALPHA_PANDA_LOG_LEVEL": "WARNING"}
    done = subprocess.run(
        [sys.executable, "-m", "alpha_panda.cli", "run", "--feed", f"replay:{path}", "--no-api",
         "--exit-at-end", "--json", "--data-dir", str(tmp_path / "data"),
         "--strategies", str(tmp_path / "strategies")],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_tracing_console_prints_the_pipeline_s_spans_on_stderr(tmp_path: Path, tick_file) -> None:
    # ALPHA_PANDA_TRACING was read and never used: console printed nothing, otlp sent nothing
    done = _traced_replay(tmp_path, tick_file)
    assert json.loads(done.stdout)["ticks"] == 1000  # stdout stays the summary alone
    assert '"name": "stream.batch"' in done.stderr
    assert '"service.name": "alpha-panda.run"' in done.stderr


def test_tracing_otlp_without_its_exporter_says_what_to_install(tmp_path: Path) -> None:
    env = {**os.environ, "ALPHA_PANDA_TRACING": "otlp"}
    done = subprocess.run(
        [sys.executable, "-m", "alpha_panda.cli", "run", "--no-api", "--duration", "1",
         "--data-dir", str(tmp_path / "data")],
        env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr[-3000:]
    assert ("error: tracing exporter 'otlp' needs the OTLP exporter: pip install "
            "opentelemetry-exporter-otlp") in done.stderr


def _spans(stderr: str) -> list[dict[str, Any]]:
    """The spans ConsoleSpanExporter printed among the log lines."""
    decoder, out, at = json.JSONDecoder(), [], 0
    while (at := stderr.find('{\n    "name": ', at)) >= 0:
        span, end = decoder.raw_decode(stderr, at)
        out.append(span)
        at = end
    return out


def test_a_fill_s_trace_leads_back_to_its_tick_across_the_services(tmp_path: Path,
                                                                    tick_file) -> None:
    # no producer stamped a traceparent: every record went on the log without one, so each
    # service's batch span was a trace of its own, linked to nothing (11 of 11 spans had
    # "links": [] in a replay of 3,000 ticks), and nothing tied a fill to its tick
    done = _traced_replay(tmp_path, tick_file)
    assert json.loads(done.stdout)["fills"] > 0

    async def records(topic: str) -> list[Record]:
        log = open_log("embedded", tmp_path / "data")
        await log.start()
        try:
            return await read_topic(log, topic)
        finally:
            await log.close()

    def trace_of(r: Record) -> str:
        raw = r.header("traceparent")
        assert raw is not None, f"{r.topic} record {r.header('id')!r} carries no traceparent"
        return raw.decode().split("-")[1]

    ticks = {CODEC.decode(r.value).id: trace_of(r) for r in asyncio.run(records(MARKET_TICKS))}
    fills = asyncio.run(records("paper.orders.filled"))
    assert fills
    linked: dict[str, set[str]] = {}  # trace id -> the services whose batch spans link to it
    for span in _spans(done.stderr):
        if span["name"] == "stream.batch":
            for link in span["links"]:
                linked.setdefault(link["context"]["trace_id"][2:], set()).add(
                    span["attributes"]["service"])
    for fill in fills:
        tick_trace = ticks[CODEC.decode(fill.value).correlation_id]
        assert trace_of(fill) == tick_trace  # the fill carries its tick's trace context
        assert {"strategy-runner", "paper.risk-manager", "paper.trading-engine",
                "paper.portfolio"} <= linked.get(tick_trace, set())
