"""The readiness ``service api`` reports for the services of other processes, from their
consumer groups' offsets (``GroupLag``)."""

from __future__ import annotations

import time

from alpha_panda.services.group_lag import GroupLag


def test_a_group_keeping_up_within_the_limit_is_ready() -> None:
    # a group consuming a full-speed replay a few thousand records behind: its offsets are
    # rarely read at exactly 0, and /ready answered 503 for as long as the replay ran
    group = GroupLag("paper.risk-manager", "paper.risk-manager", ["market.ticks"],
                     max_lag=10_000, grace=30)
    group.update(4_200, committed=True, now=time.monotonic())
    assert group.health().ready


def test_a_group_past_the_limit_or_that_never_committed_is_not_ready() -> None:
    behind = GroupLag("g", "g", ["t"], max_lag=10_000, grace=30)
    behind.update(50_000, committed=True, now=time.monotonic())
    assert not behind.health().ready
    assert "not caught up" in behind.health().detail
    # records waiting and nothing committed: its service may never have started
    idle = GroupLag("g", "g", ["t"], max_lag=10_000, grace=30)
    idle.update(12, committed=False, now=time.monotonic())
    assert not idle.health().ready
    assert "is its service running" in idle.health().detail
