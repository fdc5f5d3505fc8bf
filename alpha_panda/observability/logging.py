"""Structured logging (structlog) to stderr, JSON or console, with secrets redacted.

Standard-library loggers (uvicorn, alembic, kiteconnect) go through the same renderer,
so a process writes one consistent stream. Any field whose key contains ``token``,
``secret``, ``password`` or ``api_key`` is replaced by ``***``, however deeply nested
(``instrument_token`` is market data, not a credential, and stays),
and ``key=value`` pairs of those names inside message text are masked too: an access
token in a log is a live credential.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Final, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.observability.tracing import trace_ids

REDACTED: Final = "***"
_SECRET_KEY = re.compile(
    r"token|secret|password|passwd|api_key|apikey|authorization", re.IGNORECASE
)
# market-data identifiers that merely contain the word "token"
_NOT_SECRET: Final = frozenset({"instrument_token", "instrument_tokens", "exchange_token"})
_SECRET_IN_TEXT = re.compile(
    r"(?<![\w-])(?!instrument_token|exchange_token)"
    r"(?P<k>[\w-]*(?:token|secret|password|passwd|api_key|apikey)[\w-]*)"
    r"(?P<sep>\s*[=:]\s*|\"\s*:\s*\")(?P<v>[^\s,;&\"']+)",
    re.IGNORECASE,
)


_OWN_HANDLER_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access")


def is_secret_key(key: str) -> bool:
    """True when a field named ``key`` must never be logged in clear."""
    return key.lower() not in _NOT_SECRET and bool(_SECRET_KEY.search(key))


def redact(value: Any, key: str = "") -> Any:
    """``value`` with every secret field (by key name) replaced by ``***``."""
    if key and is_secret_key(key) and value not in (None, ""):
        return REDACTED
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str) -> str:
    """Mask ``access_token=abc`` / ``"api_key": "abc"`` style pairs inside free text."""
    return _SECRET_IN_TEXT.sub(lambda m: f"{m['k']}{m['sep']}{REDACTED}", text)


def _redact_processor(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return {k: redact(v, k) for k, v in event_dict.items()}


def _add_trace(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    ids = trace_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record, not as it was when logging was
    configured: a stderr replaced since (``contextlib.redirect_stderr``, a test runner's
    capture) is followed, and a closed one is never written to. (A test that configured
    logging left its handler on pytest's closed capture: each record after it cost a
    "Logging error" traceback, 60 ms here, and a test retrying 1,100 times timed out.)"""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass  # always the current sys.stderr


def configure_logging(json: bool = False, level: str = "INFO", stream: TextIO | None = None) -> None:
    """Configure structlog and the standard library to write to stderr (or ``stream``).

    Args:
        json: one JSON object per line (production) instead of coloured console lines.
        level: DEBUG, INFO, WARNING, ERROR or CRITICAL.
        stream: where to write; stderr by default, so stdout stays free for ``--json`` output.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigurationError(f"log level {level!r}: expected DEBUG, INFO, WARNING or ERROR")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace,
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if json:
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            _redact_processor,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, _redact_processor],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(formatter)
    handler.set_name("alpha_panda")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "alpha_panda"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _OWN_HANDLER_LOGGERS:
        # uvicorn's default log config gives these their own plain handlers and stops
        # propagation, which would bypass redaction; route them through ours instead
        # (and start uvicorn with ``log_config=None`` so it does not undo this)
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def get_logger(name: str | None = None, **bound: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger, optionally with fields bound to every line."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger.bind(**bound) if bound else logger


def bind_context(**fields: Any) -> None:
    """Add fields to every log line of the current task/context (e.g. service, broker)."""
    structlog.contextvars.bind_contextvars(**fields)
