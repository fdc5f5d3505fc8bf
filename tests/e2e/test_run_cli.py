"""`alpha-panda run` as a user starts it: the API shows fills within 30 s, Ctrl-C exits 0,
and a restart continues with the same positions."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(data: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "ALPHA_PANDA_SIMULATOR__RATE": "400"}
    return subprocess.Popen(
        [sys.executable, "-m", "alpha_panda.cli", "run", "--port", str(port),
         "--data-dir", str(data)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(url: str, predicate, timeout: float) -> dict:  # type: ignore[no-untyped-def,type-arg]
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(url, timeout=2)
            last = resp.text
            if resp.status_code == 200 and predicate(resp.json()):
                return resp.json()  # type: ignore[no-any-return]
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.25)
    raise AssertionError(f"{url} did not satisfy the condition in {timeout}s; last: {last}")


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


def test_run_shows_fills_over_http_and_ctrl_c_exits_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc = start(tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        portfolio = wait_for(f"{base}/api/v1/portfolios/paper", lambda d: d["fills"] > 0, 30)
        assert time.monotonic() - t0 < 30
        wait_for(f"{base}/ready", lambda d: True, 10)
        orders = httpx.get(f"{base}/api/v1/orders/paper").json()
        assert any(o["status"] == "FILLED" for o in orders)
        assert httpx.get(f"{base}/api/v1/portfolios/nope").status_code == 404
    finally:
        code, err = stop(proc)
    assert code == 0, err[-3000:]
    # where the API is, also when stderr is not a terminal (a pipe here)
    assert f"dashboard {base}/  API {base}/api/v1/portfolios/paper  docs {base}/docs" in err
    fills_before = portfolio["fills"]

    # restart on the same data directory: positions come back from the log
    proc = start(tmp_path, port)
    try:
        again = wait_for(f"{base}/api/v1/portfolios/paper",
                         lambda d: d["fills"] >= fills_before, 30)
        assert again["fills"] >= fills_before
    finally:
        code, err = stop(proc)
    assert code == 0, err[-3000:]


def test_sigterm_while_the_run_starts_stops_it_cleanly(tmp_path: Path) -> None:
    # SIGTERM while `run` set itself up (loading strategies, opening the log, building the
    # services and reading a replay file: 0.3-0.5 s here) killed it outright, exit -15, with
    # not a line said: the handlers that stop a run cleanly came only after that. A
    # strategy whose module sends the signal as it is imported makes that moment exact.
    strategies = tmp_path / "strategies"
    strategies.mkdir()
    (strategies / "stopper.py").write_text(
        "import os, signal\n"
        "from alpha_panda.strategy.builtins.sma_cross import SmaCross\n"
        "os.kill(os.getpid(), signal.SIGTERM)  # as the strategies load\n"
        "class Stopper(SmaCross):\n"
        "    pass\n")
    (strategies / "stopper.yaml").write_text(
        "id: stopper\nstrategy: stopper.py:Stopper\ninstruments: [738561]\n"
        "brokers: [paper]\nparams: {fast: 3, slow: 8, quantity: 1}\n")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "alpha_panda.cli", "run", "--no-api", "--duration", "60",
         "--data-dir", str(tmp_path / "data"), "--strategies", str(strategies)],
        env={**os.environ, "ALPHA_PANDA_LOG_LEVEL": "INFO"}, capture_output=True, text=True,
        timeout=120, check=False)
    assert done.returncode == 0, (done.returncode, done.stderr[-3000:])
    assert "system.stopping" in done.stderr and "processor.stopped" in done.stderr
    assert time.monotonic() - started < 30  # stopped by the signal, not by --duration
