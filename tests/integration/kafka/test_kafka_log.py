"""What the Kafka backend does beyond the shared contract: fencing, rebalance callbacks,
pause/resume, broker failures, per-service settings."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from confluent_kafka import Consumer as RdConsumer
from confluent_kafka import Producer

from alpha_panda.adapters.kafka import KafkaLog, KafkaSettings
from alpha_panda.adapters.kafka import consumer as kafka_consumer
from alpha_panda.adapters.kafka import log as kafka_log
from alpha_panda.domain.errors import BrokerUnavailable, InvariantViolation, RetryableError
from alpha_panda.stream.log import Consumer, Output, Record, TopicPartition
from alpha_panda.stream.topics import KeyKind, TopicSpec
from alpha_panda.testing.redis_server import free_port, redis_server
from alpha_panda.testing.tansu import TansuBroker, kafka_test_settings, tansu_broker

pytestmark = pytest.mark.integration
Names = Callable[[str], str]


def spec(name: str, partitions: int) -> TopicSpec:
    return TopicSpec(name, partitions, KeyKind.INSTRUMENT, 86_400_000, None)


async def drain(c: Consumer, n: int, timeout: float = 10.0) -> list[Record]:
    out: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out.extend(await c.poll(500, 0.1))
    return out


async def test_a_restarted_member_fences_its_zombie(settings: KafkaSettings,
                                                     names: Names) -> None:
    t, out, g = names("fence"), names("fence-out"), names("g")
    old, new = KafkaLog(settings), KafkaLog(settings)
    try:
        await old.ensure_topics([spec(t, 1), spec(out, 1)])
        await old.append([Output(t, b"k", b"1")])
        zombie = old.consumer(g, [t], member_id="risk-0")
        recs = await drain(zombie, 1)
        # The same member comes back (the old process hung, was presumed dead, restarted).
        successor = new.consumer(g, [t], member_id="risk-0")
        await successor.poll(10, 0.1)
        with pytest.raises(InvariantViolation, match="fenced"):
            await zombie.commit([Output(out, b"k", b"from-zombie")], {recs[0].tp: 1})
        assert await new.end_offsets(out) == {0: 0}
        # The zombie's producer holds the fatal "fenced" error: closing it must not raise
        # it (it did, raw, when librdkafka had latched it by the time of the flush).
        await zombie.close()
    finally:
        await old.close()
        await new.close()


async def test_revocation_lets_the_member_commit_before_the_partitions_move(
        kafka: KafkaLog, names: Names) -> None:
    t, g = names("revoke"), names("g")
    await kafka.ensure_topics([spec(t, 2)])
    await kafka.append([Output(t, f"k{i}".encode(), str(i).encode()) for i in range(40)])
    done: dict[TopicPartition, int] = {}
    revoked: list[TopicPartition] = []
    first: Consumer | None = None

    async def on_revoke(tps: Sequence[TopicPartition]) -> None:
        revoked.extend(tps)
        assert first is not None
        mine = {tp: off for tp, off in done.items() if tp in tps}
        await first.commit([], mine)  # commit-on-revoke: nothing is handled twice

    first = kafka.consumer(g, [t], on_revoke=on_revoke)
    recs = await drain(first, 40)
    for r in recs:
        done[r.tp] = r.offset + 1
    second = kafka.consumer(g, [t])
    deadline = time.monotonic() + 15
    while not second.assignment() and time.monotonic() < deadline:
        await first.poll(10, 0.05)
        await second.poll(10, 0.05)
    assert revoked, "joining member never triggered a revocation"
    assert await kafka.committed_offsets(g, t) == {tp.partition: o for tp, o in done.items()}
    assert await second.poll(100, 0.5) == []  # nothing redelivered
    await first.close()
    await second.close()


async def test_a_paused_partition_resumes_where_it_stopped(kafka: KafkaLog,
                                                           names: Names) -> None:
    t, g = names("pause"), names("g")
    await kafka.ensure_topics([spec(t, 1)])
    await kafka.append([Output(t, b"k", str(i).encode()) for i in range(5)])
    c = kafka.consumer(g, [t])
    assert [r.value for r in await drain(c, 2)][:2] == [b"0", b"1"]
    tp = TopicPartition(t, 0)
    await c.seek(tp, 2)
    c.pause([tp])  # type: ignore[attr-defined]
    await kafka.append([Output(t, b"k", b"5")])
    assert await c.poll(100, 0.5) == []
    c.resume([tp])  # type: ignore[attr-defined]
    assert [r.value for r in await drain(c, 4)] == [b"2", b"3", b"4", b"5"]
    await c.close()


async def test_end_offsets_of_an_idle_transactional_partition_are_exact(
        kafka: KafkaLog, names: Names, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit's outputs end with a transaction marker, which takes an offset: the end
    of the data is one below the high watermark. The answer must not depend on how fast
    the broker reports the partition's end: with no time at all to chase it (a loaded
    machine), the marker was counted as a record, and ``run --exit-at-end`` saw every
    group one record behind and waited (up to 40 s on Tansu) for two exact answers."""
    t, out, g = names("src"), names("out"), names("g")
    await kafka.ensure_topics([spec(t, 1), spec(out, 1)])
    await kafka.append([Output(t, b"k", b"1")])
    c = kafka.consumer(g, [t])
    recs = await drain(c, 1)
    await c.commit([Output(out, b"k", b"a"), Output(out, b"k", b"b")], {recs[0].tp: 1})
    monkeypatch.setattr(kafka_log, "_CHASE_S", 0.0)
    monkeypatch.setattr(kafka_log, "_SETTLE_S", 30.0)  # only the EOF may end the wait
    for _ in range(5):
        assert await kafka.end_offsets(out) == {0: 2}
    assert await kafka.committed_offsets(g, t) == {0: 1}
    assert await kafka.end_offsets(t) == {0: 1}
    await c.close()


async def test_a_partition_with_an_open_transaction_still_reads_its_committed_records(
        kafka: KafkaLog, settings: KafkaSettings, names: Names) -> None:
    """Tansu answers a read-committed ListOffsets with 0 while any transaction is open on
    the partition: the paper engine's are, most of the time. A restarted portfolio's
    rebuild then read a partition of 35 committed fills as empty and counted 791 of 826
    fills for the rest of the run (the SIGKILL test: 2 failures in 73 runs of its portfolio
    case with both cores busy). Committed records are read, and counted in the end,
    whatever is still open."""
    t = names("open-txn")
    await kafka.ensure_topics([spec(t, 1)])
    committed = Producer({"bootstrap.servers": settings.bootstrap_servers,
                          "transactional.id": names("committed")})
    committed.init_transactions(10)
    committed.begin_transaction()
    for i in range(5):
        committed.produce(t, key=b"k", value=str(i).encode(), partition=0)
    committed.commit_transaction(10)
    still_open = Producer({"bootstrap.servers": settings.bootstrap_servers,
                           "transactional.id": names("open")})
    still_open.init_transactions(10)
    still_open.begin_transaction()
    still_open.produce(t, key=b"k", value=b"open", partition=0)
    still_open.flush(10)
    try:
        assert (await kafka.end_offsets(t))[0] >= 5
        recs = await kafka.read(TopicPartition(t, 0), 0, 100)
        assert [r.value for r in recs][:5] == [b"0", b"1", b"2", b"3", b"4"]
    finally:
        still_open.abort_transaction(10)


async def test_an_unreachable_broker_is_reported_not_hung() -> None:
    settings = kafka_test_settings(f"127.0.0.1:{free_port()}", operation_timeout_s=1.0)
    log = KafkaLog(settings)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await log.start()
    assert time.monotonic() - started < 5
    await log.close()


def test_per_service_overrides_reach_librdkafka() -> None:
    s = KafkaSettings(services={"risk": {"fetch.wait.max.ms": 1}, "feed": {"linger.ms": 0}},
                      service="feed")
    assert s.consumer_config("risk")["fetch.wait.max.ms"] == 1
    assert s.consumer_config("portfolio")["fetch.wait.max.ms"] == s.fetch_wait_max_ms
    assert s.producer_config()["linger.ms"] == 0
    tx = s.producer_config("risk", transactional_id=s.transactional_id("risk", "risk-0"))
    assert tx["transactional.id"] == "alpha-panda.risk.risk-0"
    assert tx["acks"] == "all" and tx["enable.idempotence"] is True
    with pytest.raises(ValueError, match="heartbeat"):
        KafkaSettings(session_timeout_ms=1000, heartbeat_interval_ms=900)


class _PausesTheBrokerBeforeCommitting(Producer):
    """A transactional producer that stops the broker (SIGSTOP) just before one
    ``commit_transaction``, once everything else of the transaction has been sent: the
    commit itself is what a broker hiccup (a leader election, a long GC pause) cuts off."""

    broker_pid: int | None = None

    def commit_transaction(self, *args: object) -> None:
        pid, type(self).broker_pid = type(self).broker_pid, None
        if pid is not None:
            self.flush(10)
            os.kill(pid, signal.SIGSTOP)
        super().commit_transaction(*args)


async def test_a_commit_cut_off_by_a_broker_pause_is_settled_when_it_comes_back(
        names: Names, monkeypatch: pytest.MonkeyPatch) -> None:
    """librdkafka goes on with a ``commit_transaction`` that timed out, and refuses any
    other transactional call until it is called again: every retry of the runtime failed
    with "Conflicting commit_transaction API call is already in progress" until the
    processor gave up, although the first commit had gone through once the broker was
    back (its outputs and offsets visible while ``commit`` said nothing was)."""
    monkeypatch.setattr(kafka_consumer, "Producer", _PausesTheBrokerBeforeCommitting)
    t, out, g = names("paused"), names("paused-out"), names("g")
    with tansu_broker() as broker:
        assert broker.process is not None
        settings = kafka_test_settings(broker.bootstrap, operation_timeout_s=1.0,
                                       session_timeout_ms=6000, max_poll_interval_ms=6000)
        kafka = KafkaLog(settings)
        try:
            await kafka.ensure_topics([spec(t, 1), spec(out, 1)])
            await kafka.append([Output(t, b"k", b"1"), Output(t, b"k", b"2")])
            c = kafka.consumer(g, [t])
            recs = await drain(c, 2)
            tp = recs[0].tp
            _PausesTheBrokerBeforeCommitting.broker_pid = broker.process.pid
            try:
                with pytest.raises(RetryableError):
                    await c.commit([Output(out, b"k", b"a")], {tp: 1}, ["a"])
            finally:
                os.kill(broker.process.pid, signal.SIGCONT)
            # The runtime retries with the same arguments: the commit is settled, once.
            await c.commit([Output(out, b"k", b"a")], {tp: 1}, ["a"])
            assert await c.seen(["a"]) == {"a"}
            # ... and the producer takes new transactions again.
            await c.commit([Output(out, b"k", b"b")], {tp: 2}, ["b"])
            assert [r.value for r in await kafka.read(TopicPartition(out, 0), 0)] == [b"a", b"b"]
            assert await kafka.committed_offsets(g, t) == {0: 2}
            await c.close()
        finally:
            await kafka.close()


async def test_a_dedup_store_that_fails_after_the_commit_does_not_double_the_outputs(
        settings: KafkaSettings, names: Names) -> None:
    """Ids are marked after their transaction committed. When Redis did not answer then,
    ``commit`` raised a retryable error and the runtime's retry ran the transaction again:
    every output of the batch was written twice (a second validated signal, a second fill)."""
    t, out, g = names("unmarked"), names("unmarked-out"), names("g")
    with redis_server() as redis:
        pid = redis.pid()
        assert pid is not None
        kafka = KafkaLog(settings.model_copy(update={"dedup_redis_url": redis.url}))
        try:
            await kafka.ensure_topics([spec(t, 1), spec(out, 1)])
            await kafka.append([Output(t, b"k", b"1")])
            c = kafka.consumer(g, [t])
            tp = (await drain(c, 1))[0].tp
            os.kill(pid, signal.SIGSTOP)
            try:
                with pytest.raises(RetryableError):
                    await c.commit([Output(out, b"k", b"a")], {tp: 1}, ["a"])
            finally:
                os.kill(pid, signal.SIGCONT)
            await c.commit([Output(out, b"k", b"a")], {tp: 1}, ["a"])  # the runtime's retry
            assert await c.seen(["a"]) == {"a"}
            assert [r.value for r in await kafka.read(TopicPartition(out, 0), 0)] == [b"a"]
            await c.close()
        finally:
            await kafka.close()


async def test_a_member_expelled_from_its_group_gives_its_partitions_up_cleanly(
        broker: TansuBroker, names: Names) -> None:
    """A member that did not poll within ``max.poll.interval.ms`` (a long batch; a broker
    away for longer than the session) is expelled, and its commit fails ("Unknown
    member"). The revocation then asked librdkafka for the group metadata, which it no
    longer has: ``RuntimeError: Consumer group metadata not available`` escaped from the
    callback, the service's ``on_revoke`` never ran, and the poll or the close that served
    it raised (on close a ``SystemError`` from the client)."""
    settings = kafka_test_settings(broker.bootstrap, session_timeout_ms=2000,
                                   max_poll_interval_ms=2000)
    t, g = names("expelled"), names("g")
    kafka = KafkaLog(settings)
    revoked: list[TopicPartition] = []

    async def on_revoke(tps: Sequence[TopicPartition]) -> None:
        revoked.extend(tps)

    try:
        await kafka.ensure_topics([spec(t, 1)])
        await kafka.append([Output(t, b"k", b"1")])
        c = kafka.consumer(g, [t], on_revoke=on_revoke)
        tp = (await drain(c, 1))[0].tp
        # Another member joins while this one does not poll, past max.poll.interval.ms.
        other = kafka.consumer(g, [t])
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            await other.poll(10, 0.1)
        with pytest.raises(RetryableError):
            await c.commit([], {tp: 1})
        await c.close()
        assert revoked == [tp]
        await other.close()
    finally:
        await kafka.close()


class _PausesTheBrokerWhileAssigning(RdConsumer):
    """A group member whose first ``committed`` (asked while its partitions are being
    assigned) finds the broker stopped (SIGSTOP) for ``pause_s``."""

    broker_pid: int | None = None
    pause_s = 2.5

    def committed(self, *args: Any, **kwargs: Any) -> Any:
        pid, type(self).broker_pid = type(self).broker_pid, None
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)
            threading.Timer(self.pause_s, os.kill, (pid, signal.SIGCONT)).start()
        return super().committed(*args, **kwargs)


async def test_a_broker_that_stalls_during_an_assignment_delays_it_not_the_service(
        names: Names, monkeypatch: pytest.MonkeyPatch) -> None:
    """Offsets are read inside the assignment callback. When the broker did not answer in
    ``operation_timeout_s`` (a hiccup; on Kafka also a dead member's transaction still
    holding its offsets, up to ``transaction.timeout.ms``), the error escaped the callback
    and failed the poll, and the service with it."""
    monkeypatch.setattr(kafka_consumer, "RdConsumer", _PausesTheBrokerWhileAssigning)
    t, g = names("assign-stall"), names("g")
    with tansu_broker() as broker:
        assert broker.process is not None
        kafka = KafkaLog(kafka_test_settings(broker.bootstrap, operation_timeout_s=1.0,
                                             session_timeout_ms=6000,
                                             max_poll_interval_ms=20_000))
        try:
            await kafka.ensure_topics([spec(t, 1)])
            await kafka.append([Output(t, b"k", str(i).encode()) for i in range(3)])
            _PausesTheBrokerWhileAssigning.broker_pid = broker.process.pid
            c = kafka.consumer(g, [t])
            assert [r.value for r in await drain(c, 3, timeout=15)] == [b"0", b"1", b"2"]
            assert c.assignment() == {TopicPartition(t, 0)}
            await c.close()
        finally:
            await kafka.close()
