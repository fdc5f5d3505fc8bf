"""The kill switch as last set is read back from the broker's control topic."""

from __future__ import annotations

import pytest

from alpha_panda.adapters.memory_log import MemoryLog
from alpha_panda.domain.errors import ValidationError
from alpha_panda.services.control import PipelineControl
from alpha_panda.stream.log import Output


async def test_last_switch_per_broker_comes_from_the_log() -> None:
    log = MemoryLog()
    control = PipelineControl(log)
    assert await control.kill_switch("zerodha") is None  # never set: no topic yet
    await control.set_kill_switch("zerodha", True, True)
    await control.set_kill_switch("paper", True, False)
    await control.set_kill_switch("zerodha", False, True)  # resumed: flatten only with active
    # Things that are not events (poison records) after it do not hide it, however many.
    await log.append([Output("zerodha.control", b"kill_switch", b"not json", ())] * 120)

    # Another process (a restarted API) sees what was set, read from the log alone.
    again = PipelineControl(log)
    zerodha, paper = await again.kill_switch("zerodha"), await again.kill_switch("paper")
    assert zerodha is not None and (zerodha.active, zerodha.flatten) == (False, False)
    assert paper is not None and (paper.active, paper.flatten) == (True, False)
    assert zerodha.set_at > paper.set_at > 0
    with pytest.raises(ValidationError, match="unknown broker 'kite'"):
        await again.kill_switch("kite")
