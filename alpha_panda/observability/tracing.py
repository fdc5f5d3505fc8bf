"""OpenTelemetry tracing and the W3C ``traceparent`` that rides on every envelope.

``setup_tracing`` installs the SDK tracer provider once per process. The envelope carries
the trace context across the log (``Envelope.traceparent``): a producer stamps
``current_traceparent()``, a consumer continues the trace with
``context_from_traceparent(env.traceparent)``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from alpha_panda.domain.errors import ConfigurationError

Exporter = Literal["none", "console", "otlp"]

_PROPAGATOR = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None
_exporters: set[str] = set()  # attached to ``_provider`` already (one processor each)

_OTLP_MODULES = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)


def setup_tracing(service_name: str, exporter: Exporter = "none") -> TracerProvider:
    """Install the process's tracer provider (idempotent) and attach ``exporter``.

    ``none`` still records spans, so trace ids flow through envelopes and logs, but
    exports nothing. ``console`` prints finished spans to stderr (debugging; stdout is
    for ``--json``). ``otlp`` needs
    ``opentelemetry-exporter-otlp`` installed and honours the standard ``OTEL_EXPORTER_OTLP_*``
    environment variables; without the package it is a ``ConfigurationError``.
    """
    global _provider
    if exporter not in ("none", "console", "otlp"):
        raise ConfigurationError(f"tracing exporter {exporter!r}: expected none, console or otlp")
    if _provider is None:
        _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        trace.set_tracer_provider(_provider)
    if exporter in _exporters:
        return _provider  # a second run in one process: each span is exported once
    processor = _processor(exporter)
    if processor is not None:
        _provider.add_span_processor(processor)
        _exporters.add(exporter)
    return _provider


def add_span_exporter(span_exporter: SpanExporter) -> None:
    """Send finished spans to ``span_exporter`` synchronously (tests, custom sinks)."""
    if _provider is None:
        raise ConfigurationError("call setup_tracing before add_span_exporter")
    _provider.add_span_processor(SimpleSpanProcessor(span_exporter))


def _processor(exporter: Exporter) -> SpanProcessor | None:
    if exporter == "none":
        return None
    if exporter == "console":
        return SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr))
    for name in _OTLP_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        otlp: SpanExporter = module.OTLPSpanExporter()
        return BatchSpanProcessor(otlp)
    raise ConfigurationError(
        "tracing exporter 'otlp' needs the OTLP exporter: pip install opentelemetry-exporter-otlp"
    )


def tracer(name: str = "alpha_panda") -> trace.Tracer:
    """A tracer from the installed provider (a no-op one before ``setup_tracing``)."""
    return trace.get_tracer(name)


def tracing_enabled() -> bool:
    """True once an SDK tracer provider is installed (``setup_tracing``): before that,
    spans record nothing and producers need not stamp a traceparent."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the active span, or None when no span is recording."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> otel_context.Context:
    """A context whose parent is the span ``traceparent`` names; empty context when None or bad.

    A malformed header is ignored (a new trace starts) rather than failing the message:
    tracing must never cost a trade.
    """
    if not traceparent:
        return otel_context.Context()
    return _PROPAGATOR.extract({"traceparent": traceparent}, context=otel_context.Context())


def trace_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the active span, for log lines; None outside a span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
