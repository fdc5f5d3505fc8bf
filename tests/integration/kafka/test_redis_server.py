"""The private redis-server helper: starts on a free port, serves, stops by pid file."""

from __future__ import annotations

import pytest
import redis

from alpha_panda.testing.redis_server import redis_server

pytestmark = pytest.mark.integration


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_private_server_serves_and_stops_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    with redis_server() as server:
        assert server.port != 6379
        client = redis.Redis.from_url(server.url)
        client.set("k", b"v")
        assert client.get("k") == b"v"
        pid = server.pid()
        directory = server.directory
        assert pid is not None and directory is not None
        client.close()
    assert not _running(pid)
    assert not directory.exists()


def test_two_servers_are_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    with redis_server() as a, redis_server() as b:
        assert a.port != b.port
        ca, cb = redis.Redis.from_url(a.url), redis.Redis.from_url(b.url)
        ca.set("only-in-a", 1)
        assert cb.get("only-in-a") is None
        ca.close()
        cb.close()
