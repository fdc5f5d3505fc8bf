"""Fixtures: a fake Kite (REST + ticker) on free ports, settings pointing at it, a log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.adapters.zerodha.config import ZerodhaSettings
from alpha_panda.adapters.zerodha.session import KiteSession, complete_login
from alpha_panda.stream.topics import REGISTRY
from alpha_panda.testing.fake_kite import FakeKite


@pytest.fixture
def served() -> Iterator[dict[str, Any]]:
    """The fake Kite as its own process (``python -m alpha_panda.testing.fake_kite``); yields
    the addresses and credentials it prints on start."""
    proc = subprocess.Popen([sys.executable, "-m", "alpha_panda.testing.fake_kite",
                             "--tick-interval", "0.05"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def fake() -> Iterator[FakeKite]:
    with FakeKite() as kite:
        yield kite


@pytest.fixture
def settings(fake: FakeKite, tmp_path: Path) -> ZerodhaSettings:
    return ZerodhaSettings(
        api_key=fake.api_key, api_secret=SecretStr(fake.api_secret),
        session_key=SecretStr("a passphrase for tests"), root_url=fake.root_url,
        login_url=f"{fake.root_url}/connect/login", ws_url=fake.ws_url,
        session_file=tmp_path / "session.enc", instruments_cache_dir=tmp_path / "instruments",
        live_enabled=True, poll_interval_s=0.2)


@pytest.fixture
def session(settings: ZerodhaSettings) -> KiteSession:
    return complete_login(settings, "fake_request_token")


@pytest.fixture
async def log() -> AsyncIterator[MemoryLog]:
    mem = MemoryLog()
    await mem.start()
    await mem.ensure_topics(REGISTRY.all())
    yield mem
    await mem.close()


