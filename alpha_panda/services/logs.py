"""Open the configured log backend. The only place that knows which backends exist."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from alpha_panda.adapters.kafka.config import KafkaSettings
from alpha_panda.domain.errors import ConfigurationError, DecodeError
from alpha_panda.domain.events import CODEC, Envelope
from alpha_panda.stream.log import Log, read_topic

if TYPE_CHECKING:
    from alpha_panda.settings import Settings

EMBEDDED_FILE = "log.sqlite"


def kafka_settings(settings: Settings) -> KafkaSettings:
    """The Kafka section, deduplicating processed ids on the cache's Redis unless told
    otherwise: the services' groups (``run``, ``service``) and the commands' own (``dlq
    replay`` remembers there which services each record went back for)."""
    k = settings.kafka
    if k.dedup_redis_url is None and settings.cache_url.startswith(("redis://", "rediss://")):
        return k.model_copy(update={"dedup_redis_url": settings.cache_url})
    return k


def embedded_file(url: str, data_dir: Path) -> Path | None:
    """The file an embedded (SQLite) log ``url`` lives in; None for another backend."""
    if url in ("embedded", "sqlite"):
        return data_dir / EMBEDDED_FILE
    if url.startswith("sqlite:"):
        return Path(url.removeprefix("sqlite:").removeprefix("//"))
    return None


def open_log(url: str, data_dir: Path, *, kafka: KafkaSettings | dict[str, Any] | None = None) -> Log:
    """A Log for ``url``: ``embedded`` | ``memory`` | ``sqlite:PATH`` | ``kafka://HOST:PORT[,...]``.

    ``kafka`` holds extra Kafka settings (the ``kafka`` settings section); the URL's hosts
    override its ``bootstrap_servers``. Backends are imported lazily so the embedded
    default never needs librdkafka.
    """
    if url == "memory":
        from alpha_panda.adapters.memory_log import MemoryLog

        return MemoryLog()
    path = embedded_file(url, data_dir)
    if path is not None:
        from alpha_panda.adapters.sqlite_log import SqliteLog

        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # (`topics bootstrap --data-dir FILE`: a traceback)
            raise ConfigurationError(
                f"cannot write in {path.parent}: {exc.strerror or exc}; the data directory "
                "must be writable (--data-dir, ALPHA_PANDA_DATA_DIR)") from exc
        return SqliteLog(path)
    if url.startswith("kafka://"):
        from alpha_panda.adapters.kafka import KafkaLog

        servers = url.removeprefix("kafka://").rstrip("/")
        if not servers:
            raise ConfigurationError("kafka:// URL needs HOST:PORT, e.g. kafka://localhost:9092")
        base = kafka.model_dump() if isinstance(kafka, KafkaSettings) else dict(kafka or {})
        return KafkaLog(KafkaSettings(**{**base, "bootstrap_servers": servers}))
    raise ConfigurationError(
        f"unknown log {url!r}: expected embedded, memory, sqlite:PATH or kafka://HOST:PORT"
    )


async def read_events(log: Log, name: str, upto: dict[int, int] | None = None) -> list[Envelope[Any]]:
    """The events of topic ``name`` (of each partition, those before ``upto``'s offset, if
    given; none of a partition it does not name), undecodable records skipped (their
    consumers dead-letter them)."""
    out: list[Envelope[Any]] = []
    for r in await read_topic(log, name, upto=upto):
        try:
            out.append(CODEC.decode(r.value))
        except DecodeError:
            continue
    return out
