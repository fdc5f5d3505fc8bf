"""In-process consumer groups: cooperative rebalancing with on_assign/on_revoke callbacks."""

from __future__ import annotations

from collections.abc import Sequence

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.errors import InvariantViolation
from alpha_panda.stream.log import TopicPartition
from tests.contract.helpers import raw, settle, spec


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[TopicPartition]]] = []

    async def assign(self, tps: Sequence[TopicPartition]) -> None:
        self.events.append(("assign", list(tps)))

    async def revoke(self, tps: Sequence[TopicPartition]) -> None:
        self.events.append(("revoke", list(tps)))


async def test_callbacks_report_every_partition_move() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("t", 4)])
    ra, rb = Recorder(), Recorder()
    a = log.consumer("g", ["t"], on_assign=ra.assign, on_revoke=ra.revoke)
    await settle([a], 4)
    assert ra.events == [("assign", [TopicPartition("t", p) for p in range(4)])]
    b = log.consumer("g", ["t"], on_assign=rb.assign, on_revoke=rb.revoke)
    await settle([a, b], 4)
    revoked = {tp for kind, tps in ra.events if kind == "revoke" for tp in tps}
    assigned_b = {tp for kind, tps in rb.events if kind == "assign" for tp in tps}
    assert revoked == assigned_b == b.assignment()
    await b.close()
    assert rb.events[-1] == ("revoke", sorted(assigned_b))
    await settle([a], 4)


async def test_a_partition_is_never_owned_by_two_members() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("t", 3)])
    a = log.consumer("g", ["t"])
    await settle([a], 3)
    b = log.consumer("g", ["t"])
    # Before a polls again it still owns everything; b must not get a share yet.
    await b.poll(10, 0.01)
    assert b.assignment() == frozenset()
    await a.poll(10, 0.01)
    await b.poll(10, 0.01)
    assert a.assignment().isdisjoint(b.assignment()) and b.assignment()


async def test_members_on_different_topics_each_get_their_topic() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("x", 2), spec("y", 2)])
    cx, cy = log.consumer("g", ["x"]), log.consumer("g", ["y"])
    await cx.poll(1, 0.01)
    await cy.poll(1, 0.01)
    assert {tp.topic for tp in cx.assignment()} == {"x"} and len(cx.assignment()) == 2
    assert {tp.topic for tp in cy.assignment()} == {"y"} and len(cy.assignment()) == 2


async def test_a_poll_waiting_for_data_wakes_on_append() -> None:
    import asyncio
    import time

    log = MemoryLog()
    await log.ensure_topics([spec("t", 1)])
    c = log.consumer("g", ["t"])
    await c.poll(1, 0.01)

    async def later() -> None:
        await asyncio.sleep(0.05)
        await log.append([raw("t", b"k", b"v")])

    task = asyncio.create_task(later())
    started = time.monotonic()
    recs = await c.poll(10, 5.0)
    await task
    assert [r.value for r in recs] == [b"v"]
    assert time.monotonic() - started < 1.0


async def test_committing_a_partition_one_does_not_own_is_refused() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("t", 2)])
    c = log.consumer("g", ["t"])
    try:
        await c.commit([], {TopicPartition("t", 0): 1})
    except InvariantViolation as exc:
        assert "does not own" in str(exc)
    else:
        raise AssertionError("commit without assignment was accepted")


async def test_paused_partitions_return_nothing_until_resumed() -> None:
    log = MemoryLog()
    await log.ensure_topics([spec("t", 1)])
    await log.append([raw("t", b"k", b"v")])
    c = log.consumer("g", ["t"])
    await settle([c], 1)
    await c.seek(TopicPartition("t", 0), 0)
    c.pause([TopicPartition("t", 0)])
    assert await c.poll(10, 0.02) == []
    c.resume([TopicPartition("t", 0)])
    assert [r.value for r in await c.poll(10, 0.5)] == [b"v"]
