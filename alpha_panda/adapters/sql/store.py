"""``StrategyStore``: strategy configurations in a SQL database (SQLite or PostgreSQL).

The same schema as a YAML strategy file, one row per strategy, every write validated with
``strategy.config.config_from_mapping`` (so a row the runner would refuse never gets in),
every read validated again (a row edited by hand is reported, not trusted). The schema is
created and upgraded by the Alembic migrations shipped in this package: ``upgrade()``, run
at start, is idempotent and safe when several processes start together.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, delete, func, insert, select, text, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.pool import StaticPool

from alpha_panda.adapters.sql.schema import CONFIG_FIELDS, strategy_configs
from alpha_panda.domain.errors import (
    ConfigurationError,
    StrategyConfigError,
    TransientError,
    ValidationError,
)
from alpha_panda.strategy.config import StrategyConfig, config_from_mapping

MIGRATIONS = Path(__file__).parent / "migrations"
_ADVISORY_LOCK = 0x41_50_43_46  # "APCF": one migrator at a time on PostgreSQL


def normalize_url(url: str) -> str:
    """A SQLAlchemy URL with the installed driver: ``postgresql://`` → ``postgresql+psycopg://``."""
    return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)


def sqlite_url(path: str | Path) -> str:
    """The SQLAlchemy URL of a SQLite file (the embedded default, e.g. ``data/config.db``)."""
    return f"sqlite:///{Path(path)}"


class StrategyStore:
    """Strategy configurations in a SQL database.

    Args:
        url: SQLAlchemy URL: ``sqlite:///path.db`` (default kind), ``sqlite://`` (memory) or
            ``postgresql://user:pass@host:port/db`` (psycopg 3).
    """

    def __init__(self, url: str) -> None:
        self._url = normalize_url(url)
        try:
            parsed = make_url(self._url)
        except ArgumentError as exc:
            raise ConfigurationError(f"config store URL {url!r} is not a database URL") from exc
        self._safe_url = parsed.render_as_string(hide_password=True)
        kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            if parsed.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool  # one shared connection, or the memory db is lost
            else:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            kwargs["pool_pre_ping"] = True
        self._engine: Engine = create_engine(self._url, **kwargs)

    @property
    def url(self) -> str:
        """The database URL with the password hidden (for logs)."""
        return self._safe_url

    # ------------------------------------------------------------------ schema

    def upgrade(self) -> str:
        """Create or upgrade the schema to the newest migration; returns that revision."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._connect() as conn:
            if conn.dialect.name == "postgresql":
                # concurrent starts: the second waits, then finds nothing left to do
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_LOCK})
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        return self.revision() or ""

    def revision(self) -> str | None:
        """The schema revision the database is at (None before ``upgrade``)."""
        with self._connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @staticmethod
    def head() -> str:
        """The newest migration shipped with this version of Alpha Panda."""
        head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
        if head is None:
            raise ConfigurationError(f"no migrations found in {MIGRATIONS}")
        return head

    # ------------------------------------------------------------------ rows

    def list(self) -> list[dict[str, Any]]:
        """Every stored configuration as a YAML-schema mapping (plus ``enabled``), by id."""
        with self._connect() as conn:
            rows = conn.execute(select(strategy_configs).order_by(strategy_configs.c.id))
            return [_mapping(row._mapping) for row in rows]

    def get(self, strategy_id: str) -> dict[str, Any] | None:
        """One configuration, or None when no row has that id."""
        with self._connect() as conn:
            row = conn.execute(
                select(strategy_configs).where(strategy_configs.c.id == strategy_id)
            ).first()
        return None if row is None else _mapping(row._mapping)

    def put(self, config: dict[str, Any]) -> dict[str, Any]:
        """Validate and insert or replace one configuration; returns it normalised.

        Raises ``StrategyConfigError`` naming the field when the configuration is invalid;
        nothing is written then.
        """
        source = f"{self._safe_url}#{config.get('id', '?')}"
        valid = config_from_mapping(config, source)
        values = _dump(valid)
        for _ in range(2):
            try:
                with self._connect() as conn:
                    exists = conn.execute(
                        select(strategy_configs.c.id).where(strategy_configs.c.id == valid.id)
                    ).first()
                    if exists is None:
                        conn.execute(insert(strategy_configs).values(**values))
                    else:
                        conn.execute(
                            update(strategy_configs)
                            .where(strategy_configs.c.id == valid.id)
                            .values(**values, revision=strategy_configs.c.revision + 1,
                                    updated_at=func.now())
                        )
                return _dump(valid)
            except IntegrityError:
                continue  # another writer inserted the same id between our read and write
        raise TransientError(f"concurrent writes to strategy {valid.id!r}; try again")

    def seed(self, configs: Iterable[StrategyConfig | Mapping[str, Any]]) -> builtins.list[str]:
        """Insert the configurations whose id is not stored yet; returns the ids added.

        For a first start from YAML files (the samples): rows already in the store are left
        exactly as they are, so an operator's edits are never overwritten by a file.
        """
        valid = [
            c if isinstance(c, StrategyConfig)
            else config_from_mapping(c, f"{self._safe_url}#{c.get('id', '?')}")
            for c in configs
        ]
        added: builtins.list[str] = []
        with self._connect() as conn:
            stored = set(conn.execute(select(strategy_configs.c.id)).scalars())
            for config in valid:
                if config.id not in stored:
                    conn.execute(insert(strategy_configs).values(**_dump(config)))
                    stored.add(config.id)
                    added.append(config.id)
        return added

    def delete(self, strategy_id: str) -> None:
        """Remove a configuration; an unknown id is a ``ValidationError``."""
        with self._connect() as conn:
            result = conn.execute(delete(strategy_configs).where(strategy_configs.c.id == strategy_id))
            if result.rowcount == 0:
                raise ValidationError(f"no strategy {strategy_id!r} in the config store")

    def set_enabled(self, strategy_id: str, enabled: bool) -> None:
        """Enable or disable a strategy without touching the rest of its configuration."""
        with self._connect() as conn:
            result = conn.execute(
                update(strategy_configs)
                .where(strategy_configs.c.id == strategy_id)
                .values(enabled=enabled, revision=strategy_configs.c.revision + 1,
                        updated_at=func.now())
            )
            if result.rowcount == 0:
                raise ValidationError(f"no strategy {strategy_id!r} in the config store")

    def load(self) -> tuple[builtins.list[StrategyConfig], builtins.list[StrategyConfigError]]:
        """Every row validated as the runner needs it; invalid rows are reported, not loaded.

        Disabled strategies are included (``enabled=False``): the caller decides.
        """
        configs: builtins.list[StrategyConfig] = []
        errors: builtins.list[StrategyConfigError] = []
        for row in self.list():
            try:
                configs.append(config_from_mapping(row, f"{self._safe_url}#{row['id']}"))
            except StrategyConfigError as exc:
                errors.append(exc)
        return configs, errors

    def close(self) -> None:
        """Release the connection pool."""
        self._engine.dispose()

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except OperationalError as exc:
            raise TransientError(f"config store {self._safe_url}: {exc.orig}") from exc


def _dump(config: StrategyConfig) -> dict[str, Any]:
    data: dict[str, Any] = config.model_dump(mode="json")
    return {k: data[k] for k in CONFIG_FIELDS}


def _mapping(row: Any) -> dict[str, Any]:
    return {k: row[k] for k in CONFIG_FIELDS}
