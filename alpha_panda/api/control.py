"""The write side the API may touch: the operator's controls, implemented by the running system.

The read API never writes to the log or the cache itself; an operator action goes through
``Control``, which the composition root implements (``services.control``). A process
without a pipeline (the API alone) passes no ``Control`` and the endpoints answer 503.
"""

from __future__ import annotations

from typing import Protocol


class Control(Protocol):
    """Operator controls of a running pipeline."""

    async def set_kill_switch(self, broker: str, active: bool, flatten: bool) -> None:
        """Stop (``active=True``) or resume new orders on ``broker`` (``paper`` or ``zerodha``).

        With ``flatten`` (only meaningful when activating), also close every open position of
        that broker at market. Raises ``ValidationError`` / ``ConfigurationError`` when the
        request cannot be honoured (e.g. the broker is not running in this process).
        """
        ...
