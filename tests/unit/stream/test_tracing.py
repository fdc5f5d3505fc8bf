"""A processed batch is a span linked to the trace context its events carry."""

from __future__ import annotations

import msgspec
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.stream import batch
from alpha_panda.stream.emit import Emit, to_output
from alpha_panda.stream.runtime import StreamProcessor
from tests.contract.helpers import Echo, run_until, spec, tick

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


async def test_batch_span_links_to_the_producer_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    # A private provider: the process-wide one belongs to whoever configures tracing.
    monkeypatch.setattr(batch, "_tracer", provider.get_tracer("test"))
    monkeypatch.setattr(batch, "_tracing_enabled", lambda: True)

    log = MemoryLog()
    await log.ensure_topics([spec("in", 1), spec("out", 1)])
    env = msgspec.structs.replace(tick(1), traceparent=f"00-{TRACE_ID}-b7ad6b7169203331-01")
    await log.append([to_output(Emit("in", env))])
    proc = StreamProcessor(log, name="traced", group="g", topics=["in"], handler=Echo("out"))
    await run_until(proc, lambda: proc.stats.processed == 1)

    spans = [s for s in exporter.get_finished_spans() if s.name == "stream.batch"
             and s.attributes and s.attributes.get("records") == 1]
    assert spans, "no batch span"
    linked = {format(link.context.trace_id, "032x") for link in spans[0].links}
    assert TRACE_ID in linked
