"""Strategy configuration: the one YAML schema (file or database row) and its loading.

Everything that can be wrong with a strategy file is found here, at load time, and
reported as ``StrategyConfigError`` naming the file and the field: text that is not
UTF-8, YAML syntax, a key given twice, unknown keys, an unknown strategy name or class,
an unknown, mistyped or nonsensical parameter (``fast`` not below ``slow``, a period of
0), an empty instrument list, an id claimed by two files of one directory.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import io
import json
import os
import sys
from collections.abc import Collection, Iterable, Mapping
from datetime import time
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Final, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from alpha_panda.domain.errors import ConfigurationError, StrategyConfigError
from alpha_panda.domain.values import Broker
from alpha_panda.execution.config import MIS_SQUAREOFF
from alpha_panda.execution.market import MarketCalendar
from alpha_panda.risk.limits import ACCOUNT_ONLY, RiskLimits
from alpha_panda.strategy.base import Strategy, StrategyParams
from alpha_panda.strategy.builtins import BUILTINS


class DuplicateStrategyId(StrategyConfigError):
    """One of several files claiming the same ``strategy_id``: none of them may run, and
    neither may a stored row of that id (the config store must drop it too)."""

    def __init__(self, source: str, strategy_id: str, others: list[str]) -> None:
        self.strategy_id = strategy_id
        super().__init__(
            source, "id",
            f"duplicate strategy id {strategy_id!r} (also in {', '.join(others)}): "
            "none of these files runs until each has its own id",
        )


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


INTRADAY_EXIT: Final = time(15, 15)
"""``exit_at`` of a strategy file with ``product: MIS`` that names none: five minutes before
Zerodha's 15:20 auto square-off, which charges ₹50 + GST an order."""


def _clock_time(value: Any) -> Any:
    """``exit_at`` as written: ``"15:15"``, ``"9:30"`` or ``"15:15:30"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(  # noqa: TRY004 - pydantic reports a ValueError by field
            'put the IST time in quotes, exit_at: "15:15" (YAML reads an unquoted time as a '
            "number: 15:15 as 915, 9:30 as 570)")
    if isinstance(value, str) and len(value) >= 4 and value[1] == ":":
        return "0" + value  # 9:30 -> 09:30
    return value


class ExecutionSettings(BaseModel):
    """Paper / backtest simulation settings of one strategy (``ExecutionConfig`` says what
    each does; these are its fields a strategy file may set)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    costs: bool = True
    slippage_bps: NonNegativeInt = 0
    # fixed: slippage_bps; depth: walk the tick's 5-level book when it carries one
    slippage_model: Literal["fixed", "depth"] = "fixed"
    slippage_jitter_bps: NonNegativeInt = 0  # plus a random [0, jitter] bps, seeded per order
    latency_ms: NonNegativeInt = 0
    # Partial fills: at most this share of a tick's traded quantity per order and tick.
    volume_participation: Annotated[Decimal, Field(gt=0, le=1)] | None = None
    # Orders outside NSE hours and holidays: accepted (off), rejected, or queued to the open.
    # (YAML reads an unquoted ``off`` as false: that is "off" too.)
    market_hours: Annotated[Literal["off", "reject", "queue"],
                            BeforeValidator(lambda v: "off" if v is False else v)] = "off"


class StrategyConfig(BaseModel):
    """One strategy, exactly as in the YAML schema of ARCHITECTURE.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    strategy: str = Field(min_length=1)
    # (0 or a negative token was taken, as a token the simulator does not tick; a tick
    # file's token must be 1 or more)
    instruments: list[PositiveInt] = Field(min_length=1)
    brokers: list[Broker] = Field(default_factory=lambda: [Broker.PAPER], min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    risk: dict[str, Any] = Field(default_factory=dict)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    # Orders that name no product: CNC (delivery) or MIS (intraday, squared off at 15:20);
    # NRML is for F&O: an equity strategy set to it would escape both the CNC short rule
    # and the square-off. (Any case: ``mis``.)
    product: Annotated[Literal["CNC", "MIS"], BeforeValidator(_upper)] = "CNC"
    # From this IST time each day the runner closes what the strategy holds (its earlier
    # orders cancelled, then a market order per instrument and product) and drops its
    # signals that would open or add; ``INTRADAY_EXIT`` (15:15) when the file says ``product: MIS`` and
    # no ``exit_at``; ``null`` to hold MIS positions into the broker's square-off.
    exit_at: Annotated[time | None, BeforeValidator(_clock_time)] = None
    enabled: bool = True
    source: str = Field(default="", exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _intraday_exit(cls, data: Any) -> Any:
        if (isinstance(data, dict) and "exit_at" not in data
                and str(data.get("product", "")).upper() == "MIS"):
            return {**data, "exit_at": INTRADAY_EXIT}
        return data

    @field_validator("exit_at")
    @classmethod
    def _in_session(cls, value: time | None) -> time | None:
        if value is None:
            return None
        if value.tzinfo is not None or value.microsecond:
            raise ValueError(f"{value.isoformat()}: an IST time to the minute or second, "
                             'without a zone, e.g. "15:15"')
        hours = MarketCalendar()
        if not hours.open <= value < hours.close:
            raise ValueError(f"{value:%H:%M} is outside NSE's session "
                             f"({hours.open:%H:%M}-{hours.close:%H:%M} IST)")
        return value

    @model_validator(mode="after")
    def _before_squareoff(self) -> StrategyConfig:
        if self.product == "MIS" and self.exit_at is not None and self.exit_at >= MIS_SQUAREOFF:
            raise ValueError(
                f"exit_at {self.exit_at:%H:%M} is not before the {MIS_SQUAREOFF:%H:%M} square-off "
                "of MIS positions (null to leave them to it)")
        return self

    @field_validator("instruments")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("instrument tokens must be distinct")
        return value

    @field_validator("brokers")
    @classmethod
    def _distinct_brokers(cls, value: list[Broker]) -> list[Broker]:
        return list(dict.fromkeys(value))

    def strategy_class(self) -> type[Strategy]:
        """The class this config names (already checked at load)."""
        return resolve_strategy(self.strategy, self.source or self.id)

    def make_params(self) -> StrategyParams:
        """The validated ``Params`` instance of the strategy."""
        return self.strategy_class().Params(**self.params)


def resolve_strategy(name: str, source: str = "<config>") -> type[Strategy]:
    """A built-in name (``sma_cross``), ``package.module:ClassName``, or
    ``path/to/file.py:ClassName`` (relative to the config file's folder, else the
    working directory) to the class."""
    target = BUILTINS.get(name, name)
    if ":" not in target:
        known = ", ".join(sorted(BUILTINS))
        raise StrategyConfigError(
            source, "strategy", f"unknown strategy {name!r} (built-ins: {known}; "
            "or give 'package.module:ClassName' or 'file.py:ClassName')"
        )
    module_name, _, attr = target.rpartition(":")
    try:
        if module_name.endswith(".py"):
            module = _load_file(module_name, source)
        else:
            module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StrategyConfigError(
            source, "strategy", f"cannot import module {module_name!r}: {exc}"
            f"{_file_hint(module_name, attr, source)}"
        ) from exc
    except Exception as exc:  # ':Cls' or '.mod:Cls' (ValueError, TypeError),
        # or a module raising as it is imported: a traceback ended `check`, and `run`
        raise StrategyConfigError(
            source, "strategy", f"cannot import module {module_name!r}: "
            f"{type(exc).__name__}: {exc}") from exc
    cls = getattr(module, attr, None)
    if cls is None:
        found = sorted(n for n, v in vars(module).items()
                       if isinstance(v, type) and issubclass(v, Strategy) and v is not Strategy)
        raise StrategyConfigError(
            source, "strategy", f"{module_name!r} has no {attr!r}"
            + (f" (its strategies: {', '.join(found)})" if found else " (and no Strategy subclass)"))
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise StrategyConfigError(
            source, "strategy", f"{target!r} is not a Strategy subclass"
        )
    if not (isinstance(cls.Params, type) and issubclass(cls.Params, BaseModel)):
        # (its params are validated by it: a plain class ended the check in an AttributeError)
        raise StrategyConfigError(
            source, "strategy", f"{cls.__name__}.Params is not a StrategyParams subclass: "
            "declare it as class Params(StrategyParams) (from alpha_panda.strategy)")
    return cls


def _file_hint(module_name: str, attr: str, source: str) -> str:
    """What to write when ``module:Class`` names a file beside the YAML (or in the working
    directory) rather than an installed module: 'No module named' alone did not say."""
    if module_name.endswith(".py"):
        return ""
    name = f"{module_name.replace('.', '/')}.py"
    if (Path(source).parent / name).is_file() or (Path.cwd() / name).is_file():
        return f"; {name} is a file, not an installed module: strategy: {name}:{attr}"
    return ""


def _load_file(path: str, source: str) -> ModuleType:
    """Import a strategy module from a ``.py`` file, once per resolved path.

    The file is a module of a package made for its directory (``_directory_package``), so
    it imports the helper modules beside it relatively (``from .myhelpers import QTY``):
    two directories' ``myhelpers.py`` stay two modules, and a helper named like a module
    of the standard library (``json.py``) is ``<package>.json``, never ``json``. Nothing
    is added to ``sys.path``."""
    candidates = _candidates(path, source)
    for candidate in candidates:
        if candidate.is_file():
            resolved = candidate.resolve()
            package = _directory_package(resolved.parent)
            stem = resolved.stem
            if not stem.isidentifier():  # (a dot in it would name a package that is not)
                stem = f"_{hashlib.sha1(os.fsencode(resolved.name)).hexdigest()[:12]}"
            name = f"{package}.{stem}"
            if name in sys.modules:
                return sys.modules[name]
            spec = importlib.util.spec_from_file_location(name, resolved)
            if spec is None or spec.loader is None:
                break
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # the user's module failed to import: say where
                del sys.modules[name]
                raise ImportError(f"{resolved}: {type(exc).__name__}: {exc}"
                                  f"{_sibling_hint(exc, resolved.parent)}") from exc
            return module
    raise ImportError(f"no such file {path!r} (looked in {[str(c) for c in candidates]})")


def _candidates(path: str, source: str) -> list[Path]:
    """Where a strategy's ``file.py`` is looked for: beside its YAML file, else in the
    working directory (an absolute path: there only)."""
    return [Path(path)] if Path(path).is_absolute() else [
        Path(source).parent / path, Path.cwd() / path]


def located(config: StrategyConfig) -> StrategyConfig:
    """``config`` with a ``strategy: file.py:Class`` relative to its file made absolute, as
    it is to be stored: a row of the config store is read with no file beside it (its
    source is the store's URL), by each service process from its own directory."""
    target = BUILTINS.get(config.strategy, config.strategy)
    module_name, _, attr = target.rpartition(":")
    if not module_name.endswith(".py") or Path(module_name).is_absolute():
        return config
    for candidate in _candidates(module_name, config.source or config.id):
        if candidate.is_file():
            return config.model_copy(update={"strategy": f"{candidate.resolve()}:{attr}"})
    return config


def _directory_package(directory: Path) -> str:
    """The name of the package of the strategy files in ``directory`` (made and registered
    on first use): its modules are found in that directory only. Its ``__init__.py``, if
    any, is not run."""
    # (os.fsencode: a path may hold bytes that are not UTF-8)
    name = f"alpha_panda_user_{hashlib.sha1(os.fsencode(directory)).hexdigest()[:16]}"
    if name not in sys.modules:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(directory)]
        sys.modules[name] = importlib.util.module_from_spec(spec)
    return name


def _sibling_hint(exc: Exception, directory: Path) -> str:
    """What to write instead, when a strategy file imported a module beside it as if it
    were installed (``from myhelpers import QTY``)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return ""
    top = exc.name.partition(".")[0]
    found = (f"{top}.py" if (directory / f"{top}.py").is_file()
             else f"{top}/" if (directory / top).is_dir() else None)
    if found is None:
        return ""
    return (f": {found} is next to the strategy file; import it relatively, 'from .{top} "
            "import ...' (a bare import looks only in installed packages)")


def _first_error(exc: PydanticValidationError, prefix: str = "") -> tuple[str, str]:
    errors = exc.errors()
    parts = []
    field = ""
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"])
        loc = f"{prefix}{loc}" if loc else prefix.rstrip(".")
        # The error's own field leads the message already (StrategyConfigError).
        head = f"{loc}: " if field else ""
        field = field or loc
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        # A validator's own ValueError reads as the sentence it is, not "Value error, ...".
        msg = msg.removeprefix("Value error, ")
        if err["type"] == "string_type" and isinstance(err.get("input"), bool):
            # (`id: off` said "Input should be a valid string (got False)")
            msg += ("; YAML reads an unquoted yes, no, on, off, true or false as a boolean: "
                    "quote it")
        parts.append(f"{head}{msg}" + (
            f" (got {err['input']!r})" if err["type"] != "missing" and "input" in err
            and not isinstance(err["input"], Mapping) else ""
        ))
    return field, "; ".join(parts)


def config_from_mapping(data: Mapping[str, Any], source: str = "<mapping>") -> StrategyConfig:
    """Validate one strategy mapping (a parsed YAML file or a database row)."""
    if not isinstance(data, Mapping):
        raise StrategyConfigError(source, None, "expected a mapping of strategy settings")
    try:
        config = StrategyConfig.model_validate({**data, "source": source})
    except PydanticValidationError as exc:
        field, message = _first_error(exc)
        raise StrategyConfigError(source, field or None, message) from exc
    cls = resolve_strategy(config.strategy, source)
    try:
        params = cls.Params.model_validate(config.params)
    except PydanticValidationError as exc:
        field, message = _first_error(exc, "params.")
        raise StrategyConfigError(source, field, message) from exc
    except Exception as exc:  # a check of the strategy's own raising other than ValueError
        raise StrategyConfigError(source, "params", f"{type(exc).__name__}: {exc}") from exc
    try:
        RiskLimits.from_mapping(config.risk, "risk")
    except ConfigurationError as exc:
        raise StrategyConfigError(source, "risk", str(exc).removeprefix("risk: ")) from exc
    account = sorted(ACCOUNT_ONLY & set(config.risk))
    if account:  # the risk engine reads them at the account's level only: here, ignored
        example = json.dumps({"global": {account[0]: config.risk[account[0]]}})
        raise StrategyConfigError(source, "risk", (
            f"{account} limit the whole account, not one strategy: set them in "
            f"ALPHA_PANDA_RISK, e.g. '{example}'"))
    # Store the normalised params (defaults filled in) so every reader sees the same values.
    return config.model_copy(update={"params": params.model_dump(mode="json")})


class _KeyTwice(yaml.YAMLError):
    def __init__(self, key: object, first: int, second: int) -> None:
        where = f"line {first}" if first == second else f"lines {first} and {second}"
        super().__init__(f"{key}: given twice, on {where}")
        self.key, self.first, self.second = key, first, second


class _StrategyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping: PyYAML keeps the
    last silently, so a second ``risk:`` further down a file (written without the first's
    ``max_position``) dropped the limit with no word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # (<<: keys a later one overrides)
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = lines.get(key)
            except TypeError:  # an unhashable key: YAML's own error follows
                break
            if first is not None:
                raise _KeyTwice(key, first, line)
            lines[key] = line
        return super().construct_mapping(node, deep=deep)


def load_strategy_file(path: str | Path) -> StrategyConfig:
    """Load and fully validate one YAML strategy file."""
    p = Path(path)
    if p.suffix.lower() == ".py":
        # (`strategy new` writes NAME.py and NAME.yaml: the .py given read as "invalid YAML")
        settings = next((q for q in (p.with_suffix(".yaml"), p.with_suffix(".yml"))
                         if q.is_file()), None)
        raise StrategyConfigError(str(p), None, "a strategy's code, not its settings: " + (
            f"give {settings}" if settings is not None else
            f"a strategy runs from a YAML file naming its class (strategy: {p.name}:ClassName)"))
    try:
        # bytes, so YAML reads the encoding (UTF-8, or UTF-16 with its byte-order mark): as
        # text in the locale's encoding, a file saved as Latin-1 or by Notepad as "Unicode"
        # ended the command in a UnicodeDecodeError traceback, and a `run` with it in its
        # strategies directory with it, the other strategies not started
        raw = p.read_bytes()
        stream = io.BytesIO(raw)
        stream.name = str(p)  # YAML's errors name the file ('in "<byte string>"' else)
        data = yaml.load(stream, Loader=_StrategyLoader)  # (a SafeLoader)
    except OSError as exc:
        raise StrategyConfigError(str(p), None, f"cannot read: {exc}") from exc
    except _KeyTwice as exc:
        raise StrategyConfigError(str(p), None, (
            f"{exc}: YAML keeps the second only; keep one")) from exc
    except yaml.reader.ReaderError as exc:
        if exc.encoding == "unicode":  # a control character in good text: YAML's words
            raise StrategyConfigError(str(p), None, f"invalid YAML: {exc}") from exc
        line = raw[:exc.position].count(b"\n") + 1
        raise StrategyConfigError(str(p), None, (
            f"not UTF-8 text: byte 0x{exc.character:02x} on line {line} ({exc.reason}); "
            "save the file as UTF-8")) from exc
    except yaml.YAMLError as exc:
        raise StrategyConfigError(str(p), None, f"invalid YAML{_not_yaml(p)}: {exc}") from exc
    if not isinstance(data, Mapping) and (hint := _not_yaml(p)):
        raise StrategyConfigError(str(p), None, f"expected a mapping of strategy settings{hint}")
    return config_from_mapping(data, str(p))


def _not_yaml(p: Path) -> str:
    """What a strategy file is, said of one whose name says it is not."""
    return "" if p.suffix.lower() in (".yaml", ".yml") else " (a strategy file is .yaml or .yml)"


NOT_SIMULATED = ("not among the simulator's instruments: no tick reaches this strategy with "
                 "--feed sim (fine for a Kite instrument token with --feed kite)")


def unmodelled(config: StrategyConfig) -> str | None:
    """What of ``config``'s ``execution:`` its market orders do not get, or None.

    A market order that reaches the book at its signal's tick (``latency_ms: 0``) fills
    there at once, at the price the strategy saw plus ``slippage_bps``: the signal carries
    no order book and no traded volume, so the depth model and ``volume_participation``
    apply to the orders that meet a later tick (resting, or after a latency), not to it.
    """
    ex = config.execution
    if ex.latency_ms or (ex.slippage_model != "depth" and ex.volume_participation is None):
        return None
    what = " and ".join(x for x, on in (("slippage_model: depth", ex.slippage_model == "depth"),
                                        ("volume_participation", ex.volume_participation))
                        if on)
    return (f"execution: with latency_ms: 0 a market order fills at its signal's tick at once, "
            f"at the price the strategy saw plus slippage_bps: {what} apply to orders that meet "
            f"a later tick (resting, or after a latency: latency_ms: 50 walks the book of the "
            f"tick a market order reaches)")


def routed_to(configs: Iterable[StrategyConfig], broker: str) -> list[str]:
    """The ids of ``configs`` that trade on ``broker``."""
    return [c.id for c in configs if broker in c.brokers]


def unsimulated(
    configs: Iterable[StrategyConfig], simulated: Collection[int],
) -> list[tuple[StrategyConfig, list[int]]]:
    """Each config with its instrument tokens not in ``simulated`` (the simulator's).

    Not an error: live tokens come from Kite's instrument master, which the simulator's
    25 instruments do not cover; but on the simulator such a strategy silently never trades.
    """
    found = []
    for config in configs:
        missing = [t for t in config.instruments if t not in simulated]
        if missing:
            found.append((config, missing))
    return found


def load_strategy_dir(
    directory: str | Path,
) -> tuple[list[StrategyConfig], list[StrategyConfigError]]:
    """Load every ``*.yaml``/``*.yml`` file (any case; not hidden ones); broken files are
    reported, the others load.

    An id claimed by two or more files (valid or not) is ambiguous: none of those files
    loads, and each is reported naming the others. Which one was meant cannot be guessed,
    and a strategy trading the wrong instruments is worse than one not trading until the
    ids are made unique.
    """
    errors: list[StrategyConfigError] = []
    d = Path(directory)
    # Any case of the suffix (``Momentum.YAML`` was skipped without a word); hidden files
    # are not strategies (a Mac copy's ``._a.yaml``, an editor's lock ``.#a.yaml``).
    files = sorted(p for p in d.iterdir() if p.suffix.lower() in (".yaml", ".yml")
                   and not p.name.startswith(".")) if d.is_dir() else []
    if not d.is_dir():
        errors.append(StrategyConfigError(str(d), None, "not a directory"))
    claims: dict[str, list[tuple[str, StrategyConfig | None]]] = {}
    for path in files:
        try:
            config: StrategyConfig | None = load_strategy_file(path)
        except StrategyConfigError as exc:
            exc.strategy_id = _claimed_id(path)
            errors.append(exc)
            config = None
        strategy_id = config.id if config is not None else _claimed_id(path)
        if strategy_id is not None:
            claims.setdefault(strategy_id, []).append((str(path), config))
    configs: list[StrategyConfig] = []
    for strategy_id, claimants in claims.items():
        if len(claimants) == 1:
            if claimants[0][1] is not None:
                configs.append(claimants[0][1])
            continue
        for source, _ in claimants:
            others = [other for other, _ in claimants if other != source]
            errors.append(DuplicateStrategyId(source, strategy_id, others))
    configs.sort(key=lambda c: c.source)
    errors.sort(key=lambda e: e.source)  # stable: a file's own error before its duplicate id
    return configs, errors


def _claimed_id(path: Path) -> str | None:
    """The ``id`` an invalid file claims, if it gets as far as having one."""
    try:
        data = yaml.safe_load(path.read_bytes())
    except (OSError, yaml.YAMLError):
        return None
    value = data.get("id") if isinstance(data, Mapping) else None
    return value if isinstance(value, str) and value else None
