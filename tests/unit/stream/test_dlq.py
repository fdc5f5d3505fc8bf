"""DLQ tools and the ``alpha-panda dlq`` commands over a real SQLite log file."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.cli.dlq import app
from alpha_panda.domain.errors import ValidationError
from alpha_panda.stream import dlq as tools
from alpha_panda.stream.log import Output
from alpha_panda.stream.records import REPLAY_FOR
from alpha_panda.stream.runtime import StreamProcessor
from alpha_panda.stream.topics import dlq_topic
from tests.contract.helpers import Echo, raw, read_all, run_until, spec, tick_output


async def _poisoned_log(path: Path) -> None:
    log = SqliteLog(path)
    await log.ensure_topics([spec("in", 1), spec("out", 1), spec(dlq_topic("in"), 1)])
    await log.append([tick_output("in", 1), raw("in", b"7", b"\xff garbage", "bad-1"),
                      raw("in", b"8", b'{"id": 1}', "bad-2")])
    proc = StreamProcessor(log, name="echo", group="g", topics=["in"], handler=Echo("out"))
    await run_until(proc, lambda: proc.stats.dead_lettered == 2)
    await log.close()


def test_list_show_and_replay_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    asyncio.run(_poisoned_log(path))
    runner = CliRunner()
    url = f"sqlite:{path}"

    listed = runner.invoke(app, ["list", "--log", url, "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["topic"], r["source_offset"], r["error_class"]) for r in rows] == [
        ("in", 1, "DecodeError"), ("in", 2, "DecodeError")]

    shown = runner.invoke(app, ["show", "--log", url, "--topic", "in", "--offset", "1"])
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.output)
    assert doc["headers"]["id"] == "bad-2" and doc["value"] == '{"id": 1}'
    assert "Traceback" in doc["stack"]

    # both failed to decode: replayed unchanged they would only be dead-lettered again
    dry = runner.invoke(app, ["replay", "--log", url, "--topic", "in", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would skip in.dlq@0 -> in: DecodeError: malformed envelope" in dry.output
    assert "would skip in.dlq@1 -> in: DecodeError: malformed envelope" in dry.output
    assert "would replay 0 dead letter(s) to in\n" in dry.output
    assert "would skip 2 dead letter(s) that failed with DecodeError" in dry.output
    skipped = runner.invoke(app, ["replay", "--log", url, "--topic", "in"])
    assert skipped.exit_code == 0, skipped.output
    assert "replayed 0 dead letter(s) to in\n" in skipped.output
    assert ("skipped 2 dead letter(s) that failed with DecodeError: their payload does not "
            "decode") in skipped.output
    assert "--topic in --include-undecodable" in skipped.output
    assert asyncio.run(_values(path, "in"))[3:] == []  # nothing went back on the topic
    # skipped is not lost: asked for, they are replayed, each once
    forced = ["replay", "--log", url, "--topic", "in", "--include-undecodable"]
    one = runner.invoke(app, [*forced, "--limit", "1"])
    assert "replayed 1 dead letter(s)" in one.output and "skip" not in one.output
    rest = runner.invoke(app, forced)
    assert "replayed 1 dead letter(s)" in rest.output
    again = runner.invoke(app, forced)
    assert "replayed 0 dead letter(s)" in again.output

    values = asyncio.run(_values(path, "in"))
    assert values[3:] == [b"\xff garbage", b'{"id": 1}']  # the original bytes, in order


async def _values(path: Path, topic: str) -> list[bytes]:
    log = SqliteLog(path)
    try:
        return [r.value for r in await read_all(log, topic)]
    finally:
        await log.close()


async def _mixed_log(path: Path) -> None:
    """``in.dlq``: @0 a tick rejected by the handler (ValidationError), @1 garbage bytes."""
    log = SqliteLog(path)
    await log.ensure_topics([spec("in", 1), spec("out", 1), spec(dlq_topic("in"), 1)])
    await log.append([tick_output("in", 1, price=99_000), raw("in", b"7", b"{oops", "bad-1")])
    proc = StreamProcessor(log, name="echo", group="g", topics=["in"], handler=Echo(
        "out", lambda e: ValidationError("price band")))
    await run_until(proc, lambda: proc.stats.dead_lettered == 2)
    await log.close()


def test_replay_skips_only_letters_that_failed_to_decode(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    asyncio.run(_mixed_log(path))
    runner = CliRunner()
    url = f"sqlite:{path}"

    first = runner.invoke(app, ["replay", "--log", url, "--topic", "in"])
    assert first.exit_code == 0, first.output
    assert "replayed in.dlq@0 -> in: ValidationError\n" in first.output
    assert "skipped in.dlq@1 -> in: DecodeError: malformed envelope" in first.output
    assert "replayed 1 dead letter(s) to in\n" in first.output
    assert "skipped 1 dead letter(s) that failed with DecodeError" in first.output
    assert asyncio.run(_values(path, "in"))[2:] == [asyncio.run(_values(path, "in"))[0]]

    forced = runner.invoke(app, ["replay", "--log", url, "--topic", "in",
                                 "--include-undecodable"])
    assert forced.exit_code == 0, forced.output
    assert forced.output.splitlines() == [
        "replayed in.dlq@1 -> in: DecodeError", "replayed 1 dead letter(s) to in"]
    assert asyncio.run(_values(path, "in"))[3:] == [b"{oops"]  # the tick is not sent twice


def test_show_of_a_missing_offset_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    asyncio.run(_poisoned_log(path))
    res = CliRunner().invoke(app, ["show", "--log", f"sqlite:{path}", "--topic", "in",
                                   "--offset", "9"])
    assert res.exit_code == 2
    assert "no dead letter at in.dlq[0]@9" in res.output


def test_a_record_of_a_dlq_topic_that_is_no_dead_letter_leaves_the_others_listed(
        tmp_path: Path) -> None:
    # (replay passes over such a record, saying so; list ended at it, exit 2 and no letter
    # shown: an operator saw none of the letters the DLQ holds)
    path = tmp_path / "log.sqlite"
    asyncio.run(_poisoned_log(path))

    async def add_stranger() -> None:
        log = SqliteLog(path)
        await log.append([raw(dlq_topic("in"), b"k", b"not a dead letter")])
        await log.close()

    asyncio.run(add_stranger())
    url = f"sqlite:{path}"
    listed = CliRunner().invoke(app, ["list", "--log", url, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["source_offset"] for r in json.loads(listed.stdout)] == [1, 2]
    dry = CliRunner().invoke(app, ["replay", "--log", url, "--topic", "in", "--dry-run"])
    assert "ignored 1 record(s) of the DLQ topic that are not dead letters" in dry.output


def test_a_file_that_is_not_a_log_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    # (`--log sqlite:` naming the wrong file, a damaged log: sqlite3's DatabaseError came
    # out of every command, preflight's check included, as a traceback)
    path = tmp_path / "ticks.csv"
    path.write_text("ts,instrument_token,last_price\n")
    res = CliRunner().invoke(app, ["list", "--log", f"sqlite:{path}"])
    assert res.exit_code == 2, res.output
    assert f"cannot open the embedded log {path}: file is not a database" in res.output
    assert path.read_text() == "ts,instrument_token,last_price\n"  # left as it was


def test_an_unknown_topic_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    asyncio.run(_poisoned_log(path))
    url = f"sqlite:{path}"
    runner = CliRunner()
    for command in (["list"], ["replay", "--dry-run"], ["show", "--offset", "0"]):
        res = runner.invoke(app, [*command, "--log", url, "--topic", "nosuch.topic"])
        assert res.exit_code == 2, command
        assert "no dead letters" not in res.output and "replayed" not in res.output
        message = res.stderr.strip()
        assert message.startswith("error: unknown topic 'nosuch.topic': dead letters are kept "
                                  "for in, market.ticks, paper.control, ")
        assert message.endswith(
            "zerodha.signals.validated (or the same name with .dlq); see `alpha-panda topics list`")
    typo = runner.invoke(app, ["list", "--log", url, "--topic", "paper.order.filled"])
    assert "unknown topic 'paper.order.filled': did you mean 'paper.orders.filled'?" in typo.stderr
    # a registry topic with no dead letters yet, and a topic's own .dlq name, are fine
    empty = runner.invoke(app, ["list", "--log", url, "--topic", "paper.orders.filled"])
    assert (empty.exit_code, empty.stdout) == (0, "no dead letters\n")
    mine = runner.invoke(app, ["list", "--log", url, "--topic", "in.dlq", "--json"])
    assert mine.exit_code == 0 and len(json.loads(mine.stdout)) == 2


async def _fail_in(path: Path, name: str, letters: int) -> None:
    log = SqliteLog(path)
    await log.ensure_topics([spec("in", 1), spec("out", 1), spec(dlq_topic("in"), 1)])
    proc = StreamProcessor(log, name=name, group=name, topics=["in"], handler=Echo(
        "out", lambda e: ValidationError("price band")))
    await run_until(proc, lambda: proc.stats.dead_lettered == letters)
    await log.close()


async def _failed_in_two_services(path: Path) -> None:
    """``in.dlq``: a tick two services (groups) refused, one letter from each, then the
    letters of a second tick, and garbage each of them failed to decode."""
    log = SqliteLog(path)
    await log.ensure_topics([spec("in", 1)])
    await log.append([tick_output("in", 1, price=99_000, id="t-1"),
                      tick_output("in", 2, price=98_000, id="t-2"),
                      raw("in", b"7", b"{oops", "bad-1")])
    await log.close()
    for name in ("risk", "engine"):
        await _fail_in(path, name, 3)


def test_a_record_several_services_failed_on_goes_back_once(tmp_path: Path) -> None:
    # each service's letter of a tick put one more copy of it back: every consumer then
    # dead-lettered every copy again (one malformed tick, four services: 16 letters after
    # one replay, 64 after the next)
    path = tmp_path / "log.sqlite"
    asyncio.run(_failed_in_two_services(path))
    runner = CliRunner()
    url = f"sqlite:{path}"

    dry = runner.invoke(app, ["replay", "--log", url, "--topic", "in", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would replay 2 dead letter(s) to in\n" in dry.output
    assert "would skip in.dlq@3 -> in: engine's letter of a record replayed above" in dry.output
    assert "would skip 2 more dead letter(s) of those records: each service that failed on " \
        "a record wrote its own letter" in dry.output

    # --limit counts records; a later run passes over the other service's letter of the
    # record replayed before (the letters of one record need not be next to each other)
    one = runner.invoke(app, ["replay", "--log", url, "--topic", "in", "--limit", "1"])
    assert one.exit_code == 0, one.output
    assert one.output.splitlines() == [
        "replayed in.dlq@0 -> in: ValidationError", "replayed 1 dead letter(s) to in"]
    rest = runner.invoke(app, ["replay", "--log", url, "--topic", "in"])
    assert "replayed in.dlq@1 -> in: ValidationError\n" in rest.output
    assert "skipped in.dlq@3 -> in: engine's letter of a record replayed above" in rest.output
    assert "skipped in.dlq@4 -> in: engine's letter of a record replayed above" in rest.output
    assert "replayed 1 dead letter(s) to in\n" in rest.output
    forced = runner.invoke(app, ["replay", "--log", url, "--topic", "in",
                                 "--include-undecodable"])
    assert "replayed 1 dead letter(s) to in\n" in forced.output
    assert "skipped 1 more dead letter(s) of those records" in forced.output
    again = runner.invoke(app, ["replay", "--log", url, "--topic", "in",
                                "--include-undecodable"])
    assert "replayed 0 dead letter(s) to in\n" in again.output
    # a copy that fails again is dead-lettered as a record of its own: replayable in turn
    asyncio.run(_fail_in(path, "risk", 3))  # the three copies
    third = runner.invoke(app, ["replay", "--log", url, "--topic", "in"])
    assert "replayed in.dlq@6 -> in: ValidationError\n" in third.output
    assert "replayed 2 dead letter(s) to in\n" in third.output

    values = asyncio.run(_values(path, "in"))
    # each record once, in order; then the copies of the two that failed again
    assert values[3:] == [values[0], values[1], b"{oops", values[0], values[1]]
    # each copy is for the services whose letters it answers (only risk failed the copies)
    assert asyncio.run(_addresses(path, "in")) == [
        None, None, None, b"engine,risk", b"engine,risk", b"engine,risk", b"risk", b"risk"]


async def _addresses(path: Path, topic: str) -> list[bytes | None]:
    log = SqliteLog(path)
    try:
        return [r.header(REPLAY_FOR) for r in await read_all(log, topic)]
    finally:
        await log.close()


def test_a_limit_below_1_is_refused_not_read_as_no_dead_letters(tmp_path: Path) -> None:
    # `dlq list --limit 0` answered "no dead letters" over a DLQ holding two, and
    # `replay --limit 0` "replayed 0": the answers an operator hopes for, not the true ones
    path = tmp_path / "log.sqlite"
    asyncio.run(_poisoned_log(path))
    for command in (["list"], ["replay", "--topic", "in"]):
        for limit in ("0", "-1"):
            res = CliRunner().invoke(app, [*command, "--log", f"sqlite:{path}", "--limit", limit])
            assert res.exit_code == 2, (command, limit, res.output)
            assert "no dead letters" not in res.output and "replayed" not in res.output
            assert "Invalid value for '--limit'" in res.output


def test_a_later_letter_of_another_service_gets_a_copy_of_its_own(tmp_path: Path) -> None:
    # risk's letter of a tick was replayed while the engine lagged; the engine then failed
    # on the tick as well: the copy already back was not for it, so its letter brings one more
    path = tmp_path / "log.sqlite"

    async def one_tick() -> None:
        log = SqliteLog(path)
        await log.ensure_topics([spec("in", 1)])
        await log.append([tick_output("in", 1, price=99_000, id="t-1")])
        await log.close()

    asyncio.run(one_tick())
    asyncio.run(_fail_in(path, "risk", 1))
    url = f"sqlite:{path}"
    first = CliRunner().invoke(app, ["replay", "--log", url, "--topic", "in"])
    assert "replayed 1 dead letter(s) to in\n" in first.output
    asyncio.run(_fail_in(path, "engine", 1))  # the original only: the copy is risk's
    second = CliRunner().invoke(app, ["replay", "--log", url, "--topic", "in"])
    assert "replayed in.dlq@1 -> in: ValidationError\n" in second.output, second.output
    assert asyncio.run(_addresses(path, "in")) == [None, b"risk", b"engine"]
    again = CliRunner().invoke(app, ["replay", "--log", url, "--topic", "in"])
    assert "replayed 0 dead letter(s) to in\n" in again.output


def test_a_replayed_copy_costs_the_records_around_it_nothing(monkeypatch: Any) -> None:
    # Once a process had read one replayed copy, every batch of every consumer looked at
    # the last header of each of its records, for good: 80 ns a record per group, on the
    # embedded pipeline's path of 60k ticks/s. Only the places of the copies are looked at.
    from alpha_panda.adapters.memory_log import MemoryLog
    from alpha_panda.stream import batch, records

    looked: list[int] = []
    real = records.not_for

    def counting(headers: Any, service: str) -> bool:
        looked.append(1)
        return real(headers, service)

    for module in (batch, records):
        if hasattr(module, "not_for"):
            monkeypatch.setattr(module, "not_for", counting)
    src, out = f"in-{uuid.uuid4().hex}", "out"

    async def main() -> None:
        log = MemoryLog()
        await log.ensure_topics([spec(src, 1), spec(out, 1), spec(dlq_topic(src), 1)])
        copy = tick_output(src, 1)
        await log.append([tick_output(src, 0), Output(
            copy.topic, copy.key, copy.value, (*copy.headers, (REPLAY_FOR, b"risk")))])
        await log.append([tick_output(src, n) for n in range(2, 2002)])
        proc = StreamProcessor(log, name="engine", group="engine", topics=[src],
                               handler=Echo(out))
        await run_until(proc, lambda: proc.stats.processed == 2001)
        assert proc.stats.duplicates == 1  # the copy, for risk
        await log.close()

    asyncio.run(main())
    assert len(looked) <= 2, len(looked)


async def _fixed_then_replayed(path: Path) -> tuple[list[str], list[str], list[str]]:
    """A tick dead-lettered (ValidationError); the cause fixed and the service restarted
    (rebuilding its state from the log); then `dlq replay`, from a process of its own.
    What the restarted handler took in after its rebuild, after the replay, and what a
    second restart rebuilds."""
    log = SqliteLog(path)
    await log.ensure_topics([spec("in", 1), spec("out", 1), spec(dlq_topic("in"), 1)])
    await log.append([tick_output("in", 1), tick_output("in", 2, price=99_000),
                      tick_output("in", 3)])
    failing = Echo("out", lambda e: ValidationError("price band")
                   if e.data.last_price == 99_000 else None)
    first = StreamProcessor(log, name="echo", group="g", topics=["in"], handler=failing,
                            rebuild=True)
    await run_until(first, lambda: first.stats.processed == 2
                    and first.stats.dead_lettered == 1)
    await log.close()

    log = SqliteLog(path)
    fixed = Echo("out")
    restarted = StreamProcessor(log, name="echo", group="g", topics=["in"], handler=fixed,
                                rebuild=True)
    stop = asyncio.Event()
    task = asyncio.create_task(restarted.run(stop))
    deadline = time.monotonic() + 10
    while restarted.health().lag != 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    after_rebuild = list(fixed.seen)
    tool = SqliteLog(path)
    try:
        assert len((await tools.replay(tool, "in")).replayed) == 1
    finally:
        await tool.close()
    deadline = time.monotonic() + 10
    while restarted.stats.processed < 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    stop.set()
    await task
    await log.close()

    log = SqliteLog(path)
    again = Echo("out")
    third = StreamProcessor(log, name="echo", group="g", topics=["in"], handler=again,
                            rebuild=True)
    await run_until(third, lambda: third.health().lag == 0)
    await log.close()
    return after_rebuild, fixed.seen, again.seen


def test_a_restart_does_not_rebuild_what_the_service_dead_lettered(tmp_path: Path) -> None:
    """The rebuild at start replays the log as the service handled it live: a record it
    dead-lettered is set aside, also once its cause is fixed, for `dlq replay` puts it
    back and the copy is handled then (taken in by the rebuild too, a fill or a signal
    was counted twice until the next restart, whose state differed again)."""
    after_rebuild, after_replay, next_start = asyncio.run(
        _fixed_then_replayed(tmp_path / "log.sqlite"))
    assert after_rebuild == ["tick-1-1", "tick-1-3"]
    assert after_replay == ["tick-1-1", "tick-1-3", "tick-1-2"]
    assert next_start == after_replay
    values = asyncio.run(_values(tmp_path / "log.sqlite", "out"))
    assert len(values) == 3  # one output each, the copy's included


async def _replayed_while_stopped(path: Path) -> list[str]:
    log = SqliteLog(path)
    await log.ensure_topics([spec("in", 1), spec("out", 1), spec(dlq_topic("in"), 1)])
    await log.append([tick_output("in", 1), tick_output("in", 2, price=99_000)])
    failing = Echo("out", lambda e: ValidationError("price band")
                   if e.data.last_price == 99_000 else None)
    first = StreamProcessor(log, name="echo", group="g", topics=["in"], handler=failing,
                            rebuild=True)
    await run_until(first, lambda: first.stats.processed == 1
                    and first.stats.dead_lettered == 1)
    assert len((await tools.replay(log, "in")).replayed) == 1  # the service is stopped
    await log.close()
    log = SqliteLog(path)
    fixed = Echo("out")
    restarted = StreamProcessor(log, name="echo", group="g", topics=["in"], handler=fixed,
                                rebuild=True)
    await run_until(restarted, lambda: restarted.stats.processed == 1)
    await log.close()
    return fixed.seen


def test_a_copy_replayed_while_the_service_was_stopped_is_taken_in_once(
        tmp_path: Path) -> None:
    assert asyncio.run(_replayed_while_stopped(tmp_path / "log.sqlite")) == [
        "tick-1-1", "tick-1-2"]
    assert len(asyncio.run(_values(tmp_path / "log.sqlite", "out"))) == 2
