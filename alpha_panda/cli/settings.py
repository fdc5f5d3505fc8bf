"""The settings a command runs with: a bad ``ALPHA_PANDA_*`` variable is a one-line error
that names it (exit 2), not a traceback. Read by the commands that use settings only, so
``--help`` and the commands that need none work whatever the environment holds."""

from __future__ import annotations

import json
import re
from typing import NoReturn

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError

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
        _fail("; ".join(problems))
    except SettingsError as exc:
        # a variable of a mapping (ALPHA_PANDA_RISK) that is not JSON: pydantic-settings
        # names the field in its message and chains json's error (line, column)
        field = re.search(r'field "([^"]+)"', str(exc))
        name = f"ALPHA_PANDA_{field.group(1).upper()}" if field else "ALPHA_PANDA_*"
        cause = exc.__cause__
        detail = f"not valid JSON: {cause}" if isinstance(cause, json.JSONDecodeError) else str(
            cause or exc)
        _fail(f"{name}: {detail}")


def _fail(problems: str) -> NoReturn:
    typer.secho(f"error: bad setting: {problems}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2) from None
