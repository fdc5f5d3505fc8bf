"""``alpha-panda strategy``: write a new strategy from a template, list and check strategies."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from alpha_panda.domain.errors import AlphaPandaError, StrategyConfigError
from alpha_panda.marketdata.instruments import BY_TOKEN
from alpha_panda.strategy.builtins import BUILTINS
from alpha_panda.strategy.config import (
    NOT_SIMULATED,
    StrategyConfig,
    load_strategy_dir,
    load_strategy_file,
    resolve_strategy,
    unmodelled,
    unsimulated,
)
from alpha_panda.strategy.template import render

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)



@app.command()
def new(
    name: Annotated[str, typer.Argument(help="snake_case name, e.g. my_breakout")],
    directory: Annotated[Path, typer.Option("--dir", help="where to write NAME.py and NAME.yaml")] = Path("."),
    force: Annotated[bool, typer.Option(help="overwrite existing files")] = False,
) -> None:
    """Write NAME.py (a commented strategy) and NAME.yaml (its config) to start from."""
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        typer.secho("error: NAME must be snake_case (a-z, 0-9, _)", fg="red", err=True)
        raise typer.Exit(2)
    code, config = render(name)
    if directory.exists() and not directory.is_dir():
        typer.secho(f"error: --dir {directory} is a file, not a directory", fg="red", err=True)
        raise typer.Exit(2)
    targets = [directory / f"{name}.py", directory / f"{name}.yaml"]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        typer.secho(f"error: {', '.join(existing)} exists (use --force)", fg="red", err=True)
        raise typer.Exit(2)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        targets[0].write_text(code)
        targets[1].write_text(config)
    except OSError as exc:  # (--dir naming a file, no permission: it was a traceback)
        typer.secho(f"error: --dir {directory}: cannot write {exc.filename}: {exc.strerror}",
                    fg="red", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {targets[0]} and {targets[1]}")
    typer.echo(f"try it: alpha-panda backtest --strategy {targets[1]} --data TICKS.csv")


@app.command(name="list")
def list_builtins() -> None:
    """The built-in strategies and their parameters."""
    for name in sorted(BUILTINS):
        cls = resolve_strategy(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        params = ", ".join(f"{k}={f.default}" for k, f in cls.Params.model_fields.items())
        typer.echo(f"{name:16} {doc}\n{'':16} params: {params}")


@app.command()
def check(
    path: Annotated[Path, typer.Argument(help="a strategy YAML file or a folder of them")],
) -> None:
    """Validate strategy files (exit 1 when any is invalid; warnings do not fail)."""
    if path.is_dir():
        configs, errors = load_strategy_dir(path)
        if not configs and not errors:  # (it said nothing and exited 0: all checked, none)
            typer.secho(f"invalid  {path}: no strategy files (*.yaml, *.yml) in it",
                        fg="red", err=True)
            raise typer.Exit(1)
    else:
        try:
            configs, errors = [load_strategy_file(path)], []
        except StrategyConfigError as exc:
            configs, errors = [], [exc]
    for c in configs:
        # (a file switched off read as one that runs)
        off = "" if c.enabled else "; enabled: false, so run leaves it out"
        typer.echo(f"ok       {c.source}: {c.id} ({c.strategy}, {len(c.instruments)} "
                   f"instruments{off})")
    for c, tokens in unsimulated(configs, BY_TOKEN.keys()):
        typer.secho(f"warning  {c.source}: instruments: {', '.join(map(str, tokens))} "
                    f"{NOT_SIMULATED}", fg="yellow", err=True)
    for c in configs:
        if (note := unmodelled(c)) is not None:
            typer.secho(f"warning  {c.source}: {note}", fg="yellow", err=True)
    for note in _idle_stops(configs):
        typer.secho(f"warning  risk: {note}", fg="yellow", err=True)
    for e in errors:
        typer.secho(f"invalid  {e}", fg="red", err=True)
    if errors:
        raise typer.Exit(1)


def _idle_stops(configs: list[StrategyConfig]) -> list[str]:
    """The daily-loss stops that never fire (``daily_loss_flatten`` with no ``daily_loss``),
    with the settings' limits merged in (``ALPHA_PANDA_RISK``). Settings that do not load
    are ``preflight``'s to report: nothing is said of them here."""
    from alpha_panda.services.risk_config import idle_stops
    from alpha_panda.settings import Settings

    try:
        return idle_stops(Settings(), configs)
    except (AlphaPandaError, ValueError):
        return []
