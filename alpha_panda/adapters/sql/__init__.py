"""SQL adapter: the strategy configuration store (SQLAlchemy 2, Alembic migrations)."""

from alpha_panda.adapters.sql.store import StrategyStore, normalize_url, sqlite_url

__all__ = ["StrategyStore", "normalize_url", "sqlite_url"]
