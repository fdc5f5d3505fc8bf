"""``alpha-panda dlq list|show|replay``: inspect dead letters and put them back on their topic."""

from __future__ import annotations

import datetime as dt
import difflib
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from alpha_panda.cli.log_job import run_log_job
from alpha_panda.domain.errors import ValidationError
from alpha_panda.stream import dlq as tools
from alpha_panda.stream.log import Log
from alpha_panda.stream.topics import REGISTRY, is_dlq

app = typer.Typer(help="Inspect and replay dead letters (messages a service gave up on).",
                  no_args_is_help=True)

T = TypeVar("T")
LogOpt = Annotated[str | None, typer.Option("--log", help=(
    "embedded | sqlite:PATH | kafka://HOST:PORT "
    "(default: ALPHA_PANDA_LOG, else embedded)"))]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help=(
    "data directory of the embedded log (default: ALPHA_PANDA_DATA_DIR, else ./data)"))]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


async def check_topic(lg: Log, topic: str) -> None:
    """Raise ``ValidationError`` unless ``topic`` (or ``topic.dlq``) can have dead letters:
    a registry topic, or one whose DLQ is on the log. A typo would otherwise read as
    "no dead letters", which is the answer an operator hopes for, not the true one."""
    original = topic.removesuffix(".dlq") if is_dlq(topic) else topic
    on_log = {name.removesuffix(".dlq") for name in await lg.list_topics() if is_dlq(name)}
    known = sorted({s.name for s in REGISTRY.all() if not s.dlq} | on_log)
    if original in known:
        return
    close = difflib.get_close_matches(original, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValidationError(
        f"unknown topic {topic!r}: {hint}dead letters are kept for {', '.join(known)} "
        f"(or the same name with .dlq); see `alpha-panda topics list`")


def _checked(topic: str | None, job: Callable[[Log], Awaitable[T]]) -> Callable[[Log], Awaitable[T]]:
    """``job``, run after ``check_topic`` when a topic is given."""
    async def run(lg: Log) -> T:
        if topic is not None:
            await check_topic(lg, topic)
        return await job(lg)
    return run


def _summary(e: tools.DeadLetterEntry) -> dict[str, Any]:
    d = e.letter
    return {
        "dlq_topic": e.dlq_topic, "partition": e.partition, "offset": e.offset,
        "topic": d.topic, "source_partition": d.partition, "source_offset": d.offset,
        "key": d.key.decode(errors="replace") if d.key else None,
        "error_class": d.error_class, "error": d.error, "attempts": d.attempts,
        "service": d.service,
        "failed_at": dt.datetime.fromtimestamp(d.failed_at / 1e9, dt.UTC).isoformat(),
        "replay": d.replay,
    }


@app.command("list")
def list_(
    topic: Annotated[str | None, typer.Option(help="original topic (default: every DLQ)")] = None,
    limit: Annotated[int, typer.Option(min=1, help="most recent N")] = 50,
    log: LogOpt = None, data_dir: DataDirOpt = None, as_json: JsonOpt = False,
) -> None:
    """List the most recent dead letters."""
    entries = run_log_job(log, data_dir, _checked(
        topic, lambda lg: tools.list_dead_letters(lg, topic, limit)))
    rows = [_summary(e) for e in entries]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no dead letters")
        return
    for r in rows:
        typer.echo(f"{r['dlq_topic']}@{r['offset']}  {r['failed_at']}  {r['service']}  "
                   f"{r['topic']}[{r['source_partition']}]@{r['source_offset']}  "
                   f"{r['error_class']}: {r['error'][:100]}")


@app.command()
def show(
    topic: Annotated[str, typer.Option(help="original topic or its .dlq topic")],
    offset: Annotated[int, typer.Option(help="offset in the DLQ topic")],
    partition: Annotated[int, typer.Option(help="DLQ partition")] = 0,
    log: LogOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Everything about one dead letter: error, stack, headers and the original bytes."""
    entry = run_log_job(log, data_dir, _checked(
        topic, lambda lg: tools.show(lg, topic, offset, partition)))
    doc = _summary(entry)
    doc["headers"] = {k: v.decode(errors="replace") for k, v in entry.letter.headers}
    doc["value"] = entry.letter.value.decode(errors="replace")
    doc["stack"] = entry.letter.stack
    typer.echo(json.dumps(doc, indent=2))


@app.command()
def replay(
    topic: Annotated[str, typer.Option(help="original topic whose dead letters to replay")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show, append nothing")] = False,
    limit: Annotated[int | None, typer.Option(
        min=1, help="replay at most N records (default: all)")] = None,
    include_undecodable: Annotated[bool, typer.Option(
        "--include-undecodable",
        help=("also replay letters that failed with DecodeError, including those skipped "
              "before (only once the consumers accept their payload, e.g. after a schema "
              "fix: unchanged, they are dead-lettered again)"))] = False,
    log: LogOpt = None, data_dir: DataDirOpt = None,
) -> None:
    """Append dead letters' original records back to their topic (each one only once).

    Letters that failed with DecodeError (a malformed payload) are skipped unless
    --include-undecodable is given: replayed unchanged, they fail the same way.
    """
    result = run_log_job(log, data_dir, _checked(topic, lambda lg: tools.replay(
        lg, topic, dry_run=dry_run, limit=limit, include_undecodable=include_undecodable)))
    verb, skip = ("would replay", "would skip") if dry_run else ("replayed", "skipped")
    for e in result.replayed:
        typer.echo(f"{verb} {e.dlq_topic}@{e.offset} -> {e.letter.topic}: {e.letter.error_class}")
    for e in result.same_record:
        typer.echo(f"{skip} {e.dlq_topic}@{e.offset} -> {e.letter.topic}: {e.letter.service}'s "
                   "letter of a record replayed above")
    for e in result.skipped:
        typer.echo(f"{skip} {e.dlq_topic}@{e.offset} -> {e.letter.topic}: "
                   f"{e.letter.error_class}: {e.letter.error[:100]}")
    typer.echo(f"{verb} {len(result.replayed)} dead letter(s) to {result.topic}"
               + (f"; ignored {result.unreadable} record(s) of the DLQ topic that are not "
                  "dead letters" if result.unreadable else ""))
    if result.same_record:
        typer.echo(
            f"{skip} {len(result.same_record)} more dead letter(s) of those records: each "
            "service that failed on a record wrote its own letter, and one copy back on the "
            "topic is for them all (the other services handled the original)")
    if result.skipped:
        typer.echo(
            f"{skip} {len(result.skipped)} dead letter(s) that failed with DecodeError: their "
            "payload does not decode, so replayed unchanged they would only be dead-lettered "
            "again. Once the consumers accept it (e.g. after a schema fix), replay them with "
            f"`alpha-panda dlq replay --topic {result.topic} --include-undecodable`.")
