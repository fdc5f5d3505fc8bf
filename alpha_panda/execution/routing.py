"""Routes each strategy's orders to the paper exchange that simulates its execution settings.

A strategy's YAML chooses its execution settings (costs, slippage, latency, partial fills,
market hours...); strategies that share all of them share one ``PaperExchange``. Ticks go to every exchange, in a fixed order, so the output order is
deterministic. Used identically by the paper trading engine and the backtest engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields

from alpha_panda.domain.errors import ConfigurationError
from alpha_panda.domain.events import MarketTick, Payload, Signal
from alpha_panda.execution.config import ExecutionConfig
from alpha_panda.execution.paper import PaperExchange

_Key = tuple[str, ...]
# Not compared: objects a test may hand in (the YAML never sets them).
_OBJECTS = frozenset({"cost_model", "calendar", "bands", "tick_sizes"})


def _key(config: ExecutionConfig) -> _Key:
    """Every setting of ``config`` that changes how orders fill, as sortable text: strategies
    share an exchange only when they agree on all of them."""
    return tuple(f"{f.name}={getattr(config, f.name)!r}" for f in fields(config)
                 if f.name not in _OBJECTS)


class PaperVenue:
    """One paper exchange per distinct execution configuration."""

    def __init__(
        self,
        configs: Mapping[str, ExecutionConfig],
        *,
        default: ExecutionConfig | None = None,
        seed: int = 0,
        broker: str = "paper",
        serve_unknown: bool = True,
    ) -> None:
        """``serve_unknown=False``: only the strategies in ``configs`` ever submit (the
        backtest), so the default exchange gets no ticks unless one of them uses it;
        ``exchange_for`` another strategy is then an error."""
        self._default = default or ExecutionConfig()
        self._serve_unknown = serve_unknown
        by_key: dict[_Key, PaperExchange] = {}
        self._by_strategy: dict[str, PaperExchange] = {}
        for strategy_id, config in sorted(configs.items()):
            k = _key(config)
            if k not in by_key:
                by_key[k] = PaperExchange(config, seed=seed, broker=broker)
            self._by_strategy[strategy_id] = by_key[k]
        self._fallback = by_key.get(_key(self._default)) or PaperExchange(
            self._default, seed=seed, broker=broker)
        by_key.setdefault(_key(self._default), self._fallback)
        if not serve_unknown:
            served = {_key(c) for c in configs.values()}
            by_key = {k: ex for k, ex in by_key.items() if k in served}
        self._exchanges = [by_key[k] for k in sorted(by_key)]
        self._only = self._exchanges[0] if len(self._exchanges) == 1 else None

    def exchange_for(self, strategy_id: str) -> PaperExchange:
        exchange = self._by_strategy.get(strategy_id)
        if exchange is not None:
            return exchange
        if not self._serve_unknown:
            raise ConfigurationError(f"no execution settings for strategy {strategy_id!r}")
        return self._fallback

    def sole_exchange(self) -> PaperExchange | None:
        """The exchange that gets every order and tick of this venue when there is just one
        (``serve_unknown=False``, one execution setting): calling it directly skips a hop."""
        return None if self._serve_unknown else self._only

    def submit(self, signal_id: str, signal: Signal, now_ns: int, *,
               flatten: bool = False) -> list[Payload]:
        exchange = self._by_strategy.get(signal.strategy_id)
        if exchange is None:
            exchange = self.exchange_for(signal.strategy_id)
        return exchange.submit(signal_id, signal, now_ns, flatten=flatten)

    def cancel(self, order_id: str, at_ns: int, reason: str = "user") -> list[Payload]:
        """The trader's or a strategy's cancel of one order (``PaperExchange.cancel``), on
        whichever exchange holds it; every exchange remembers it when none does yet."""
        for exchange in self._exchanges:
            if exchange.order(order_id) is not None:
                return exchange.cancel(order_id, at_ns, reason)
        for exchange in self._exchanges:
            exchange.cancel(order_id, at_ns, reason)
        return []

    def recorded(self, events: Iterable[Payload]) -> None:
        """``PaperExchange.recorded`` on every exchange of the venue (order ids are unique)."""
        kept = list(events)
        for exchange in self._exchanges:
            exchange.recorded(kept)

    def on_tick(self, tick: MarketTick) -> list[Payload]:
        if self._only is not None:
            return self._only.on_tick(tick)
        out: list[Payload] = []
        for exchange in self._exchanges:
            out += exchange.on_tick(tick)
        return out

    def needs_tick(self, instrument_token: int) -> bool:
        return any(ex.needs_tick(instrument_token) for ex in self._exchanges)

    def kill(self, at_ns: int, strategy_id: str | None = None, *,
             keep_exits: bool = False) -> list[Payload]:
        """The kill switch (or one strategy's halt) on every exchange of the venue
        (``PaperExchange.kill``)."""
        out: list[Payload] = []
        for exchange in self._exchanges:
            out += exchange.kill(at_ns, strategy_id, keep_exits=keep_exits)
        return out
