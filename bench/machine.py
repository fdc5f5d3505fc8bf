"""A yardstick for the machine a bench runs on, printed beside its figures.

Every bench measures pure-Python work, and machines of one kind differ: the same
``bench/backtest.py`` on the same commit measured 1.06M ticks/s on one of this project's
2-core VMs and 0.30-0.34M on another (and the second varied by 2x within an hour). A rate
alone cannot tell a slower pipeline from a slower machine; with this figure beside it, two
runs can be compared. It times a fixed interpreter workload (integer additions in a
``for`` loop, the best of several tries): nanoseconds per loop step, lower is faster.

    python bench/machine.py
"""

from __future__ import annotations

import sys
import time

STEPS = 2_000_000


def loop_ns(steps: int = STEPS, tries: int = 5) -> float:
    """Nanoseconds per step of a plain ``for`` loop adding integers: the best of ``tries``."""
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter_ns()
        total = 0
        for i in range(steps):
            total += i
        best = min(best, time.perf_counter_ns() - t0)
    assert total == steps * (steps - 1) // 2  # the loop ran, and ran whole
    return best / steps


def describe(ns: float | None = None, note: str = "") -> str:
    """One line: the interpreter and the yardstick (``ns``, or measured now)."""
    ns = loop_ns() if ns is None else ns
    return (f"machine: python {sys.version.split()[0]}, {ns:.1f} ns per loop step{note} "
            "(bench/machine.py; lower is faster)")


if __name__ == "__main__":
    print(describe())
