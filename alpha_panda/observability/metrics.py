"""Prometheus metrics shared by every service, on prometheus_client's default registry.

Services define their own counters next to their code; this module holds what every
process exports (build/process info) and the HTTP metrics of the read API, plus
``metrics_text()`` for the ``/metrics`` endpoint.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from alpha_panda import __version__

METRICS_CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
"""The Content-Type of the Prometheus text exposition format."""

PROCESS_INFO: Final = Info("alpha_panda_process", "Version and role of this Alpha Panda process")
STARTED_AT: Final = Gauge(
    "alpha_panda_process_start_time_seconds", "Unix time this Alpha Panda process started"
)
HTTP_REQUESTS: Final = Counter(
    "alpha_panda_http_requests_total",
    "HTTP requests served by the read API",
    ["method", "route", "status"],
)
HTTP_LATENCY: Final = Histogram(
    "alpha_panda_http_request_duration_seconds",
    "Time to serve a read API request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
COMPONENT_UP: Final = Gauge(
    "alpha_panda_component_ready", "1 when a registered component reports ready", ["component"]
)

_started = time.time()
STARTED_AT.set(_started)


def set_process_info(service: str, **extra: str) -> None:
    """Publish this process's role (``service``), version, Python and pid as an Info metric."""
    labels = {
        "service": service,
        "version": __version__,
        "python": platform.python_version(),
        "pid": str(os.getpid()),
    }
    labels.update(extra)
    PROCESS_INFO.info(labels)


def uptime_seconds() -> float:
    """Seconds since this module was imported (≈ process start)."""
    return time.time() - _started


def metrics_text() -> bytes:
    """Every metric of the default registry in the Prometheus text format."""
    return generate_latest(REGISTRY)
