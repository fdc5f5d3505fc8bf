"""Backtest speed: sma_cross (fast 10, slow 30, quantity 1, costs off) over a deterministic
1,000,000-tick random walk (20 instruments, 0.05 grid) through the full engine.

    python bench/backtest.py [--ticks N] [--json] [--requote]

``--requote`` runs ``Requote`` instead (below): a resting limit buy per instrument,
cancelled and placed again whenever the market moves off it, about one order per tick:
what resting orders and cancels cost.

Prints: generation and file-load time (CSV via pyarrow), processing time and ticks/s
(load excluded, engine set-up included; wall clock, and CPU time, which other processes
on a shared machine disturb less), peak memory (max RSS) and the summary.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from machine import describe, loop_ns

from alpha_panda.backtest import run_backtest
from alpha_panda.domain.events import MarketTick, Signal
from alpha_panda.marketdata.files import generate_random_walk, load_ticks, tick_source, write_ticks
from alpha_panda.strategy import CancelOrder, Context, OrderType, Strategy
from alpha_panda.strategy.config import config_from_mapping


class Requote(Strategy):
    """Keeps one limit buy a tick under the market: when the market moves, cancels it and
    bids again; sells at market what filled."""

    def on_tick(self, tick: MarketTick, ctx: Context) -> list[Signal | CancelOrder] | None:
        t = ctx.tick_size()
        bid = (tick.last_price // t - 1) * t
        out: list[Signal | CancelOrder] = []
        if ctx.filled() > 0 and not ctx.pending():
            out.append(ctx.sell(ctx.filled()))
        working = ctx.open_orders()
        out += [ctx.cancel(o) for o in working if o.limit_price != bid and not o.cancel_requested]
        if not working and ctx.position() <= 0:
            out.append(ctx.buy(1, order_type=OrderType.LIMIT, limit_price=bid))
        return out or None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=1_000_000)
    parser.add_argument("--instruments", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--requote", action="store_true",
                        help="a resting-order strategy that cancels and bids again (Requote)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    generated = generate_random_walk(args.ticks, args.instruments, seed=args.seed)
    gen_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="ap-bench-") as tmp:
        path = Path(tmp) / "ticks.csv"
        write_ticks(path, generated)
        del generated
        size_mb = path.stat().st_size / 1e6
        t0 = time.perf_counter()
        ticks = load_ticks(path)
        load_s = time.perf_counter() - t0
    tokens = sorted(set(ticks.instrument_token.tolist()))
    config = config_from_mapping({
        "id": "bench_requote", "strategy": f"{__name__}:Requote", "instruments": tokens,
        "execution": {"costs": False},
    } if args.requote else {
        "id": "bench_sma_cross", "strategy": "sma_cross", "instruments": tokens,
        "params": {"fast": 10, "slow": 30, "quantity": 1}, "execution": {"costs": False},
    }, "bench")
    cpu0 = time.process_time()
    result = run_backtest(config, ticks, source=tick_source(path), load_s=load_s)
    cpu_s = time.process_time() - cpu0  # robust to other processes sharing the cores
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = result.to_dict()
    figures = {
        "ticks": s["ticks"], "instruments": len(tokens), "generate_s": round(gen_s, 3),
        "csv_mb": round(size_mb, 1), "load_s": round(load_s, 3),
        "elapsed_s": s["elapsed_s"], "ticks_per_s": s["ticks_per_s"], "cpu_s": round(cpu_s, 3),
        "ticks_per_cpu_s": round(s["ticks"] / cpu_s) if cpu_s > 0 else 0,
        "peak_rss_mb": round(peak_mb, 1), "machine_loop_ns": round(loop_ns(), 1), "summary": s,
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"ticks            {s['ticks']:,} ({len(tokens)} instruments, CSV {size_mb:.1f} MB)")
    print(f"generate         {gen_s:.3f} s")
    print(f"load (pyarrow)   {load_s:.3f} s")
    print(f"processing       {s['elapsed_s']:.3f} s  ->  {s['ticks_per_s']:,} ticks/s")
    print(f"processing CPU   {cpu_s:.3f} s  ->  {figures['ticks_per_cpu_s']:,} ticks per CPU-second")
    print(f"peak memory      {peak_mb:.0f} MB (max RSS)")
    print(describe(figures["machine_loop_ns"]))
    print(f"orders           {s['orders']:,}  cancelled {s['orders_cancelled']:,}")
    print(f"fills            {s['fills']:,}  round trips {s['round_trips']:,}")
    print(f"P&L              realized {s['realized_pnl']}  unrealized {s['unrealized_pnl']}  "
          f"charges {s['charges']}")
    print(json.dumps(s), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
