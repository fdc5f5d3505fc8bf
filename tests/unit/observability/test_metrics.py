"""The /metrics text carries the process info and the shared metrics."""

from __future__ import annotations

from alpha_panda import __version__
from alpha_panda.observability.metrics import (
    HTTP_REQUESTS,
    metrics_text,
    set_process_info,
    uptime_seconds,
)


def test_metrics_text_has_process_info_and_counters() -> None:
    set_process_info("api", broker_mode="paper")
    HTTP_REQUESTS.labels("GET", "/test-metrics", "200").inc()
    text = metrics_text().decode()
    assert f'version="{__version__}"' in text
    assert 'service="api"' in text and 'broker_mode="paper"' in text
    assert 'alpha_panda_http_requests_total{method="GET",route="/test-metrics",status="200"} 1.0' in text
    assert "alpha_panda_process_start_time_seconds" in text
    assert uptime_seconds() >= 0
