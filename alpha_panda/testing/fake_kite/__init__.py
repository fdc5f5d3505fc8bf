"""A local fake of Zerodha Kite Connect v3: REST API and KiteTicker websocket.

Zerodha has no sandbox, so tests point the official ``kiteconnect`` client (``root``)
and our ticker client (``ws_url``) at this fake. It follows the documented requests,
responses and errors: ``{"status": "success", "data": ...}`` or ``{"status": "error",
"error_type": "TokenException", "message": ...}`` with the HTTP code, 429 on more than
``orders_per_second`` placements in a second, the binary ticker format (our own encoder,
written from the documented layout) and order postbacks as text messages. Like Zerodha's RMS
it rejects a fresh MIS order from the auto square-off time of its exchange (``mis_cutoffs``)
on its ``clock`` (the wall clock unless a test sets one).

In-process: ``with FakeKite() as kite: kite.root_url, kite.ws_url``. As a process:
``python -m alpha_panda.testing.fake_kite`` prints one JSON line with the URLs and
credentials, streams random-walk ticks to subscribers and fills market orders.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import date, datetime, timedelta, timezone
from datetime import time as day_time
from http.server import ThreadingHTTPServer
from typing import Any, Self

from websockets.asyncio.server import Server, ServerConnection

from alpha_panda.testing.fake_kite.ticker import FakeTicker

IST = timezone(timedelta(hours=5, minutes=30))
DEFAULT_INSTRUMENTS: tuple[tuple[int, str, str, str, float, int], ...] = (
    # token, exchange, tradingsymbol, segment, tick_size, lot_size
    (408065, "NSE", "INFY", "NSE", 0.05, 1),
    (738561, "NSE", "RELIANCE", "NSE", 0.05, 1),
    (341249, "NSE", "HDFCBANK", "NSE", 0.05, 1),
    (256265, "NSE", "NIFTY 50", "INDICES", 0.0, 0),
    (412675, "CDS", "USDINR26DECFUT", "CDS-FUT", 0.0025, 1),
)

# Zerodha's auto square-off times by exchange (support.zerodha.com, "What are the auto
# square-off timings for open intraday positions?": equity 3:20 PM, equity derivatives 3:25 PM,
# currency 4:45 PM). From then it takes no fresh MIS order; exits of MIS positions it does.
MIS_CUTOFFS: dict[str, day_time] = {"NSE": day_time(15, 20), "BSE": day_time(15, 20),
                                    "NFO": day_time(15, 25), "BFO": day_time(15, 25),
                                    "CDS": day_time(16, 45)}

class KiteError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


class FakeKite(FakeTicker):
    """Fake Kite REST + ticker servers on free ports, with knobs for tests (the ticker's
    side: ``fake_kite.ticker``)."""

    def __init__(self, *, api_key: str = "fake_api_key", api_secret: str = "fake_api_secret",
                 user_id: str = "AB1234", orders_per_second: int = 10,
                 auto_fill_market: bool = True,
                 clock: Callable[[], int] = time.time_ns) -> None:
        self.api_key, self.api_secret, self.user_id = api_key, api_secret, user_id
        self.orders_per_second = orders_per_second
        self.auto_fill_market = auto_fill_market
        self.clock = clock  # Kite's time (ns since the epoch): order times, the MIS cut-off
        self.mis_cutoffs = dict(MIS_CUTOFFS)
        self.request_tokens: set[str] = {"fake_request_token"}
        self.access_tokens: set[str] = set()
        self.instruments = list(DEFAULT_INSTRUMENTS)
        self.prices: dict[int, int] = {}  # paise; market orders fill here (default 100.00)
        # the account's cash at the day's start and the day's pay-ins, in rupees as Kite
        # sends them; the margins' other figures follow from the day's trades
        self.opening_balance = 500_000.0
        self.intraday_payin = 0.0
        self.reject_symbols: dict[str, str] = {}  # tradingsymbol -> RMS reason
        self.orders: dict[str, dict[str, Any]] = {}
        self.trades: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.placements = 0
        self.rate_limited = 0
        self.fail_next: deque[KiteError] = deque()
        self.place_delay_s = 0.0  # answer placements late (the order is placed at once)
        # the next this many placements are placed, but answered as a proxy's bare error
        # page (502, no body, no Content-Type): what the order came to is unknown
        self.bare_place_answers = 0
        # placements reach the book only this long after they arrive (Kite slow under load):
        # a client that gave up waiting and looks at once does not find the order yet
        self.place_register_delay_s = 0.0
        # Kite's own tags on an order (its market protection's: "mktp", "mktp:2.00"), put
        # before the order's: its ``tags`` come in no guaranteed order (kite.trade forum,
        # "place_order tag and tags"), ``tag`` their first
        self.system_tags: list[str] = []
        self._place_times: deque[float] = deque()
        self._ids = itertools.count(250_000_000_000_001)
        self._lock = threading.RLock()
        self._http: ThreadingHTTPServer | None = None
        self._ws_port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws: Server | None = None
        self.ws_clients: dict[ServerConnection, dict[int, str]] = {}  # token -> mode
        self.ws_connects = 0
        self.ws_messages: list[dict[str, Any]] = []
        self._streams: list[Future[None]] = []  # ``start_streaming``'s, cancelled by ``stop``
        self._volume: dict[int, int] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self, port: int = 0, ws_port: int = 0) -> Self:
        """Serve REST on ``port`` and the ticker on ``ws_port`` (0: any free one)."""
        from alpha_panda.testing.fake_kite.http import handler_for

        self._ws_port = ws_port
        self._http = ThreadingHTTPServer(("127.0.0.1", port), handler_for(self))
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True,
                         name="fake-kite-http").start()
        ready = threading.Event()
        threading.Thread(target=self._run_ws, args=(ready,), daemon=True, name="fake-kite-ws").start()
        if not ready.wait(5) or self._ws is None:
            self.stop()
            raise OSError(f"the fake Kite's ticker could not listen on port {ws_port}")
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._loop is not None and self._ws is not None:
            for stream in self._streams:  # (ended before the loop stops: none left pending)
                stream.cancel()
            self._call(self._close_ws())
            self._loop.call_soon_threadsafe(self._loop.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root_url(self) -> str:
        assert self._http is not None
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def ws_url(self) -> str:
        assert self._ws is not None
        port = next(iter(self._ws.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    # ------------------------------------------------------------------ REST
    def checksum(self, request_token: str) -> str:
        return hashlib.sha256((self.api_key + request_token + self.api_secret).encode()).hexdigest()

    def expire_tokens(self) -> None:
        """Kite's 06:00 flush: every access token stops working."""
        with self._lock:
            self.access_tokens.clear()

    def handle(self, method: str, path: str, params: dict[str, str], auth: str | None) -> Any:
        """One REST call; returns ``data`` or raises ``KiteError``."""
        with self._lock:
            self.requests.append((method, path))
            if path == "/session/token" and method == "POST":
                return self._token(params)
            self._authorise(auth)
            if self.fail_next:
                raise self.fail_next.popleft()
            parts = [p for p in path.split("/") if p]
            if path == "/user/profile":
                return {"user_id": self.user_id, "user_name": "Fake Trader", "user_shortname": "Fake",
                        "email": "fake@example.com", "user_type": "individual", "broker": "ZERODHA",
                        "exchanges": ["NSE", "BSE", "CDS"], "products": ["CNC", "MIS", "NRML"],
                        "order_types": ["MARKET", "LIMIT", "SL", "SL-M"]}
            if path == "/orders" and method == "GET":
                return [dict(o) for o in self.orders.values()]
            if path == "/trades":
                return [dict(t) for t in self.trades]
            if path == "/portfolio/positions":
                return self._positions()
            if parts[:2] == ["user", "margins"] and method == "GET":
                return self._margins(parts[2] if len(parts) == 3 else None)
            if parts[0] == "orders" and method == "POST" and len(parts) == 2:
                return {"order_id": self._place(parts[1], params)}
            if parts[0] == "orders" and method == "GET" and len(parts) == 3 and parts[2] == "trades":
                return [dict(t) for t in self.trades if t["order_id"] == parts[1]]
            if parts[0] == "orders" and method == "GET" and len(parts) == 2:
                if parts[1] not in self.orders:
                    raise KiteError(400, "InputException", "Couldn't find that `order_id`.")
                return [dict(self.orders[parts[1]])]
            if parts[0] == "orders" and method == "DELETE" and len(parts) == 3:
                return {"order_id": self.cancel(parts[2])}
            raise KiteError(404, "GeneralException", f"Route not found: {method} {path}")

    def instruments_csv(self, exchange: str | None) -> str:
        rows = [("instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,"
                "tick_size,lot_size,instrument_type,segment,exchange")]
        for token, exch, sym, seg, tick, lot in self.instruments:
            if exchange is None or exchange == exch:
                kind = "FUT" if seg.endswith("FUT") else "EQ"
                rows.append(f"{token},{token >> 8},{sym},{sym},0,,0,{tick},{lot},{kind},{seg},{exch}")
        return "\n".join(rows) + "\n"

    def connect_login(self, api_key: str) -> str:
        """Kite's login page (``GET /connect/login?api_key=...``), the trader logged in at
        once: a fresh request token (each works once, as Kite's), as Kite's redirect
        carries it (``request_token=...``, which ``alpha-panda auth login`` takes)."""
        with self._lock:
            if api_key != self.api_key:
                raise KiteError(400, "InputException", "Invalid `api_key`.")
            token = f"fake_request_token_{next(self._ids)}"
            self.request_tokens.add(token)
            return f"request_token={token}"

    def _token(self, params: dict[str, str]) -> dict[str, Any]:
        token = params.get("request_token", "")
        if params.get("api_key") != self.api_key or token not in self.request_tokens:
            raise KiteError(403, "TokenException", "Token is invalid or has expired.")
        if params.get("checksum") != self.checksum(token):
            raise KiteError(403, "TokenException", "Invalid `checksum`.")
        self.request_tokens.discard(token)  # a request token works once
        access = hashlib.sha256(f"{token}{time.time_ns()}".encode()).hexdigest()[:32]
        self.access_tokens.add(access)
        return {"user_id": self.user_id, "user_name": "Fake Trader", "api_key": self.api_key,
                "access_token": access, "public_token": access[:8], "refresh_token": "",
                "login_time": self._stamp(), "broker": "ZERODHA", "user_type": "individual"}

    def _authorise(self, auth: str | None) -> None:
        expected = f"token {self.api_key}:"
        if not auth or not auth.startswith(expected) or auth[len(expected):] not in self.access_tokens:
            raise KiteError(403, "TokenException", "Incorrect `api_key` or `access_token`.")

    def _symbol(self, exchange: str, symbol: str) -> int:
        for token, exch, sym, *_ in self.instruments:
            if exch == exchange and sym == symbol:
                return token
        raise KiteError(400, "InputException", f"Invalid `tradingsymbol`: {exchange}:{symbol}")

    def _place(self, variety: str, p: dict[str, str]) -> str:
        now = time.monotonic()
        while self._place_times and now - self._place_times[0] >= 1.0:
            self._place_times.popleft()
        if len(self._place_times) >= self.orders_per_second:
            self.rate_limited += 1
            raise KiteError(429, "NetworkException", "Too many requests")
        self._place_times.append(now)
        for name in ("exchange", "tradingsymbol", "transaction_type", "quantity", "product",
                     "order_type"):
            if not p.get(name):
                raise KiteError(400, "InputException", f"Missing `{name}`")
        if p["order_type"] in ("MARKET", "SL-M") and "market_protection" not in p:
            raise KiteError(400, "InputException", "`market_protection` is required for "
                                                   "market and stop-loss market orders")
        if len(p.get("tag", "")) > 20:
            raise KiteError(400, "InputException", "Tag length should be at most 20 characters")
        token = self._symbol(p["exchange"], p["tradingsymbol"])
        if any(t == token and seg == "INDICES" for t, _, _, seg, *_ in self.instruments):
            # (the wording is ours: Kite refuses orders on an index, its text unrecorded here)
            raise KiteError(400, "InputException",
                            f"{p['tradingsymbol']} is an index and cannot be traded")
        self.placements += 1
        oid = str(next(self._ids))
        qty = int(p["quantity"])
        order = {
            "placed_by": self.user_id, "order_id": oid, "exchange_order_id": None,
            "parent_order_id": None, "status": "OPEN", "status_message": None,
            "order_timestamp": self._stamp(), "exchange_timestamp": None, "variety": variety,
            "exchange": p["exchange"], "tradingsymbol": p["tradingsymbol"],
            "instrument_token": token, "order_type": p["order_type"],
            "transaction_type": p["transaction_type"], "validity": p.get("validity", "DAY"),
            "product": p["product"], "quantity": qty, "disclosed_quantity": 0,
            "price": float(p.get("price", 0) or 0), "trigger_price": float(p.get("trigger_price", 0) or 0),
            "average_price": 0.0, "filled_quantity": 0, "pending_quantity": qty,
            "cancelled_quantity": 0, "market_protection": int(p.get("market_protection", 0)),
            "tag": p.get("tag") or None, "tags": [p["tag"]] if p.get("tag") else [], "guid": oid,
        }
        if self.system_tags:
            tags = [*self.system_tags, *([p["tag"]] if p.get("tag") else [])]
            order["tags"], order["tag"] = tags, tags[0]
        self.orders[oid] = order
        reason = self.reject_symbols.get(p["tradingsymbol"]) or self._mis_block(p, token)
        if reason is not None:
            self._update(order, status="REJECTED", status_message=reason, pending_quantity=0)
        elif p["order_type"] == "MARKET" and self.auto_fill_market:
            self.fill(oid, qty, self.prices.get(token, 100_00))
        else:
            self._postback(order)
        return oid

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock() // 1_000_000_000, IST)

    def _stamp(self) -> str:
        return self._now().strftime("%Y-%m-%d %H:%M:%S")

    def _mis_block(self, p: dict[str, str], token: int) -> str | None:
        """Zerodha's RMS from the auto square-off time: a fresh MIS order is placed (Kite
        answers with its order id) and REJECTED at once, its ``status_message`` the RMS's
        (the wording is ours: Zerodha's text varies); an MIS order that only takes the day's
        MIS position in the instrument towards flat passes."""
        cutoff = self.mis_cutoffs.get(p["exchange"])
        now = self._now()
        if p["product"] != "MIS" or cutoff is None or now.time() < cutoff:
            return None
        held = self._mis_position(token, now.date())
        sign = 1 if p["transaction_type"] == "BUY" else -1
        if sign * held < 0 and int(p["quantity"]) <= abs(held):
            return None
        return (f"RMS:Auto Square Off Block: fresh MIS orders are not allowed after "
                f"{cutoff:%H:%M}; exit your MIS positions only")

    def _mis_position(self, token: int, day: date) -> int:
        """The account's net MIS quantity in ``token`` from the trades of ``day``."""
        return sum((1 if t["transaction_type"] == "BUY" else -1) * t["quantity"]
                   for t in self.trades if t["instrument_token"] == token
                   and t["product"] == "MIS" and t["fill_timestamp"].startswith(str(day)))

    def fill(self, order_id: str, quantity: int, price_paise: int) -> None:
        """Execute ``quantity`` of an open order at ``price_paise`` (a trade + postback)."""
        with self._lock:
            o = self.orders[order_id]
            done = o["filled_quantity"] + quantity
            if done > o["quantity"] or o["status"] in ("COMPLETE", "CANCELLED", "REJECTED"):
                raise ValueError(f"cannot fill {quantity} of order {order_id}")
            avg = (o["average_price"] * o["filled_quantity"] + price_paise / 100 * quantity) / done
            now = self._stamp()
            self.trades.append({
                "trade_id": str(len(self.trades) + 10_000_001), "order_id": order_id,
                "exchange": o["exchange"], "tradingsymbol": o["tradingsymbol"],
                "instrument_token": o["instrument_token"], "product": o["product"],
                "average_price": price_paise / 100, "quantity": quantity,
                "exchange_order_id": o["exchange_order_id"], "transaction_type": o["transaction_type"],
                "fill_timestamp": now, "order_timestamp": now[11:], "exchange_timestamp": now})
            self._update(o, filled_quantity=done, pending_quantity=o["quantity"] - done,
                         average_price=round(avg, 4),
                         status="COMPLETE" if done == o["quantity"] else "OPEN")

    def cancel(self, order_id: str) -> str:
        with self._lock:
            o = self.orders.get(order_id)
            # Zerodha: every order not COMPLETE, CANCELLED or REJECTED is pending and takes
            # a cancel (kite.trade forum, "How to cancel all pending orders?")
            if o is None or o["status"] in ("COMPLETE", "CANCELLED", "REJECTED"):
                raise KiteError(400, "InputException", "Order cannot be cancelled.")
            self._update(o, status="CANCELLED", cancelled_quantity=o["pending_quantity"],
                         pending_quantity=0)
            return order_id

    def _update(self, order: dict[str, Any], **changes: Any) -> None:
        order.update(changes, exchange_update_timestamp=self._stamp())
        self._postback(order)

    def _margins(self, segment: str | None) -> dict[str, Any]:
        """Kite's funds and margins (``GET /user/margins[/:segment]``), as its documented
        response: ``available.cash`` is the cash at the day's start plus the day's pay-ins,
        which the day's trades leave as it is; they use margin (``utilised.debits``: here
        the full value of the day's buys, as a CNC buy uses) and so lower ``live_balance``
        and ``net``."""
        bought = sum(t["average_price"] * t["quantity"] for t in self.trades
                     if t["transaction_type"] == "BUY")
        cash = self.opening_balance + self.intraday_payin
        equity = {
            "enabled": True, "net": cash - bought,
            "available": {"adhoc_margin": 0, "cash": cash, "opening_balance": self.opening_balance,
                          "live_balance": cash - bought, "collateral": 0,
                          "intraday_payin": self.intraday_payin},
            "utilised": {"debits": bought, "exposure": 0, "m2m_realised": 0, "m2m_unrealised": 0,
                         "option_premium": 0, "payout": 0, "span": 0, "holding_sales": 0,
                         "turnover": 0, "liquid_collateral": 0, "stock_collateral": 0,
                         "delivery": 0}}
        commodity = {"enabled": False, "net": 0, "available": dict.fromkeys(equity["available"], 0),
                     "utilised": dict.fromkeys(equity["utilised"], 0)}
        if segment is None:
            return {"equity": equity, "commodity": commodity}
        if segment not in ("equity", "commodity"):
            raise KiteError(400, "InputException", f"Invalid segment: {segment}")
        return equity if segment == "equity" else commodity

    def _positions(self) -> dict[str, Any]:
        net: dict[tuple[int, str], dict[str, Any]] = {}
        for t in self.trades:
            key = (t["instrument_token"], t["product"])
            pos = net.setdefault(key, {"tradingsymbol": t["tradingsymbol"], "exchange": t["exchange"],
                                       "instrument_token": t["instrument_token"],
                                       "product": t["product"], "quantity": 0, "buy_quantity": 0,
                                       "sell_quantity": 0, "multiplier": 1})
            side = "buy_quantity" if t["transaction_type"] == "BUY" else "sell_quantity"
            pos[side] += t["quantity"]
            pos["quantity"] = pos["buy_quantity"] - pos["sell_quantity"]
        return {"net": list(net.values()), "day": list(net.values())}
