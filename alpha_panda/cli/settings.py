"""The settings a command runs with: a bad ``ALPHA_PANDA_*`` variable is a one-line error
that names it (exit 2), not a traceback. Read by the commands that use settings only, so
``--help`` and the commands that need none work whatever the environment holds."""

from __future__ import annotations

import typer
from pydantic import ValidationError

from alpha_panda.settings import Settings


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            message = e["msg"].removeprefix("Value error, ")
            value = e.get("input")
            if isinstance(value, str | int | float) and repr(value) not in message:
                message += f" (got {value!r})"
            name = "__".join(str(p) for p in e["loc"]).upper()
            problems.append(f"ALPHA_PANDA_{name}: {message}")
        typer.secho(f"error: bad setting: {'; '.join(problems)}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
