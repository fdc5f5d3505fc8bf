"""In-process consumer-group coordination for the embedded logs (memory, SQLite).

Assignment is cooperative: when a member joins or leaves, every member's *target* set of
partitions is recomputed (round-robin per topic over the members subscribed to it, in join
order), but a partition only moves to its new owner once the old owner has released it.
Members release and acquire partitions at the start of ``poll``, a point where the
runtime has committed everything it read before; so two members never hold the same
partition and no commit can be lost to a rebalance.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from alpha_panda.stream.log import TopicPartition

_member_ids = itertools.count(1)


def new_member_id(group: str) -> str:
    """A member id unique within this process."""
    return f"{group}-member-{next(_member_ids)}"


@dataclass(slots=True, eq=False)
class Member:
    """One consumer's view in the coordinator."""

    member_id: str
    topics: frozenset[str]
    owned: set[TopicPartition] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class GroupCoordinator:
    """Tracks the members of every group of one log and which partitions each owns."""

    def __init__(self, partitions_of: Callable[[str], int]) -> None:
        self._partitions_of = partitions_of
        self._groups: dict[str, dict[str, Member]] = {}
        self._targets: dict[str, dict[str, frozenset[TopicPartition]]] = {}
        self._topology = 0  # bumped when a topic appears; targets then need recomputing
        self._target_version: dict[str, int] = {}

    def topology_changed(self) -> None:
        """A topic was created (its partitions may now be assignable)."""
        self._topology += 1
        for members in self._groups.values():
            for m in members.values():
                m.wake.set()

    def join(self, group: str, member: Member) -> None:
        members = self._groups.setdefault(group, {})
        members[member.member_id] = member
        self._invalidate(group)

    def leave(self, group: str, member_id: str) -> None:
        members = self._groups.get(group, {})
        members.pop(member_id, None)
        if not members:
            self._groups.pop(group, None)
            self._targets.pop(group, None)
            self._target_version.pop(group, None)
            return
        self._invalidate(group)

    def members(self, group: str) -> list[Member]:
        return list(self._groups.get(group, {}).values())

    def target(self, group: str, member_id: str) -> frozenset[TopicPartition]:
        """The partitions ``member_id`` should own once everybody has synced."""
        if self._target_version.get(group) != self._topology:
            self._recompute(group)
        return self._targets.get(group, {}).get(member_id, frozenset())

    def revocations(self, group: str, member: Member) -> set[TopicPartition]:
        """Partitions ``member`` owns but must give up."""
        return member.owned - self.target(group, member.member_id)

    def release(self, group: str, member: Member, tps: set[TopicPartition]) -> None:
        member.owned -= tps
        if tps:
            for other in self.members(group):
                if other is not member:
                    other.wake.set()

    def acquire(self, group: str, member: Member) -> set[TopicPartition]:
        """Take every target partition nobody else still holds; returns the new ones."""
        target = self.target(group, member.member_id)
        missing = set(target - member.owned)
        if not missing:
            return set()
        held: set[TopicPartition] = set()
        for other in self.members(group):
            if other is not member:
                held |= other.owned
        added = missing - held
        member.owned |= added
        return added

    def _invalidate(self, group: str) -> None:
        self._target_version.pop(group, None)
        for m in self.members(group):
            m.wake.set()

    def _recompute(self, group: str) -> None:
        members = self.members(group)
        targets: dict[str, set[TopicPartition]] = {m.member_id: set() for m in members}
        topics = sorted({t for m in members for t in m.topics})
        for t in topics:
            subscribed = [m for m in members if t in m.topics]
            n = self._partitions_of(t)
            for p in range(n):
                # Partition p of every topic goes to the same member: topics read together
                # are co-partitioned by instrument, so a member sees whole instruments.
                owner = subscribed[p % len(subscribed)]
                targets[owner.member_id].add(TopicPartition(t, p))
        self._targets[group] = {k: frozenset(v) for k, v in targets.items()}
        self._target_version[group] = self._topology
