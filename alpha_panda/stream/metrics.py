"""Prometheus metrics of the stream processors, labelled by service and topic.

Defined once per process on prometheus_client's default registry (served by the API's
``/metrics``). Per-record work updates plain ints in the processor; these counters are
bumped once per batch so metrics cost nothing measurable at 100k records/s.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache
from typing import Final, TypeVar

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)

PROCESSED: Final = Counter(
    "alpha_panda_stream_processed_total", "Records handled successfully", ["service", "topic"])
EMITTED: Final = Counter(
    "alpha_panda_stream_emitted_total", "Records appended by handlers", ["service", "topic"])
DUPLICATES: Final = Counter(
    "alpha_panda_stream_duplicates_total", "Records skipped as already processed",
    ["service", "topic"])
ERRORS: Final = Counter(
    "alpha_panda_stream_errors_total", "Handler failures by error class",
    ["service", "topic", "error_class"])
RETRIES: Final = Counter(
    "alpha_panda_stream_retries_total", "Records scheduled for another attempt",
    ["service", "topic"])
DEAD_LETTERS: Final = Counter(
    "alpha_panda_stream_dead_letters_total",
    "Records this process sent to the dead-letter topic since it started (see "
    "alpha_panda_dead_letters_total for the log's count)", ["service", "topic"])
BATCH_SECONDS: Final = Histogram(
    "alpha_panda_stream_batch_seconds", "Time to handle and commit one batch", ["service"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
LAG: Final = Gauge(
    "alpha_panda_stream_lag", "Records behind the end of the log", ["service", "topic"])
HOT_PARTITION: Final = Gauge(
    "alpha_panda_stream_partition_share",
    "Share of a processor's records carried by a partition reported hot (0 when not hot)",
    ["service", "topic", "partition"])


@cache
def child(metric: M, *labels: str) -> M:
    """``metric.labels(*labels)``, looked up once per label set: ``labels()`` takes a lock
    and builds a key on every call (several microseconds), and every batch of every
    processor updates three or four of them."""
    return metric.labels(*labels)


class DeadLettersOnLog:
    """``alpha_panda_dead_letters_total{topic}``: the letters each DLQ topic has had written,
    as the log says (``stream.dlq.DeadLetterCounts``), set by the API before each scrape.
    A counter that survives restarts: ``increase(...[5m]) > 0`` alerts on new letters."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def set(self, counts: Mapping[str, int]) -> None:
        self._counts = dict(counts)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "alpha_panda_dead_letters",
            "Dead letters written to each DLQ topic, read from the log (the same after a restart)",
            labels=["topic"])
        for topic, n in sorted(self._counts.items()):
            family.add_metric([topic], n)
        yield family


DEAD_LETTERS_ON_LOG: Final = DeadLettersOnLog()
REGISTRY.register(DEAD_LETTERS_ON_LOG)
