"""Logs are structured, go to the given stream, and never carry a secret in clear."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.observability.logging import configure_logging, get_logger, redact, redact_text


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # logging is process-global: leave it as other tests expect to find it
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_with_secrets_redacted() -> None:
    out = io.StringIO()
    configure_logging(json=True, level="INFO", stream=out)
    log = get_logger("test.zerodha", broker="zerodha")
    log.info(
        "session refreshed",
        access_token="abc123SECRET",
        config={"api_key": "kitekey", "user_id": "AB1234", "nested": [{"password": "pw"}]},
        note="retry with request_token=zzTOPzz please",
    )
    log.debug("hidden at INFO")
    [line] = _lines(out)
    assert line["event"] == "session refreshed"
    assert line["level"] == "info"
    assert line["broker"] == "zerodha"
    assert line["access_token"] == "***"
    assert line["config"] == {"api_key": "***", "user_id": "AB1234", "nested": [{"password": "***"}]}
    assert "zzTOPzz" not in out.getvalue() and "abc123SECRET" not in out.getvalue()
    assert "timestamp" in line


def test_stdlib_loggers_share_the_format_and_redaction() -> None:
    # as uvicorn's default log config leaves it: own handler, no propagation
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(logging.StreamHandler(io.StringIO()))
    uvicorn_error.propagate = False
    out = io.StringIO()
    configure_logging(json=True, level="WARNING", stream=out)
    logging.getLogger("uvicorn.error").warning("bad login secret=hunter2")
    logging.getLogger("uvicorn.error").info("dropped below WARNING")
    [line] = _lines(out)
    assert line["event"] == "bad login secret=***"
    assert line["logger"] == "uvicorn.error"


def test_console_mode_is_readable_text() -> None:
    out = io.StringIO()
    configure_logging(json=False, level="DEBUG", stream=out)
    get_logger("x").debug("ticks loaded", count=42, api_secret="s3cr3t")
    text = out.getvalue()
    assert "ticks loaded" in text and "count=42" in text
    assert "s3cr3t" not in text


def test_bad_level_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="LOUD"):
        configure_logging(level="LOUD")


def test_redact_helpers_keep_harmless_fields() -> None:
    # an instrument token is market data: a log of orders without it is useless
    assert redact({"instrument_token": 408065, "refresh_token": "r"}) == {
        "instrument_token": 408065,
        "refresh_token": "***",
    }
    assert redact_text("instrument_token=408065 access_token=abc") == (
        "instrument_token=408065 access_token=***"
    )
    assert redact({"user_id": "AB1234", "qty": 5}) == {"user_id": "AB1234", "qty": 5}
    assert redact_text('{"api_key": "k1"}') == '{"api_key": "***"}'
    assert redact({"access_token": None}) == {"access_token": None}


def test_by_default_logs_go_to_stderr_as_it_is_now() -> None:
    """Configured without a stream, logs follow ``sys.stderr`` when it is replaced (and
    never write to one closed since): not the stream stderr was when logging was set up."""
    first, later = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(first):
        configure_logging(json=True)
        get_logger("t").info("before")
    first.close()
    with contextlib.redirect_stderr(later):
        get_logger("t").warning("after")
    assert [x["event"] for x in _lines(later)] == ["after"]
