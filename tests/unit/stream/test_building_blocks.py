"""Small parts of the runtime: error policy, backoff, headers, dedup window, hot partitions."""

from __future__ import annotations

import random

import msgspec
import pytest

from alpha_panda.domain.errors import (
    AuthenticationError,
    BrokerUnavailable,
    ConfigurationError,
    DecodeError,
    IllegalTransition,
    RateLimited,
    StrategyError,
    TransientError,
    ValidationError,
)
from alpha_panda.stream.dedup import RecentIds
from alpha_panda.stream.emit import Emit, record_id, to_output
from alpha_panda.stream.hot import HotPartitionTracker, TopKeys
from alpha_panda.stream.log import Record, TopicPartition
from alpha_panda.stream.retry import Disposition, backoff_delay, classify
from tests.contract.helpers import tick


@pytest.mark.parametrize(("exc", "disposition"), [
    (TransientError("t"), Disposition.RETRY),
    (BrokerUnavailable("b"), Disposition.RETRY),
    (RateLimited("r", 2.0), Disposition.RETRY),
    (DecodeError("d"), Disposition.DEAD_LETTER),
    (ValidationError("v"), Disposition.DEAD_LETTER),
    (KeyError("bug in a handler"), Disposition.DEAD_LETTER),
    (StrategyError("s", "boom"), Disposition.DEAD_LETTER),
    (AuthenticationError("a"), Disposition.FATAL),
    (IllegalTransition("i"), Disposition.FATAL),
    (ConfigurationError("c"), Disposition.FATAL),
])
def test_errors_are_classified_by_what_the_operator_must_do(
        exc: Exception, disposition: Disposition) -> None:
    assert classify(exc) is disposition


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    delays = [backoff_delay(TransientError("x"), n, 0.1, 1.0, rng) for n in range(1, 8)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(1.0, 0.1 * 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    assert backoff_delay(RateLimited("x", retry_after=3.0), 1, 0.1, 5.0, rng) >= 3.0
    assert backoff_delay(RateLimited("x", retry_after=30.0), 1, 0.1, 5.0, rng) <= 5.0


def test_to_output_carries_id_type_and_traceparent_headers() -> None:
    env = tick(1)
    traced = msgspec.structs.replace(
        env, traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    out = to_output(Emit("market.ticks", traced))
    assert out.key == b"1"
    assert dict(out.headers) == {"id": b"tick-1-1", "type": b"market_tick",
                                 "traceparent": b"00-0af7651916cd43dd8448eb211c80319c-"
                                                b"b7ad6b7169203331-01"}
    rec = Record("market.ticks", 0, 0, out.key, out.value, out.headers)
    assert record_id(rec) == "tick-1-1"
    assert "traceparent" not in dict(to_output(Emit("t", env)).headers)


def test_recent_ids_remember_at_least_capacity_and_stay_bounded() -> None:
    ids = RecentIds(capacity=100)
    ids.update(str(i) for i in range(1000))
    assert all(str(i) in ids for i in range(900, 1000))
    assert len(ids) <= 200
    assert "0" not in ids
    assert ids.seen(["999", "0", "950"]) == {"999", "950"}


def test_top_keys_finds_the_heavy_hitters() -> None:
    top = TopKeys(k=3)
    rng = random.Random(1)
    for _ in range(5000):
        top.add(b"hot" if rng.random() < 0.5 else str(rng.randrange(1000)).encode())
    assert top.top()[0][0] == b"hot"


def test_a_partition_far_above_its_fair_share_is_reported_with_its_keys() -> None:
    tracker = HotPartitionTracker(factor=2.0, min_records=100, sample_every=1)
    recs = [Record("t", 0, i, b"RELIANCE", b"") for i in range(900)]
    recs += [Record("t", p, i, str(p).encode(), b"") for p in (1, 2, 3) for i in range(30)]
    tracker.observe(recs)
    assignment = [TopicPartition("t", p) for p in range(4)]
    hot = tracker.report(assignment)
    assert [h.tp for h in hot] == [TopicPartition("t", 0)]
    assert hot[0].top_keys[0] == (b"RELIANCE", 900)
    assert hot[0].share > 0.9
    assert tracker.report(assignment) == []  # the window was reset


def test_shares_are_per_topic_so_a_busy_topic_is_not_a_hot_partition() -> None:
    tracker = HotPartitionTracker(factor=2.0, min_records=100, sample_every=1)
    # six evenly loaded tick partitions next to three quiet order partitions
    recs = [Record("ticks", p, i, str(i % 4).encode(), b"") for p in range(6) for i in range(500)]
    recs += [Record("orders", p, i, b"k", b"") for p in range(3) for i in range(40)]
    tracker.observe(recs)
    assignment = [TopicPartition("ticks", p) for p in range(6)]
    assignment += [TopicPartition("orders", p) for p in range(3)]
    assert tracker.report(assignment) == []


def test_a_partition_that_stays_hot_is_warned_about_once_per_repeat_interval() -> None:
    from alpha_panda.stream.hot import HotAlerts, HotPartition

    a, b = TopicPartition("t", 0), TopicPartition("t", 1)

    def hot(*tps: TopicPartition) -> list[HotPartition]:
        return [HotPartition(tp, 0.4, 0.17, 4000, []) for tp in tps]

    alerts = HotAlerts(repeat_s=600)
    assert alerts.update(hot(a), now=0) == (hot(a), [])
    assert alerts.update(hot(a), now=10) == ([], [])  # still hot: the gauge says so
    assert alerts.update([], now=20) == ([], [a])  # cooled
    assert alerts.update(hot(a, b), now=30) == (hot(b), [])  # a flaps back: no new warning
    assert alerts.update(hot(a, b), now=605) == (hot(a), [])  # 10 minutes on: a again
    assert alerts.forget([a]) == [a]
    assert alerts.forget([a]) == []
    assert alerts.update(hot(a), now=606) == (hot(a), [b])  # reassigned: a fresh start


def test_retry_attempts_depend_on_the_error_class() -> None:
    from alpha_panda.domain.errors import BrokerUnavailable, RateLimited, TransientError
    from alpha_panda.stream.retry import DEFAULT_RETRY_ATTEMPTS, attempts_for

    assert attempts_for(TransientError("reset"), DEFAULT_RETRY_ATTEMPTS, 5) == 5
    assert attempts_for(BrokerUnavailable("kite down"), DEFAULT_RETRY_ATTEMPTS, 5) == 10
    assert attempts_for(RateLimited("429", retry_after=1), DEFAULT_RETRY_ATTEMPTS, 5) == 20
    assert attempts_for(RateLimited("429"), {"RetryableError": 7}, 3) == 7  # via the MRO
    assert attempts_for(RateLimited("429"), DEFAULT_RETRY_ATTEMPTS, 30) == 30  # never fewer
