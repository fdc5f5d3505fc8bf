"""`alpha-panda kill` from another terminal stops a running system's orders and flattens it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from test_run_cli import free_port, start, stop, wait_for


def test_kill_from_another_process_flattens_the_running_system(tmp_path: Path) -> None:
    port = free_port()
    proc = start(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/api/v1/portfolios/paper", lambda d: d["open_positions"] > 0, 30)
        done = subprocess.run(
            [sys.executable, "-m", "alpha_panda.cli", "kill", "--flatten", "--data-dir",
             str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert "kill switch for paper: on, flattening positions" in done.stdout
        switches = wait_for(f"{base}/api/v1/kill-switch",
                            lambda d: {s["broker"]: s["active"] for s in d}["paper"], 15)
        assert switches
        wait_for(f"{base}/api/v1/portfolios/paper", lambda d: d["open_positions"] == 0, 15)
        # the strategies go on signalling; every new order is refused by the kill switch
        rejected = wait_for(f"{base}/api/v1/signals/paper?status=rejected", bool, 20)
        assert {s["reason_code"] for s in rejected} == {"KILL_SWITCH"}
        fills = httpx.get(f"{base}/api/v1/portfolios/paper").json()["fills"]
        wait_for(f"{base}/api/v1/signals/paper?status=rejected", lambda d: len(d) > len(rejected), 20)
        assert httpx.get(f"{base}/api/v1/portfolios/paper").json()["fills"] == fills
    finally:
        code, err = stop(proc)
    assert code == 0, err[-3000:]
