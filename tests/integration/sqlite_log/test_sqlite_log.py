"""SqliteLog on a real file: crash safety under SIGKILL, bounded dedup journal, reopen."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.stream.log import Output, TopicPartition
from alpha_panda.stream.topics import KeyKind, TopicSpec, partition_for
from tests.contract.helpers import drain, raw, spec

N = 100_000
DAY_MS = 86_400_000

# A child process that consumes "in" and, per record, commits one output to "out" together
# with the offset: it is killed at a random moment, possibly inside a transaction.
_CHILD = """
import asyncio, sys
from pathlib import Path
from alpha_panda.adapters.sqlite_log import SqliteLog
from alpha_panda.stream.log import Output

async def main():
    log = SqliteLog(Path(sys.argv[1]))
    c = log.consumer("g", ["in"])
    print("ready", flush=True)
    while True:
        recs = await c.poll(50, 0.05)
        if recs:
            outs = [Output("out", r.key, b"done:" + r.value, (("id", b"o" + r.value),))
                    for r in recs]
            await c.commit(outs, {r.tp: r.offset + 1 for r in recs}, [r.value.decode() for r in recs])

asyncio.run(main())
"""


async def _committed_beyond(path: Path, done: int, deadline: float) -> None:
    """Until group ``g`` has committed more than ``done`` records of "in" in ``path``."""
    while True:
        with contextlib.closing(sqlite3.connect(path)) as db:
            (now,) = db.execute("SELECT COALESCE(SUM(off), 0) FROM offsets WHERE grp = 'g'"
                                ).fetchone()
        if now > done:
            return
        assert time.monotonic() < deadline, f"no commit beyond {done} records"
        await asyncio.sleep(0.005)


async def test_sigkill_never_splits_outputs_from_offsets(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = SqliteLog(path)
    await log.ensure_topics([spec("in", 3), spec("out", 3)])
    await log.append([raw("in", str(i % 11).encode(), str(i).encode()) for i in range(N)])
    await log.close()
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    progress = [0]
    for delay in (0.0, 0.03, 0.07):
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", _CHILD, str(path),
                                                     env=env, stdout=subprocess.PIPE)
        assert child.stdout is not None and (await child.stdout.readline()).strip() == b"ready"
        # Killed once it has committed more than before, then a little later: mid-stream
        # however fast the machine (a fixed 0.1 s after "ready" killed it before its first
        # commit on a slower one).
        await _committed_beyond(path, progress[-1], deadline=time.monotonic() + 60)
        await asyncio.sleep(delay)
        child.send_signal(signal.SIGKILL)
        await child.wait()

        log = SqliteLog(path)
        committed = await log.committed_offsets("g", "in")
        ends = await log.end_offsets("out")
        assert sum(committed.values()) == sum(ends.values())  # outputs == inputs consumed
        progress.append(sum(committed.values()))
        await log.close()
    assert 0 < progress[1] < progress[2] < progress[3] < N  # the kills landed mid-stream

    # A final clean run finishes the job with no duplicates and nothing lost.
    log = SqliteLog(path)
    c = log.consumer("g", ["in"])
    rest = await drain(c, N - sum((await log.committed_offsets("g", "in")).values()))
    await c.commit([Output("out", r.key, b"done:" + r.value) for r in rest],
                   {r.tp: r.offset + 1 for r in rest})
    values = []
    for p in range(3):
        for r in await log.read(TopicPartition("out", p), 0, N):
            values.append(int(r.value.removeprefix(b"done:")))
    assert sorted(values) == list(range(N))
    await log.close()


async def test_processed_ids_are_pruned_but_recent_ones_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = SqliteLog(path, processed_capacity=1000)
    await log.ensure_topics([spec("in", 1)])
    c = log.consumer("g", ["in"])
    await c.poll(1, 0.01)
    tp = TopicPartition("in", 0)
    for batch in range(20):
        await c.commit([], {tp: 0}, [f"id-{batch}-{i}" for i in range(500)])
    await log.close()

    db = sqlite3.connect(path)
    stored = db.execute("SELECT sum(n) FROM processed WHERE grp = 'g'").fetchone()[0]
    db.close()
    assert 2000 <= stored <= 3000  # bounded: 2 x capacity, plus one batch of slack

    log = SqliteLog(path, processed_capacity=1000)
    c = log.consumer("g", ["in"])
    assert await c.seen(["id-19-499", "id-18-0", "id-0-0"]) == {"id-19-499", "id-18-0"}
    await log.close()


async def test_reopen_continues_offsets_and_keeps_headers(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = SqliteLog(path)
    await log.ensure_topics([spec("t", 2)])
    pa = partition_for(b"a", 2)
    await log.append([raw("t", b"a", b"1", "x1"), Output("t", None, b"2", partition=1 - pa)])
    await log.close()
    log = SqliteLog(path)
    assert await log.list_topics() == {"t": 2}
    await log.append([raw("t", b"a", b"3", "x3")])
    recs = await log.read(TopicPartition("t", pa), 0, 10)
    assert [(r.offset, r.value, r.header("id")) for r in recs] == [
        (0, b"1", b"x1"), (1, b"3", b"x3")]
    assert await log.end_offsets("t") == {pa: 2, 1 - pa: 1}
    await log.close()


async def test_two_processes_can_append_to_one_file(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)  # `alpha-panda run`
    await main.ensure_topics([spec("t", 1)])
    c = main.consumer("g", ["t"])
    await main.append([raw("t", b"k", b"from-main-1")])
    assert [r.value for r in await drain(c, 1)] == [b"from-main-1"]

    tool = SqliteLog(path)  # `alpha-panda dlq replay` in another process
    await tool.append([raw("t", b"k", b"from-tool")])
    await tool.close()

    await main.append([raw("t", b"k", b"from-main-2")])  # no offset collision
    got = await drain(c, 2)
    assert [(r.offset, r.value) for r in got] == [(1, b"from-tool"), (2, b"from-main-2")]
    await main.close()


async def test_a_consumer_notices_records_another_process_appended(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)
    await main.ensure_topics([spec("t", 1)])
    c = main.consumer("g", ["t"])
    await c.poll(1, 0.01)
    tool = SqliteLog(path)
    await tool.append([raw("t", b"k", b"replayed")])
    await tool.close()
    assert [r.value for r in await drain(c, 1, timeout=2)] == [b"replayed"]
    await main.close()


async def test_records_past_retention_are_deleted(tmp_path: Path) -> None:
    log = SqliteLog(tmp_path / "log.sqlite")
    await log.ensure_topics([TopicSpec("short", 2, KeyKind.INSTRUMENT, 50, None),
                             spec("forever", 1)])
    await log.append([raw("short", str(i).encode(), b"old") for i in range(100)])
    await log.append([Output("forever", None, b"x")])
    await asyncio.sleep(0.1)
    await log.append([Output("short", b"k", b"new", partition=0)])
    ends = await log.end_offsets("short")
    deleted = log.expire()
    left = await log.read(TopicPartition("short", 0), 0, 500)
    assert [r.value for r in left] == [b"new"]
    assert left[0].offset > 0  # offsets are never reused
    # partition 1's old records are its last segment: kept (as Kafka keeps its active
    # segment), so its end survives a reopen
    kept = await log.read(TopicPartition("short", 1), 0, 500)
    assert deleted == 100 - len(kept) and kept and {r.value for r in kept} == {b"old"}
    assert len(await log.read(TopicPartition("forever", 0), 0, 10)) == 1
    await log.close()
    log = SqliteLog(tmp_path / "log.sqlite")
    assert await log.end_offsets("short") == ends
    await log.close()


async def test_a_write_bigger_than_an_expiry_step_expires_and_so_does_what_follows(
        tmp_path: Path) -> None:
    # One write of more records to a partition than an expiry step deletes (5,000: a batch
    # of RUNTIME__BATCH_SIZE ticks of one instrument, its signals) was never deleted, and
    # every segment after it in that partition stayed too: the file only grew.
    log = SqliteLog(tmp_path / "log.sqlite")
    await log.ensure_topics([TopicSpec("short", 1, KeyKind.INSTRUMENT, 50, None)])
    await log.append([Output("short", b"k", b"big") for _ in range(6000)])
    await log.append([Output("short", b"k", b"small") for _ in range(10)])
    await asyncio.sleep(0.1)
    await log.append([Output("short", b"k", b"new")])
    deleted = [log.expire(5000) for _ in range(3)]
    assert sum(deleted) == 6010
    left = await log.read(TopicPartition("short", 0), 0, 10_000)
    assert [(r.offset, r.value) for r in left] == [(6010, b"new")]
    await log.close()


async def test_a_partition_whose_records_all_expired_keeps_its_end_across_a_reopen(
        tmp_path: Path) -> None:
    # every record old, then a restart: the end went back to 0, so new records took offsets
    # a consumer group had committed past, and it skipped them (a kill switch, a signal)
    path = tmp_path / "log.sqlite"
    log = SqliteLog(path)
    await log.ensure_topics([TopicSpec("quiet", 1, KeyKind.INSTRUMENT, 50, None)])
    for batch in range(3):
        await log.append([raw("quiet", b"k", f"{batch}".encode())])
    c = log.consumer("g", ["quiet"])
    assert len(await drain(c, 3, timeout=2)) == 3
    await c.commit([], {TopicPartition("quiet", 0): 3})
    await log.close()
    await asyncio.sleep(0.1)
    log = SqliteLog(path)
    assert log.expire() == 2  # the older segments; the last one stays
    await log.close()
    log = SqliteLog(path)
    assert await log.end_offsets("quiet") == {0: 3}
    await log.append([raw("quiet", b"k", b"after")])
    c = log.consumer("g", ["quiet"])
    assert [(r.offset, r.value) for r in await drain(c, 1, timeout=2)] == [(3, b"after")]
    await log.close()


async def test_reads_from_the_file_start_mid_segment_and_cross_segments(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = SqliteLog(path)
    await log.ensure_topics([spec("t", 1)])
    for batch in range(3):  # three appends: three segments of 10 records
        await log.append([raw("t", b"k", f"{batch}-{i}".encode(), f"id-{batch}-{i}")
                          for i in range(10)])
    await log.close()
    log = SqliteLog(path, tail_records=0)  # nothing in memory: every read is a query
    tp = TopicPartition("t", 0)
    recs = await log.read(tp, 7, 8)
    assert [(r.offset, r.value, r.header("id")) for r in recs] == [
        (o, f"{o // 10}-{o % 10}".encode(), f"id-{o // 10}-{o % 10}".encode())
        for o in range(7, 15)]
    assert [r.offset for r in await log.read(tp, 25, 100)] == list(range(25, 30))
    assert await log.read(tp, 30, 10) == []
    await log.close()


async def test_a_log_of_the_one_record_per_row_layout_is_migrated(tmp_path: Path) -> None:
    import msgspec

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE topics(name TEXT PRIMARY KEY, id INTEGER NOT NULL UNIQUE,
                            partitions INTEGER NOT NULL);
        CREATE TABLE records(pos INTEGER PRIMARY KEY, ts INTEGER NOT NULL, key BLOB,
                             value BLOB NOT NULL, headers BLOB);
        CREATE TABLE offsets(grp TEXT NOT NULL, tp INTEGER NOT NULL, off INTEGER NOT NULL,
                             PRIMARY KEY(grp, tp)) WITHOUT ROWID;
        CREATE TABLE processed(seq INTEGER PRIMARY KEY, grp TEXT NOT NULL,
                               n INTEGER NOT NULL, ids TEXT NOT NULL);
    """)
    db.execute("INSERT INTO topics VALUES ('t', 1, 2)")
    headers = msgspec.msgpack.encode((("id", b"x"),))
    code = 1 * 1024 + 1  # topic 1, partition 1
    for off in range(5):
        db.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?)",
                   ((code << 40) | off, 1000 + off // 3, b"k", f"v{off}".encode(),
                    headers if off % 2 else None))
    db.execute("INSERT INTO offsets VALUES ('g', ?, 3)", (code,))
    db.commit()
    db.close()

    log = SqliteLog(path)
    tp = TopicPartition("t", 1)
    recs = await log.read(tp, 0, 10)
    assert [(r.offset, r.value, r.headers, r.timestamp_ms) for r in recs] == [
        (off, f"v{off}".encode(), (("id", b"x"),) if off % 2 else (), 1000 + off // 3)
        for off in range(5)]
    assert await log.end_offsets("t") == {0: 0, 1: 5}
    assert await log.committed_offsets("g", "t") == {1: 3}
    await log.append([Output("t", b"k", b"new", partition=1)])
    assert [r.offset for r in await log.read(tp, 5, 10)] == [5]
    await log.close()
    tables = {r[0] for r in sqlite3.connect(path).execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "records" not in tables and "segments" in tables


async def test_big_segments_are_stored_compressed_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    log = SqliteLog(path)
    await log.ensure_topics([spec("t", 1)])
    values = [b'{"price": %d, "padding": "%s"}' % (i, b"x" * 50) for i in range(200)]
    await log.append([raw("t", b"k", v, f"id-{i}") for i, v in enumerate(values)])
    await log.append([raw("t", b"k", b"small", "id-small")])
    await log.close()
    db = sqlite3.connect(path)
    blobs = [bytes(r[0]) for r in db.execute("SELECT data FROM segments ORDER BY pos")]
    db.close()
    assert blobs[0][:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    assert len(blobs[0]) < sum(map(len, values)) / 5
    assert blobs[1][:4] != b"\x28\xb5\x2f\xfd"  # under 1 KiB: as it is
    log = SqliteLog(path, tail_records=0)
    recs = await log.read(TopicPartition("t", 0), 0, 500)
    assert [r.value for r in recs] == [*values, b"small"]
    assert [r.header("id") for r in recs[:2]] == [b"id-0", b"id-1"]
    await log.close()


async def test_the_periodic_expiry_lets_the_in_memory_tails_forget_old_records(
        tmp_path: Path) -> None:
    """A partition nobody appends to any more keeps no records in memory for long; reads
    of them go to the file and give the same records."""
    import time

    path = tmp_path / "log.sqlite"
    log = SqliteLog(path)
    await log.ensure_topics([spec("t", 1)])
    await log.append([raw("t", b"k", str(i).encode(), f"id-{i}") for i in range(10)])
    storage = log._storage
    assert len(storage._tail) == 10  # type: ignore[attr-defined]
    storage.expire(int(time.time() * 1000))
    assert len(storage._tail) == 10  # type: ignore[attr-defined]  # still young
    storage.expire(int(time.time() * 1000) + 31_000)
    assert len(storage._tail) == 0  # type: ignore[attr-defined]
    recs = await log.read(TopicPartition("t", 0), 0, 100)
    assert [r.value for r in recs] == [str(i).encode() for i in range(10)]
    await log.close()


async def test_another_process_writing_leaves_the_records_in_memory_as_they_are(
        tmp_path: Path) -> None:
    """Services split between processes: a write of the other process used to drop every
    record this one kept in memory, its own included, so each of its groups read them
    from the file and decoded them again."""
    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)
    await main.ensure_topics([spec("t", 2)])
    here = partition_for(b"k", 2)
    there = next(k for k in (b"a", b"b", b"c", b"d") if partition_for(k, 2) != here)
    await main.append([raw("t", b"k", f"m{i}".encode(), f"m{i}") for i in range(3)])
    before = await main.read(TopicPartition("t", here), 0, 10)
    other = SqliteLog(path)  # a process of other services
    await other.append([raw("t", there, b"o0", "o0")])  # the other partition
    await main.append([raw("t", b"k", b"m3", "m3")])  # its transaction sees the other's write
    after = await main.read(TopicPartition("t", here), 0, 10)
    assert [r.value for r in after] == [b"m0", b"m1", b"m2", b"m3"]
    assert all(a is b for a, b in zip(before, after[:3], strict=True))  # not read again
    # one partition, both processes: the tail restarts past the other's record
    await other.append([raw("t", b"k", b"o1", "o1")])
    await main.append([raw("t", b"k", b"m4", "m4")])
    got = await main.read(TopicPartition("t", here), 0, 10)
    assert [(r.offset, r.value) for r in got] == [
        (0, b"m0"), (1, b"m1"), (2, b"m2"), (3, b"m3"), (4, b"o1"), (5, b"m4")]
    assert [r.value for r in await main.read(TopicPartition("t", 1 - here), 0, 10)] == [b"o0"]
    await other.close()
    await main.close()


async def test_records_of_another_process_are_read_from_the_file_once_per_process(
        tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)
    await main.ensure_topics([spec("t", 1)])
    engine, portfolio = main.consumer("engine", ["t"]), main.consumer("portfolio", ["t"])
    await engine.poll(1, 0.01)
    await portfolio.poll(1, 0.01)
    feed = SqliteLog(path)  # the feed, in the other process
    await feed.append([raw("t", b"k", str(i).encode(), f"id-{i}") for i in range(5)])
    a, b = await drain(engine, 5), await drain(portfolio, 5)
    assert [r.value for r in a] == [str(i).encode() for i in range(5)]
    assert all(x is y for x, y in zip(a, b, strict=True))  # one read, one decode, for both

    # Groups behind the end (the other process appends faster than they read): the one
    # ahead keeps what it reads; the one behind reads the file up to there, then the same
    # records. (Only reads that reached the end were kept: both decoded every record.)
    await feed.append([raw("t", b"k", str(i).encode(), f"id-{i}") for i in range(5, 105)])
    late = SqliteLog(path)  # (restarted: nothing in memory)
    tp = TopicPartition("t", 0)
    ahead = await late.read(tp, 50, 10) + await late.read(tp, 60, 10)
    assert [r.offset for r in ahead] == list(range(50, 70))
    behind = await late.read(tp, 0, 100)
    assert [r.offset for r in behind] == list(range(100))
    assert all(x is y for x, y in zip(behind[50:70], ahead, strict=True))
    # the rest of the segment the first read decoded was kept too, not decoded again
    assert (await late.read(tp, 70, 10))[0] is behind[70]
    for log in (late, feed, main):
        await log.close()


async def test_a_waiting_poll_gets_another_process_records_without_waiting_it_out(
        tmp_path: Path) -> None:
    """Only this process's own appends wake a waiting poll; another process's were seen
    when its timeout ran out, up to 50 ms per hop between two processes of services (the
    pipeline ran 76k-94k ticks/s split in two, 96k-100k with this)."""
    import time

    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)
    await main.ensure_topics([spec("t", 1)])
    c = main.consumer("g", ["t"])
    other = SqliteLog(path)
    await other.append([raw("t", b"k", b"first", "first")])
    assert [r.value for r in await drain(c, 1, timeout=2)] == [b"first"]  # another writes

    async def later() -> None:
        await asyncio.sleep(0.2)
        await other.append([raw("t", b"k", b"second", "second")])

    writer = asyncio.create_task(later())
    started = time.monotonic()
    got = await c.poll(10, 5.0)
    waited = time.monotonic() - started
    await writer
    assert [r.value for r in got] == [b"second"]
    assert waited < 2.0, waited  # not the poll's 5 s
    await other.close()
    await main.close()


async def test_a_write_that_fails_after_seeing_another_process_write_loses_nothing(
        tmp_path: Path) -> None:
    """A write re-reads the layout as it begins (another process wrote) and then fails
    (here: the disk is full): the ends were put back, but not the file's version seen, so
    the other process's records stayed unseen and the next append here took their offset
    (UNIQUE constraint failed) until that process wrote again."""
    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)
    await main.ensure_topics([spec("t", 1), spec("u", 1)])
    await main.append([raw("t", b"k", b"m0", "m0")])
    other = SqliteLog(path)
    await other.append([raw("t", b"k", b"o1", "o1")])  # offset 1, by the other process
    db = main._storage._db  # type: ignore[attr-defined]
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")  # the disk is full
    with pytest.raises(sqlite3.OperationalError):
        await main.append([raw("u", b"k", os.urandom(200_000), "big")])
    db.execute("PRAGMA max_page_count=1073741823")  # space again
    tp = TopicPartition("t", 0)
    assert (await main.end_offsets("t"))[0] == 2  # the other's record, seen
    await main.append([raw("t", b"k", b"m2", "m2")])
    assert [r.value for r in await main.read(tp, 0, 10)] == [b"m0", b"o1", b"m2"]
    await other.close()
    await main.close()


async def test_another_process_expiry_is_not_served_from_the_kept_tail(tmp_path: Path) -> None:
    """Records past retention that this process holds in memory (here its own, appended
    with an old time) and another process's expiry deleted are not served from memory."""
    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)
    await main.ensure_topics([TopicSpec("t", 1, KeyKind.INSTRUMENT, DAY_MS, None)])
    storage = main._storage  # type: ignore[attr-defined]
    now = int(time.time() * 1000)
    await storage.append([("t", 0, raw("t", b"k", b"old", "old"))], now - 3 * DAY_MS)
    await storage.append([("t", 0, raw("t", b"k", b"new", "new"))], now)
    other = SqliteLog(path)
    assert other.expire() == 1  # the other process's periodic expiry
    assert storage.refresh()  # this process notices the other's write
    tp = TopicPartition("t", 0)
    got = await main.read(tp, 0, 10)
    assert [r.value for r in got] == [b"new"]
    await other.close()
    await main.close()


async def test_read_through_extend_of_an_idle_partition_keeps_expired_records(
        tmp_path: Path) -> None:
    """A reader that reaches the end of an idle partition does not keep its days-old
    records in memory, so another process's expiry of them is seen."""
    path = tmp_path / "log.sqlite"
    writer = SqliteLog(path)
    await writer.ensure_topics([TopicSpec("t", 1, KeyKind.INSTRUMENT, DAY_MS, None)])
    now = int(time.time() * 1000)
    w = writer._storage  # type: ignore[attr-defined]
    await w.append([("t", 0, raw("t", b"k", b"old", "old"))], now - 3 * DAY_MS)
    await w.append([("t", 0, raw("t", b"k", b"last", "last"))], now - 2 * DAY_MS)
    await writer.close()
    main = SqliteLog(path)
    tp = TopicPartition("t", 0)
    assert [r.value for r in await main.read(tp, 0, 10)] == [b"old", b"last"]
    other = SqliteLog(path)
    assert other.expire() == 1
    main._storage.refresh()  # type: ignore[attr-defined]
    assert [r.value for r in await main.read(tp, 0, 10)] == [b"last"]
    await other.close()
    await main.close()


async def test_another_process_only_opening_the_log_is_no_write(tmp_path: Path) -> None:
    """Opening the log wrote its layout version each time: every process on the file took
    that as a write (``alpha-panda dlq list`` put a running system into 5 ms polling)."""
    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)
    await main.ensure_topics([spec("t", 1)])
    await main.append([raw("t", b"k", b"a", "a")])
    other = SqliteLog(path)
    await other.close()
    assert not main._storage.refresh()  # type: ignore[attr-defined]
    await main.close()


async def test_a_write_that_sees_another_process_wakes_this_one(tmp_path: Path) -> None:
    """Another process's records noticed by this process's own write (it re-reads the
    file's layout as it begins) wake the consumers waiting for them, as ``refresh`` does."""
    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)
    await main.ensure_topics([spec("theirs", 1), spec("mine", 1)])
    waiting = main.consumer("g", ["theirs"])
    await waiting.poll(1, 0.01)
    started = time.monotonic()
    poll = asyncio.create_task(waiting.poll(10, 5.0))
    await asyncio.sleep(0.1)  # it waits
    other = SqliteLog(path)
    await other.append([raw("theirs", b"k", b"x", "x")])
    await main.append([raw("mine", b"k", b"m", "m")])  # sees the other's write as it begins
    assert [r.value for r in await poll] == [b"x"]
    assert time.monotonic() - started < 1.0  # not the poll's 5 s
    await other.close()
    await main.close()


async def test_a_write_waits_for_another_process_write_transaction(tmp_path: Path) -> None:
    """An append while another connection holds the write lock waits for it (looking
    again every few tens of microseconds, not SQLite's 1, 2, 5... ms sleeps), then lands;
    the connection's busy timeout, off for that wait, is back for every other statement."""
    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)
    await main.ensure_topics([spec("t", 1)])
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = asyncio.get_running_loop().run_in_executor(
        None, lambda: (time.sleep(0.2), other.execute("COMMIT")))
    started = time.monotonic()
    await main.append([raw("t", b"k", b"a", "a")])
    assert time.monotonic() - started >= 0.19  # it waited for the other's COMMIT
    await released
    assert [r.value for r in await main.read(TopicPartition("t", 0), 0, 10)] == [b"a"]
    db = main._storage._db  # type: ignore[attr-defined]
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    other.close()
    await main.close()


def test_a_write_lock_held_too_long_fails_the_write_with_sqlite_own_error(
        tmp_path: Path) -> None:
    from alpha_panda.adapters.sqlite_log.schema import _lock

    path = tmp_path / "log.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=10000")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _lock(db, wait_s=0.05)
    assert 0.05 <= time.monotonic() - started < 1.0
    assert not db.in_transaction
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    other.execute("COMMIT")
    _lock(db)  # free again: taken at once
    assert db.in_transaction
    db.execute("COMMIT")
    other.close()
    db.close()


async def test_a_poll_waiting_before_any_other_process_wrote_gets_its_first_records(
        tmp_path: Path) -> None:
    """The first records another process appends reach a poll that was waiting already
    (here with a 5 s timeout), before its timeout: the log looks for them every 20 ms
    while a poll waits. (A poll looked only when its own timeout ran out, until another
    process's write had been seen.) Several waiting polls share that one look: only the
    consumers of the topic that moved are woken."""
    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)
    await main.ensure_topics([spec("t", 1), spec("quiet", 1)])
    c = main.consumer("g", ["t"])
    idle = main.consumer("idle", ["quiet"])
    other = SqliteLog(path)

    async def later() -> None:
        await asyncio.sleep(0.2)
        await other.append([raw("t", b"k", b"first", "first")])

    writer = asyncio.create_task(later())
    quiet = asyncio.create_task(idle.poll(10, 1.5))
    started = time.monotonic()
    got = await c.poll(10, 5.0)
    waited = time.monotonic() - started
    await writer
    assert [r.value for r in got] == [b"first"]
    assert waited < 1.0, waited  # neither the poll's 5 s nor the other poll's 1.5 s
    assert await quiet == []  # its topic did not move: it waited its time out
    await other.close()
    await main.close()


async def test_records_another_process_appended_before_this_one_expired_wake_a_waiting_poll(
        tmp_path: Path) -> None:
    """This process's own write (here its periodic expiry) finds another process's records
    as it begins, and the waiting poll of their topic is woken by the log's next look.
    (The look found the file unchanged since that write, and woke nobody: the poll waited
    out its timeout.)"""
    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)
    await main.ensure_topics([spec("t", 1)])
    c = main.consumer("g", ["t"])
    other = SqliteLog(path)
    await other.append([raw("t", b"k", b"first", "first")])
    assert [r.value for r in await drain(c, 1, timeout=2)] == [b"first"]  # (shared mode)
    poll = asyncio.create_task(c.poll(10, 3.0))
    await asyncio.sleep(0.05)  # it waits
    started = time.monotonic()
    await other.append([raw("t", b"k", b"second", "second")])
    main.expire()  # a write of this process: it sees the other's append first
    assert [r.value for r in await poll] == [b"second"]
    assert time.monotonic() - started < 1.0  # not the poll's 3 s
    await other.close()
    await main.close()


_OPEN = """
import sys, time
from pathlib import Path
from alpha_panda.adapters.sqlite_cache import SqliteCache
from alpha_panda.adapters.sqlite_log.storage import SqliteStorage
root = Path(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # all of them at once
SqliteCache(root / "readmodel.sqlite")
SqliteStorage(root / "log.sqlite").close()
"""


def test_processes_opening_a_new_log_and_cache_together_all_open_them(tmp_path: Path) -> None:
    """``PRAGMA journal_mode=WAL`` answers "database is locked" at once while another
    connection makes the new file WAL: two ``service`` processes started together on an
    empty data directory failed to start in 7 of 20 trials (the cache file, 3 of 20)."""
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN, str(tmp_path / str(trial))],
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for trial in range(8) for _ in range(3)]
    for trial in range(8):
        (tmp_path / str(trial)).mkdir()
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    for p in procs:  # go: three processes on each new directory
        assert p.stdin is not None
        p.stdin.write("\n")
        p.stdin.flush()
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err[-2000:]


def test_a_log_used_again_under_another_event_loop_still_looks_for_other_processes(
        tmp_path: Path) -> None:
    """A poll left waiting when its event loop ended (cancelled with it) kept the log's
    look scheduled on that loop, where it never fired: under the next loop a waiting poll
    got another process's records only when its own timeout ran out."""
    path = tmp_path / "log.sqlite"
    main = SqliteLog(path)
    other = SqliteLog(path)

    async def first() -> None:
        await main.ensure_topics([spec("t", 1)])
        c = main.consumer("g", ["t"])
        waiting = asyncio.create_task(c.poll(10, 30.0))
        await asyncio.sleep(0.05)  # it waits as the loop ends
        waiting.cancel()

    async def second() -> float:
        c = main.consumer("h", ["t"])
        await c.poll(10, 0.01)
        poll = asyncio.create_task(c.poll(10, 3.0))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await other.append([raw("t", b"k", b"x", "x")])
        assert [r.value for r in await poll] == [b"x"]
        return time.monotonic() - started

    asyncio.run(first())
    assert asyncio.run(second()) < 1.0  # not the poll's 3 s
    asyncio.run(other.close())
    asyncio.run(main.close())


def test_a_topic_another_process_creates_as_this_one_opens_the_log_is_seen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The layout read as a storage opens, then where the file's changes stand: another
    process's topic created between the two was taken for known, and this one's next topic
    took its id ("UNIQUE constraint failed: topics.id": a ``service`` process started
    beside another on a new data directory exited with it)."""
    from alpha_panda.adapters.sqlite_log import storage as storage_mod

    path = tmp_path / "log.sqlite"
    other = storage_mod.SqliteStorage(path)
    other.create_topic("a", 1)
    read_layout = storage_mod._read_layout

    def then_the_other_writes(db: sqlite3.Connection) -> object:
        layout = read_layout(db)
        monkeypatch.setattr(storage_mod, "_read_layout", read_layout)  # once
        other.create_topic("b", 1)  # (its own connection: another process's, to SQLite)
        return layout

    monkeypatch.setattr(storage_mod, "_read_layout", then_the_other_writes)
    this = storage_mod.SqliteStorage(path)
    try:
        this.create_topic("c", 2)
        assert this.topics() == {"a": 1, "b": 1, "c": 2}
        other.refresh()
        assert other.topics() == this.topics()
    finally:
        this.close()
        other.close()
