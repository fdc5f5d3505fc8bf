"""The API's server for a run: the check that its port is free before anything starts
(``check_port_free``) and the uvicorn server (``api_server``), which leaves signals to the run.

Apart from the run (``services.app``): the preflight checks test the port too.
"""

from __future__ import annotations

import contextlib
import errno
import socket
from typing import Any

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.readmodel.cache import Cache
from alpha_panda.services.pipeline import Pipeline
from alpha_panda.settings import Settings
from alpha_panda.stream.dlq import DeadLetterCounts


def check_port_free(host: str, port: int) -> None:
    """Raise ``ConfigurationError`` if something listens on ``host:port``.

    Bound the way the API server binds (``SO_REUSEADDR``, as uvicorn does): connections of
    a run that just stopped, left in TIME_WAIT for a minute, do not make the port busy,
    so ``make run`` straight after Ctrl-C starts; a listening process still does."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigurationError(
                    f"port {port} on {host} is in use ({exc.strerror}); pass --port N or "
                    "--no-api") from exc
            # (a host that is no address here, a name that does not resolve, a port below
            # 1024: each was said to be "in use", the port changed in vain)
            raise ConfigurationError(
                f"cannot listen on {host} port {port}: {exc.strerror}; pass --host (an "
                "address of this machine: 127.0.0.1, or 0.0.0.0 for all), --port N or "
                "--no-api") from exc


def _server_class() -> Any:
    import uvicorn

    class QuietSignalsServer(uvicorn.Server):
        """uvicorn leaves signals to us: Ctrl-C stops the whole system, not just the API."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    return QuietSignalsServer


def api_server(settings: Settings, pipeline: Pipeline, cache: Cache) -> Any:
    """A uvicorn server for the API; stopped by setting ``should_exit``."""
    import uvicorn

    from alpha_panda.api.app import create_app
    from alpha_panda.services.control import PipelineControl

    app = create_app(cache=cache, health=pipeline.health, control=PipelineControl(pipeline.log),
                     app_settings=settings, dead_letters=DeadLetterCounts(pipeline.log))
    config = uvicorn.Config(app, host=settings.api.host, port=settings.api.port,
                            log_level="warning", access_log=False, lifespan="on",
                            log_config=None)  # keep our (redacting) logging configuration
    return _server_class()(config)
