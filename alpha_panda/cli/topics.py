"""``alpha-panda topics bootstrap|list``: create and inspect the topic taxonomy on the log.

``bootstrap`` creates every topic of ``alpha_panda.stream.topics.REGISTRY`` (the broker
namespaced topics, ``market.ticks`` and every ``.dlq``) with its partitions and retention;
topics that already exist are left alone, so running it twice is harmless; one that exists
with another partition count than the registry is reported and fails the command. ``list`` shows
the registry and whether each topic exists on the configured log (and with how many
partitions, which can differ from the registry if someone created it by hand).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from alpha_panda.cli.log_job import missing_log, run_log_job
from alpha_panda.domain.errors import BrokerUnavailable, ConfigurationError
from alpha_panda.stream.log import Log
from alpha_panda.stream.topics import DAY_MS, REGISTRY, TopicSpec

app = typer.Typer(help="Create and inspect the topic taxonomy.", no_args_is_help=True)

T = TypeVar("T")
LogOpt = Annotated[str | None, typer.Option("--log", help=(
    "embedded | sqlite:PATH | kafka://HOST:PORT "
    "(default: ALPHA_PANDA_LOG, else embedded)"))]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help=(
    "data directory of the embedded log (default: ALPHA_PANDA_DATA_DIR, else ./data)"))]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def _retention(spec: TopicSpec) -> str:
    days = spec.retention_ms / DAY_MS
    return f"{days:g}d"


@app.command()
def bootstrap(log: LogOpt = None, data_dir: DataDirOpt = None) -> None:
    """Create every registry topic (and its .dlq) that does not exist yet. Idempotent."""

    async def job(lg: Log) -> tuple[int, int]:
        before = await lg.list_topics()
        specs = REGISTRY.all()
        await lg.ensure_topics(specs)
        after = await lg.list_topics()
        missing = [s.name for s in specs if s.name not in after]
        if missing:
            raise BrokerUnavailable(f"topics still missing after bootstrap: {missing}")
        # An existing topic is left alone, whatever its partitions: one made elsewhere (a
        # broker that auto-creates topics with 1 partition, a hand-run create) must be
        # reported, not counted as done. Records are placed by the registry's count, so
        # with fewer partitions every produce to it fails, and with more its partition i
        # no longer holds the instruments of partition i of the topics read with it.
        wrong = [f"{s.name} ({after[s.name]} partition{'s' if after[s.name] != 1 else ''}, "
                 f"registry: {s.partitions})" for s in specs if after[s.name] != s.partitions]
        if wrong:
            raise ConfigurationError(
                f"{len(wrong)} topic(s) exist with another partition count than the registry: "
                f"{', '.join(wrong)}. Delete them (their records are lost) and run "
                "bootstrap again.")
        created = sum(1 for s in specs if s.name not in before)
        return created, len(specs)

    created, total = run_log_job(log, data_dir, job, create=True)
    typer.echo(f"{created} topics created, {total - created} already existed ({total} in all)")


@app.command("list")
def list_(log: LogOpt = None, data_dir: DataDirOpt = None, json_out: JsonOpt = False) -> None:
    """The registry: name, partitions, key, retention, and whether it exists on the log."""
    absent = missing_log(log, data_dir)
    if absent is not None:
        # (opening it would make an empty log there: a mistyped --data-dir then looked like
        # a system's, and `dlq list` or `kill` on it answered as if it were)
        typer.secho(f"no log at {absent} yet: nothing has run on this data directory "
                    "(--data-dir, ALPHA_PANDA_DATA_DIR); the registry's topics:", err=True)
        existing: dict[str, int] = {}
    else:
        existing = run_log_job(log, data_dir, lambda lg: lg.list_topics())
    rows: list[dict[str, object]] = [
        {"name": s.name, "partitions": s.partitions, "key": s.key.value,
         "retention": _retention(s), "broker": s.broker.value if s.broker else "shared",
         "exists": s.name in existing, "log_partitions": existing.get(s.name)}
        for s in REGISTRY.all()
    ]
    if json_out:
        typer.echo(json.dumps(rows))
        return
    present = sum(1 for r in rows if r["exists"])
    table = Table(title=f"{len(rows)} topics, {present} on the log")
    for col in ("name", "partitions", "key", "retention", "broker", "exists"):
        table.add_column(col)
    for r in rows:
        parts = str(r["partitions"])
        if r["exists"] and r["log_partitions"] != r["partitions"]:
            parts += f" (log: {r['log_partitions']})"
        table.add_row(str(r["name"]), parts, str(r["key"]), str(r["retention"]),
                      str(r["broker"]), "yes" if r["exists"] else "no")
    Console(width=120).print(table)
