"""Fixtures for the embedded pipeline tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from alpha_panda.marketdata.files import TickColumns, generate_random_walk, write_ticks


@pytest.fixture
def tick_file(tmp_path: Path) -> Callable[..., tuple[Path, TickColumns]]:
    def make(n: int = 4000, instruments: int = 4, seed: int = 3) -> tuple[Path, TickColumns]:
        cols = generate_random_walk(n, instruments, seed=seed)
        path = tmp_path / "ticks.csv"
        write_ticks(path, cols)
        return path, cols
    return make
