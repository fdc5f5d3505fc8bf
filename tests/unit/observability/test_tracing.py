"""A trace started by one service continues in the next through the envelope's traceparent."""

from __future__ import annotations

import re

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.observability.tracing import (
    add_span_exporter,
    context_from_traceparent,
    current_traceparent,
    setup_tracing,
    trace_ids,
    tracer,
)

TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    setup_tracing("test-service", "none")
    exporter = InMemorySpanExporter()
    add_span_exporter(exporter)
    return exporter


def test_no_traceparent_outside_a_span(spans: InMemorySpanExporter) -> None:
    assert current_traceparent() is None
    assert trace_ids() is None


def test_traceparent_crosses_the_log(spans: InMemorySpanExporter) -> None:
    spans.clear()
    with tracer("strategy").start_as_current_span("signal_generated"):
        tp = current_traceparent()
        ids = trace_ids()
    assert tp is not None and TRACEPARENT.match(tp)
    assert ids is not None and tp.split("-")[1] == ids[0]
    # the consumer, in another process, continues the trace from the envelope header
    with tracer("risk").start_as_current_span("validate", context=context_from_traceparent(tp)):
        child = trace_ids()
    assert child is not None and child[0] == ids[0] and child[1] != ids[1]
    finished = {s.name: s for s in spans.get_finished_spans()}
    validate_parent = finished["validate"].parent
    assert validate_parent is not None and format(validate_parent.span_id, "016x") == ids[1]


@pytest.mark.parametrize("bad", [None, "", "garbage", "00-zz-yy-01"])
def test_missing_or_malformed_traceparent_starts_a_new_trace(
    spans: InMemorySpanExporter, bad: str | None
) -> None:
    with tracer().start_as_current_span("orphan", context=context_from_traceparent(bad)):
        ids = trace_ids()
    assert ids is not None
    [orphan] = [s for s in spans.get_finished_spans() if s.name == "orphan"][-1:]
    assert orphan.parent is None


def test_unknown_or_missing_exporter_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="expected none, console or otlp"):
        setup_tracing("svc", "jaeger")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="opentelemetry-exporter-otlp"):
        setup_tracing("svc", "otlp")
