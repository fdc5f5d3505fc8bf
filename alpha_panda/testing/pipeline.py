"""Run the whole embedded pipeline over a tick file, for tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

from alpha_panda.services.app import RunOptions, SystemRun
from alpha_panda.settings import ApiSettings, Settings
from alpha_panda.stream.log import read_topic

SMA_YAML = """\
id: {id}
strategy: sma_cross
instruments: {tokens}
brokers: {brokers}
params: {{fast: 3, slow: 8, quantity: {quantity}}}
execution: {{costs: {costs}}}
"""


def write_strategy(directory: Path, *, id: str = "sma", tokens: list[int], brokers: str = "[paper]",
                   quantity: int = 2, costs: bool = True) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{id}.yaml"
    path.write_text(SMA_YAML.format(id=id, tokens=tokens, brokers=brokers, quantity=quantity,
                                    costs=str(costs).lower()))
    return path


def settings_for(root: Path, ticks: Path, *, log: str = "embedded") -> Settings:
    return Settings().model_copy(update={
        "data_dir": root / "data", "log": log, "feed": f"replay:{ticks}",
        "strategies_dir": root / "strategies", "api": ApiSettings(enabled=False),
    })


async def run_replay(settings: Settings) -> SystemRun:
    system = SystemRun(settings, RunOptions(exit_at_end=True, progress=False))
    await system.run()
    return system


read_all = read_topic  # every record of a topic (the tests' name for it)
