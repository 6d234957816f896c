"""A local Alpaca that speaks the real v2 wire protocol, on 127.0.0.1.

One aiohttp server serves the three things the bot talks to:

- REST (Trading API v2) under /v2/...: account, clock, assets, orders,
  positions; key headers checked; Alpaca's error bodies and status codes.
- The trading stream at /stream (and /stream/): no greeting, auth (both
  shapes), listen, then `trade_updates` events in binary frames, numbers as
  strings, per-execution `qty`/`price`, cumulative `order.filled_qty`.
- The market-data stream at /v2/{iex,sip,test,delayed_sip}: `connected`,
  auth, additive subscribe/unsubscribe, quotes `q` and trades `t`, several per
  frame. JSON text frames by default; msgpack binary frames (timestamps as
  msgpack Timestamp) when the handshake carries
  `Content-Type: application/msgpack`, as the SDK's own Stream sends.

Wire facts come from the project's notes on Alpaca's protocol; where those
were unsure, alpaca-trade-api 3.2's own parsing decided.

Fill assumptions, in plain words (the matching engine):

- The book is the last quote pushed for the symbol. A buy limit at or above
  the ask is marketable and fills at the ask price, up to the ask size; a
  sell limit at or below the bid fills at the bid, up to the bid size. A
  limit that is not marketable rests and never fills by itself. A market
  order fills like a marketable limit; what its side of the book could not
  fill (no bid to sell to) fills against the next quote pushed that shows one.
- A per-order FillPolicy overrides that (a fixed share count, several
  executions, a delay, fills sent before the POST's reply, the event a
  cancel produces). Policies are used one per order, in order; after that
  the default policy applies.
- A cancel of an open order answers 204 and then sends `canceled` (or the
  policy's cancel event) with the final cumulative `filled_qty`; a cancel of
  a filled order answers 422 "not cancelable"; an unknown id answers 404.
- Positions are kept from fills (quantity and average entry price).

Tests drive it from their own thread (the server runs in a thread of its
own); every `wait_*` has a timeout. Run by hand:

    python -m sim.alpaca [--port 8642]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import functools
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Optional

import msgpack
from aiohttp import WSMsgType, web

from sim.tape import LOT_SHARES, SIP_SIZES_IN_SHARES_FROM_NS, Tape, encode

KEY_ID = "PKFAKE0000000000000"
SECRET_KEY = "fake-secret-0000000000000000000000000000"
FEEDS = "iex|sip|test|delayed_sip"
OPEN_STATES = {"new", "accepted", "pending_new", "partially_filled"}
WAIT_S = 10.0
EXPECTED_ORDER_S = 1.0       # the replay's wait for an order the bot must send (see replay)
MS_NS = 1_000_000
DROP = 0                      # a Fault status: cut the connection, answer nothing
# Message type -> the subscription that carries it (corrections and cancels
# follow trades, as on Alpaca).
CHANNELS = {"q": "quotes", "t": "trades", "c": "trades", "x": "trades"}


def rfc3339(ns: int) -> str:
    """Integer ns since the epoch -> '2026-11-23T14:30:00.123456789Z'."""
    seconds, frac = divmod(ns, 1_000_000_000)
    head = dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{head}.{frac:09d}Z"


_DATA_TIME = re.compile(r"(\d{4}-\d\d-\d\d)(?:T(\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d))?$")


def _data_time(text: str) -> int:
    """A data API time parameter (RFC-3339, or a date: its midnight UTC) -> ns."""
    m = _DATA_TIME.match(text)
    if m is None:
        raise ValueError(text)
    day, clock, frac, zone = m.groups()
    stamp = dt.datetime.fromisoformat(
        f"{day}T{clock or '00:00:00'}{'+00:00' if zone in (None, 'Z') else zone}")
    return int(stamp.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def now_rfc3339() -> str:
    return rfc3339(time.time_ns())


def money(cents: int | Decimal) -> str:
    return str((Decimal(cents) / 100).quantize(Decimal("0.01")))


def error_body(status: int, message: str, code: Optional[int] = None) -> web.Response:
    """Alpaca's error shape: {"code": <8 digits>, "message": "..."}."""
    return web.json_response({"code": code or status * 100000, "message": message},
                             status=status)


@dataclass
class FillPolicy:
    """How the matching engine treats one order (see the module docstring)."""
    shares: Optional[int] = None      # None: up to the book's size; N: fill N if marketable
    pieces: tuple[int, ...] = ()      # split the fill into these executions
    delay_ms: int = 0                 # fill this long after the reply (a cancel may win)
    before_reply: bool = False        # send the fill events before answering the POST
    ioc: bool = False                 # with before_reply: a limit's unfilled rest is cancelled
                                      # before the reply too (the replay: the bot's own cancel
                                      # would come a moment later, and nothing fills it meanwhile)
    cancel_event: str = "canceled"    # what a cancel produces (e.g. "expired")
    marketable_only: bool = True      # False: fill even a non-marketable limit


@dataclass
class Fault:
    """A forced answer for one route: status (and message), `times` times."""
    status: int                       # or DROP: no answer, the connection is cut
    message: str
    times: Optional[int] = 1          # None: every time
    after: bool = False               # True: the request is carried out, *then* the
                                      # error is answered (an order placed, yet a 5xx)
    skip: int = 0                     # let this many requests through first (mid-way)


@dataclass
class Received:
    """What the fake was sent, for tests to judge the bot by."""
    orders: list[dict] = field(default_factory=list)     # POST bodies, in order
    cancels: list[str] = field(default_factory=list)     # DELETE /v2/orders/{id} ids
    order_times: list[float] = field(default_factory=list)  # perf_counter() at each POST
    requests: list[tuple[str, str]] = field(default_factory=list)
    request_times: list[float] = field(default_factory=list)   # time.monotonic()
    request_ports: list[int] = field(default_factory=list)     # the client's: its connection
    data_connections: int = 0
    trading_connections: int = 0
    data_connection_times: list[float] = field(default_factory=list)   # time.monotonic()
    prints: list[tuple[float, str, int]] = field(default_factory=list)  # perf_counter()
                                      # when each trade was sent, its symbol, price (cents)


class FakeAlpaca:
    """The server, its state, and a thread-safe API for tests."""

    def __init__(self, key_id: str = KEY_ID, secret_key: str = SECRET_KEY) -> None:
        self.key_id, self.secret_key = key_id, secret_key
        self.refuse_auth = False
        self.open_at = time.time() - 3600          # the market's hours, epoch seconds
        self.close_at = time.time() + 6 * 3600
        self.rate_reset_s = 60                     # X-RateLimit-Reset, from now
        self.account_extra: dict[str, Any] = {}      # e.g. {"trading_blocked": True}
        self.history: dict[str, dict[str, list[dict]]] = {}   # symbol -> quotes/trades, `t`
                                                              # in ns, served by the data API
        self.sip_delay_s: Optional[float] = None     # e.g. 900: the free plan's "no recent SIP"
        self.page_cap = 10000                        # items a page, at most (Alpaca may send
                                                     # fewer than asked, with a next page)
        self.closed_days: set[str] = set()           # weekdays the market is shut (holidays)
        self.early_closes: dict[str, str] = {}       # date -> close, e.g. {"2026-11-27": "13:00"}
        self.assets: dict[str, Optional[dict]] = {}  # per symbol: None (unknown: 404), or
                                                     # fields to change, e.g. {"tradable": False}
        # The symbols GET /v2/assets lists (with `assets`' changes): those the
        # tests and tools trade; start_bot and the replay add theirs.
        self.universe: set[str] = {"MU", "AMD", "SNAP", "MSFT", "AAPL", "SPY"}
        self.max_subscribe_symbols = 4000            # a subscribe message naming more: refused
        self.data_auth_error: Optional[tuple[int, str]] = None   # e.g. (406, "...")
        self.data_auth_error_times: Optional[int] = None   # that many sign-ins, then none
        self.subscribe_error: Optional[tuple[int, str]] = None   # e.g. (405, "symbol limit ...")
        self.default_policy = FillPolicy()
        self.policies: list[FillPolicy] = []
        self.faults: dict[tuple[str, str], Fault] = {}
        self.latency_s: dict[tuple[str, str], float] = {}
        self.book: dict[str, tuple[int, int, int, int]] = {}    # bid, ask, sizes
        self.orders: dict[str, dict] = {}                       # by Alpaca id
        self.by_client_id: dict[str, dict] = {}                 # the same, by client_order_id
        self.positions: dict[str, list] = {}                    # symbol -> [qty, cost]
        self.received = Received()
        self.subscriptions: dict[str, set[str]] = {"trades": set(), "quotes": set()}
        self.listening = False
        self.cut_handshakes = {"data": 0, "trading": 0}   # close at the next N sign-ins
        self.drop_after_subscribe = 0     # close the next N data sockets once subscribed
        self.listen_delay_s = 0.0         # acknowledge `listen` this late
        self.odd_sign_in_replies = 0      # answer the next N trading sign-ins {"data": null}
        self.compress_data = True         # offer permessage-deflate on the data stream (the
                                          # replay turns it off: on loopback it only costs CPU)
        self.wash_trade_check = False     # refuse an order while an opposite one of the same
                                          # symbol is open (Alpaca's "potential wash trade")
        self.peak_position: dict[str, int] = {}           # the most ever held, per symbol
        self.low_position: dict[str, int] = {}            # the least (below 0: sold short)
        # Clients that can tell when what a test awaits will never come (a bot
        # that exited, or that logged why it did not follow a signal): each
        # takes an optional text to look for and returns why, or None.
        self.watchers: list[Callable[[Optional[str]], Optional[str]]] = []
        self.on_push: list[Callable[[list[dict]], None]] = []   # shown each frame pushed
        self._data_ws: set[tuple[web.WebSocketResponse, bool]] = set()
        self._trading_ws: set[web.WebSocketResponse] = set()
        self._changed = threading.Condition()
        self._stir: Optional[asyncio.Event] = None   # _notify() on the loop (the replay)
        self._pongs: dict[bytes, asyncio.Future] = {}
        self._ping_ids = itertools.count(1)
        self.data_sent_at = 0.0                   # perf_counter() after the last data frame
        self.tape: Optional[Tape] = None          # set while replaying a tape
        self.replay_latency_ns = 0
        self.replay_sent = 0                      # events sent so far
        self.replay_done = False
        self.replay_late_orders = 0               # orders the bot had to send that came late
        self.replay_missing_orders = 0            # ... or never (replay's EXPECTED_ORDER_S)
        self._replay_clock: Callable[[], int] = lambda: 0
        self._print_times: dict[tuple[str, int], int] = {}   # (symbol, cents) -> last print
        self.executions: list[tuple[int, str, str, int, int]] = []  # t, symbol, side,
                                                                     # shares, cents
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._runner: Optional[web.AppRunner] = None
        self.port = 0

    # ---------------------------------------------------------------- server
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/v2/account", self.get_account)
        r.add_get("/v2/clock", self.get_clock)
        r.add_get("/v2/assets", self.list_assets)
        r.add_get("/v2/assets/{symbol}", self.get_asset)
        r.add_post("/v2/orders", self.post_order)
        r.add_get("/v2/orders", self.list_orders)
        r.add_delete("/v2/orders", self.cancel_all)
        r.add_get("/v2/orders:by_client_order_id", self.get_order_by_client_id)
        r.add_get("/v2/orders/{id}", self.get_order)
        r.add_delete("/v2/orders/{id}", self.cancel_order)
        r.add_get("/v2/positions", self.list_positions)
        r.add_get("/v2/positions/{symbol}", self.get_position)
        r.add_get("/v2/calendar", self.get_calendar)
        r.add_get("/v2/stocks/{symbol}/{kind:quotes|trades}", self.history_one)
        r.add_get("/v2/stocks/{kind:quotes|trades}", self.history_many)
        r.add_get("/stream", self.trading_stream)
        r.add_get("/stream/", self.trading_stream)
        r.add_get("/v2/{feed:" + FEEDS + "}", self.data_stream)
        return app

    async def serve(self, port: int = 0) -> None:
        self._runner = web.AppRunner(self.app(), handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def start(self) -> "FakeAlpaca":
        """Run the server in a thread of its own; return once it listens."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self.serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-alpaca", daemon=True)
        self._thread.start()
        if not ready.wait(WAIT_S):
            raise RuntimeError("fake Alpaca did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(WAIT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT_S)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables that point the bot (or the SDK) at this fake."""
        return {"APCA_API_KEY_ID": self.key_id, "APCA_API_SECRET_KEY": self.secret_key,
                "APCA_API_BASE_URL": self.url, "APCA_API_STREAM_URL": self.url,
                "APCA_API_DATA_URL": self.url}

    def _notify(self) -> None:
        """Something changed (called on the server's loop): wake the waiters,
        the tests' threads and the replay's coroutine alike."""
        with self._changed:
            self._changed.notify_all()
        if self._stir is not None:
            self._stir.set()

    async def _until(self, predicate: Callable[[], Any], timeout: float) -> bool:
        """On the server's loop: until predicate() holds (re-checked at each
        change, not by polling) or the timeout; whether it holds."""
        if self._stir is None:
            self._stir = asyncio.Event()
        deadline = time.perf_counter() + timeout
        while not predicate():
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            self._stir.clear()
            try:
                await asyncio.wait_for(self._stir.wait(), left)
            except asyncio.TimeoutError:
                return bool(predicate())
        return True

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        route = request.match_info.route.resource
        key = (request.method, route.canonical if route else request.path)
        self.received.requests.append(key)
        self.received.request_times.append(time.monotonic())
        self.received.request_ports.append((request.transport.get_extra_info("peername")
                                            or ("", 0))[1])
        if key == ("POST", "/v2/orders"):          # recorded even when a fault answers
            self.received.order_times.append(time.perf_counter())
            self.received.orders.append(await request.json())
        elif key == ("DELETE", "/v2/orders/{id}"):
            self.received.cancels.append(request.match_info["id"])
        self._notify()
        if (delay := self.latency_s.get(key)):
            await asyncio.sleep(delay)
        websocket = key[1].startswith(("/stream", "/v2/{feed"))   # they sign in by message
        headers = request.headers
        if not websocket and (self.refuse_auth or headers.get("APCA-API-KEY-ID") != self.key_id
                              or headers.get("APCA-API-SECRET-KEY") != self.secret_key):
            return error_body(401, "request is not authorized", 40110000)
        fault = self.faults.get(key)      # a websocket handshake can be refused too
        if fault is not None and fault.skip > 0:
            fault.skip -= 1
            fault = None
        if fault is None:
            return await handler(request)
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                del self.faults[key]
        self._notify()
        if fault.after:
            await handler(request)        # done, whatever the client is told
        if fault.status == DROP:
            request.transport.close()     # no answer at all: the connection is cut
            return web.Response(status=500)
        if fault.status == 429:
            resp = error_body(429, fault.message, 42910000)
            resp.headers.update({"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "0",
                                 "X-RateLimit-Reset": str(round(time.time() + self.rate_reset_s))})
            return resp
        return error_body(fault.status, fault.message)

    # ------------------------------------------------------------------ REST
    async def get_account(self, request: web.Request) -> web.Response:
        equity = "100000.00"
        body = {"id": str(uuid.UUID(int=1)), "account_number": "PA0000FAKE", "status": "ACTIVE",
                "crypto_status": "ACTIVE", "currency": "USD", "buying_power": "400000.00",
                "regt_buying_power": "200000.00", "non_marginable_buying_power": equity,
                "cash": equity, "portfolio_value": equity, "equity": equity,
                "last_equity": equity, "long_market_value": "0", "short_market_value": "0",
                "initial_margin": "0", "maintenance_margin": "0", "multiplier": "4",
                "trading_blocked": False, "transfers_blocked": False, "account_blocked": False,
                "trade_suspended_by_user": False, "shorting_enabled": True,
                "created_at": "2024-01-02T15:00:00Z"}
        body.update(self.account_extra)
        return web.json_response(body)

    async def get_clock(self, request: web.Request) -> web.Response:
        """Alpaca's clock, in New York time, from open_at/close_at."""
        now, day = time.time(), 86400

        def ny(t: float) -> str:
            return dt.datetime.fromtimestamp(t, dt.timezone(dt.timedelta(hours=-5))).isoformat()

        return web.json_response({
            "timestamp": ny(now), "is_open": self.open_at <= now < self.close_at,
            "next_open": ny(self.open_at if now < self.open_at else self.open_at + day),
            "next_close": ny(self.close_at if now < self.close_at else self.close_at + day)})

    def _asset(self, symbol: str) -> Optional[dict]:
        if symbol in self.assets and self.assets[symbol] is None:
            return None
        body = {"id": str(uuid.uuid5(uuid.NAMESPACE_OID, symbol)), "class": "us_equity",
                "exchange": "NASDAQ", "symbol": symbol, "name": symbol, "status": "active",
                "tradable": True, "marginable": True, "shortable": True,
                "easy_to_borrow": True, "fractionable": True}
        body.update(self.assets.get(symbol) or {})
        return body

    async def get_asset(self, request: web.Request) -> web.Response:
        body = self._asset(request.match_info["symbol"].upper())
        if body is None:
            return error_body(404, "asset not found", 40410000)
        return web.json_response(body)

    async def list_assets(self, request: web.Request) -> web.Response:
        """GET /v2/assets: every asset of the universe, filtered by `status`
        and `asset_class` as Alpaca filters them."""
        status, kind = request.query.get("status"), request.query.get("asset_class")
        found = [a for s in sorted(self.universe | set(self.assets)) if (a := self._asset(s))
                 and (status is None or a["status"] == status)
                 and (kind is None or a["class"] == kind)]
        return web.json_response(found)

    # ------------------------------------------------- market data history
    async def get_calendar(self, request: web.Request) -> web.Response:
        """Trading days between start and end (YYYY-MM-DD): weekdays that are
        not in `closed_days`, 09:30 to 16:00 or the early close."""
        try:
            first = dt.date.fromisoformat(request.query.get("start", "1970-01-01")[:10])
            last = dt.date.fromisoformat(request.query.get("end", "2100-01-01")[:10])
        except ValueError as exc:
            return error_body(422, f"invalid date: {exc}", 42210000)
        days, day = [], first
        while day <= last and len(days) < 1000:
            iso = day.isoformat()
            if day.weekday() < 5 and iso not in self.closed_days:
                days.append({"date": iso, "open": "09:30", "close": self.early_closes.get(iso, "16:00"),
                             "session_open": "0400", "session_close": "2000",
                             "settlement_date": (day + dt.timedelta(days=1)).isoformat()})
            day += dt.timedelta(days=1)
        return web.json_response(days)

    def _history_query(self, request: web.Request) -> tuple[dict, Optional[web.Response]]:
        """The data API's query parameters, checked as Alpaca checks them."""
        if not self.history:               # not Alpaca's answer: the simulator's own word
            return {}, error_body(404, NO_HISTORY)
        q = request.query
        try:
            start = _data_time(q["start"]) if "start" in q else 0
            end = _data_time(q["end"]) if "end" in q else time.time_ns()
        except ValueError:
            return {}, error_body(400, "invalid start or end: expected RFC-3339 or YYYY-MM-DD",
                                  40010000)
        limit = q.get("limit", "1000")
        if not limit.isdigit() or not 1 <= int(limit) <= 10000:
            return {}, error_body(400, f"invalid limit: {limit} (1 to 10000)", 40010000)
        feed = q.get("feed", "sip")
        if feed not in ("iex", "sip", "otc", "boats", "delayed_sip"):
            return {}, error_body(400, f"invalid feed: {feed}", 40010000)
        if q.get("sort", "asc") not in ("asc", "desc"):
            return {}, error_body(400, "invalid sort", 40010000)
        if (feed == "sip" and self.sip_delay_s is not None
                and end > time.time_ns() - self.sip_delay_s * 1e9):
            return {}, error_body(403, "subscription does not permit querying recent SIP data",
                                  42210000)
        offset = 0
        if token := q.get("page_token"):
            try:
                offset = int(base64.b64decode(token).decode().removeprefix("offset:"))
            except ValueError:
                return {}, error_body(400, "invalid page token", 40010000)
        return {"start": start, "end": end, "limit": int(limit), "offset": offset,
                "desc": q.get("sort") == "desc", "feed": feed}, None

    def _history_items(self, symbol: str, kind: str, query: dict) -> list[dict]:
        items = [i for i in self.history.get(symbol, {}).get(kind, [])
                 if query["start"] <= i["t"] <= query["end"]]
        return items[::-1] if query["desc"] else items

    def _page(self, items: list, query: dict) -> tuple[list, Optional[str]]:
        lo = query["offset"]
        hi = lo + min(query["limit"], self.page_cap)
        token = base64.b64encode(f"offset:{hi}".encode()).decode() if hi < len(items) else None
        return [in_lots({**i, "t": rfc3339(i["t"])}) if query["feed"] == "sip" and "bs" in i
                and i["t"] < SIP_SIZES_IN_SHARES_FROM_NS else {**i, "t": rfc3339(i["t"])}
                for i in items[lo:hi]], token

    async def history_one(self, request: web.Request) -> web.Response:
        """GET /v2/stocks/{symbol}/quotes|trades: one symbol, a page at a time."""
        query, error = self._history_query(request)
        if error is not None:
            return error
        symbol, kind = request.match_info["symbol"].upper(), request.match_info["kind"]
        page, token = self._page(self._history_items(symbol, kind, query), query)
        return web.json_response({kind: page, "symbol": symbol, "next_page_token": token})

    async def history_many(self, request: web.Request) -> web.Response:
        """GET /v2/stocks/quotes|trades?symbols=A,B: by symbol, then time; the
        page limit counts all symbols together."""
        query, error = self._history_query(request)
        if error is not None:
            return error
        kind = request.match_info["kind"]
        symbols = sorted(filter(None, request.query.get("symbols", "").upper().split(",")))
        if not symbols:
            return error_body(400, "symbols is required", 40010000)
        flat = [(s, i) for s in symbols for i in self._history_items(s, kind, query)]
        page, token = self._page([{**i, "_S": s} for s, i in flat], query)
        grouped: dict[str, list] = {}
        for item in page:
            grouped.setdefault(item.pop("_S"), []).append(item)
        return web.json_response({kind: grouped, "next_page_token": token})

    def load_history(self, tape: Tape, updates: Optional[dict[int, str]] = None) -> None:
        """Serve a tape's events as Alpaca's history (`updates`: event index ->
        the trade's `u` flag, e.g. "canceled")."""
        for i, e in enumerate(tape.events):
            book = self.history.setdefault(e[2], {"quotes": [], "trades": []})
            if e[0] == "q":
                book["quotes"].append({"t": e[1], "bx": "Q", "bp": e[3] / 10000, "bs": e[5],
                                       "ax": "Q", "ap": e[4] / 10000, "as": e[6], "c": ["R"],
                                       "z": "C"})
            else:
                item = {"t": e[1], "x": "Q", "p": e[3] / 10000, "s": e[4], "i": i,
                        "c": list(e[5]), "z": "C"}
                if updates and i in updates:
                    item["u"] = updates[i]
                book["trades"].append(item)

    async def post_order(self, request: web.Request) -> web.Response:
        return await self._place(await request.json())

    async def _place(self, body: dict) -> web.Response:
        """Create the order a submit asks for (or refuse it), as Alpaca does."""
        try:
            qty = int(body["qty"])
            side, kind, tif = body["side"], body["type"], body["time_in_force"]
            price = Decimal(str(body["limit_price"])) if kind == "limit" else None
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            return error_body(422, f"invalid order: {exc}", 40010001)
        # Alpaca: whole cents at $1 and above, four decimals under $1 (a 422
        # otherwise). A sub-penny limit is matched at the cent that never
        # improves it (a buy's rounded down, a sell's up).
        if price is not None and price != price.quantize(
                Decimal("0.01") if price >= 1 else Decimal("0.0001")):
            return error_body(422, f"invalid limit_price {price}. sub-penny increment does "
                              "not fulfill minimum pricing criteria", 42210000)
        limit = (None if price is None else
                 int((price * 100).to_integral_value(ROUND_FLOOR if side == "buy"
                                                     else ROUND_CEILING)))
        coid = body.get("client_order_id") or str(uuid.uuid4())
        if coid in self.by_client_id:
            return error_body(422, "client_order_id must be unique", 40010001)
        if self.wash_trade_check and any(
                o["symbol"] == body["symbol"] and o["side"] != side and o["status"] in OPEN_STATES
                for o in self.orders.values()):
            return error_body(403, "potential wash trade detected. use complex orders", 40310000)
        order = new_order(body["symbol"], side, kind, tif, qty, limit, coid)
        if self.tape is not None:       # in market time: its triggering print, or now
            order["_market_t"] = self._print_times.get((body["symbol"], limit),
                                                       self._replay_clock())
        self._add(order)
        policy = self.policies.pop(0) if self.policies else self.default_policy
        executions = self._plan(order, limit, policy)
        if policy.before_reply:
            await self._events(order, "new")
            await self._execute(order, executions)
            if policy.ioc and kind == "limit" and order["status"] in OPEN_STATES:
                self._close(order, "canceled")       # the rest, at once (see FillPolicy.ioc)
                await self._events(order, "canceled")
        else:
            asyncio.get_running_loop().create_task(self._after_reply(order, executions, policy))
        order["_cancel_event"] = policy.cancel_event
        return web.json_response(public(order))

    def _add(self, order: dict) -> None:
        self.orders[order["id"]] = order
        self.by_client_id[order["client_order_id"]] = order

    def _plan(self, order: dict, limit: Optional[int], policy: FillPolicy) -> list[tuple[int, int]]:
        """The executions (shares, price in cents) this order will get."""
        if self.tape is not None:        # replay: the book when the order arrives + latency
            book = self.tape.book_at(order["symbol"], order["_market_t"] + self.replay_latency_ns)
        else:
            book = self.book.get(order["symbol"])
        if book is None:
            return []
        bid, ask, bid_size, ask_size = book
        buy = order["side"] == "buy"
        price, size = (ask, ask_size) if buy else (bid, bid_size)
        marketable = limit is None or (limit >= ask if buy else limit <= bid)
        if not marketable and policy.marketable_only:
            return []
        if not marketable:
            price = limit
        total = policy.shares if policy.shares is not None else min(size, int(order["qty"]))
        pieces = policy.pieces or ((total,) if total > 0 else ())
        return [(n, price) for n in pieces]

    async def _after_reply(self, order: dict, executions: list, policy: FillPolicy) -> None:
        await asyncio.sleep(0)          # let the reply go out first
        await self._events(order, "new")
        if policy.delay_ms:
            await asyncio.sleep(policy.delay_ms / 1000)
        await self._execute(order, executions)

    async def _execute(self, order: dict, executions: list[tuple[int, int]]) -> None:
        for shares, price in executions:
            if order["status"] not in OPEN_STATES:
                return                  # a cancel won the race
            qty, filled = int(order["qty"]), int(order["filled_qty"])
            shares = min(shares, qty - filled)
            if shares <= 0:
                return
            notional = Decimal(order["filled_avg_price"] or 0) * filled + Decimal(price) / 100 * shares
            filled += shares
            order["filled_qty"] = str(filled)
            order["filled_avg_price"] = str((notional / filled).quantize(Decimal("0.0001")))
            done = filled >= qty
            order["status"] = "filled" if done else "partially_filled"
            if done:
                order["filled_at"] = now_rfc3339()
            self.executions.append((order.get("_market_t", self._replay_clock())
                                    + self.replay_latency_ns if self.tape else time.time_ns(),
                                    order["symbol"], order["side"], shares, price))
            signed = shares if order["side"] == "buy" else -shares
            pos = self.positions.setdefault(order["symbol"], [0, Decimal(0)])
            if signed > 0:
                pos[1] += Decimal(price) / 100 * shares
            elif pos[0]:
                pos[1] -= pos[1] * shares / pos[0]
            pos[0] += signed
            self.peak_position[order["symbol"]] = max(
                self.peak_position.get(order["symbol"], 0), pos[0])
            self.low_position[order["symbol"]] = min(
                self.low_position.get(order["symbol"], 0), pos[0])
            await self._events(order, "fill" if done else "partial_fill",
                               price=money(price), qty=str(shares), position_qty=str(pos[0]),
                               execution_id=str(uuid.uuid4()))

    async def list_orders(self, request: web.Request) -> web.Response:
        q = request.query
        status = q.get("status", "open")
        symbols = set(filter(None, q.get("symbols", "").upper().split(",")))
        limit = int(q.get("limit", 50))
        if not 1 <= limit <= 500:
            return error_body(422, "limit must be between 1 and 500", 40010001)
        until = q.get("until")
        found = [o for o in reversed(list(self.orders.values()))
                 if (status == "all" or (o["status"] in OPEN_STATES) == (status == "open"))
                 and (not symbols or o["symbol"] in symbols)
                 and (until is None or o["submitted_at"] < until)]
        return web.json_response([public(o) for o in found[:limit]])

    async def get_order(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return error_body(404, "order not found", 40410000)
        return web.json_response(public(order))

    async def get_order_by_client_id(self, request: web.Request) -> web.Response:
        order = self.by_client_id.get(request.query.get("client_order_id"))
        if order is None:
            return error_body(404, "order not found", 40410000)
        return web.json_response(public(order))

    async def cancel_order(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return error_body(404, "order not found", 40410000)
        if order["status"] == "canceled":
            return web.Response(status=204)
        if order["status"] not in OPEN_STATES:
            return error_body(422, f'order is already in "{order["status"]}" state', 42210000)
        self._close(order, order["_cancel_event"])
        asyncio.get_running_loop().create_task(self._events(order, order["_cancel_event"]))
        return web.Response(status=204)

    def _close(self, order: dict, event: str) -> None:
        status = {"canceled": "canceled", "expired": "expired", "rejected": "rejected",
                  "done_for_day": "done_for_day"}.get(event, event)
        order["status"] = status
        order[f"{'canceled' if status == 'canceled' else 'expired'}_at"] = now_rfc3339()

    async def cancel_all(self, request: web.Request) -> web.Response:
        result = []
        for order in list(self.orders.values()):
            if order["status"] in OPEN_STATES:
                self.received.cancels.append(order["id"])
                self._close(order, "canceled")
                await self._events(order, "canceled")
                result.append({"id": order["id"], "status": 200})
        self._notify()
        return web.json_response(result, status=207)

    def _position_body(self, symbol: str) -> Optional[dict]:
        qty, cost = self.positions.get(symbol, (0, Decimal(0)))
        if qty == 0:
            return None
        avg = (cost / qty).quantize(Decimal("0.0001")) if qty else Decimal(0)
        return {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_OID, symbol)), "symbol": symbol,
                "exchange": "NASDAQ", "asset_class": "us_equity", "qty": str(qty),
                "qty_available": str(qty), "side": "long" if qty > 0 else "short",
                "avg_entry_price": str(avg), "cost_basis": str(cost.quantize(Decimal("0.01")))}

    async def list_positions(self, request: web.Request) -> web.Response:
        return web.json_response([b for s in self.positions if (b := self._position_body(s))])

    async def get_position(self, request: web.Request) -> web.Response:
        body = self._position_body(request.match_info["symbol"].upper())
        if body is None:
            return error_body(404, "position does not exist", 40410000)
        return web.json_response(body)

    # --------------------------------------------------------- trading stream
    async def trading_stream(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)       # pongs are timed (the replay)
        await ws.prepare(request)
        self.received.trading_connections += 1
        self._notify()
        authed = False
        try:
            async for req in self._requests(ws):
                action = req.get("action")
                if action in ("auth", "authenticate") and await self._cut(ws, "trading"):
                    pass                          # gone in the middle of the sign-in
                elif action in ("auth", "authenticate") and self.odd_sign_in_replies > 0:
                    self.odd_sign_in_replies -= 1  # a reply of an unexpected shape, then a close
                    await ws.send_bytes(json.dumps({"stream": "authorization",
                                                    "data": None}).encode())
                    await ws.close()
                elif action in ("auth", "authenticate"):
                    data = req.get("data") or {}
                    key = req.get("key") or data.get("key_id")
                    secret = req.get("secret") or data.get("secret_key")
                    authed = (not self.refuse_auth and key == self.key_id
                              and secret == self.secret_key)
                    await ws.send_bytes(json.dumps({"stream": "authorization", "data": {
                        "status": "authorized" if authed else "unauthorized",
                        "action": "authenticate"}}).encode())
                    if not authed:
                        await ws.close()
                elif action == "listen":
                    if not authed:
                        await ws.send_bytes(json.dumps({"stream": "authorization", "data": {
                            "status": "unauthorized", "action": "listen"}}).encode())
                        continue
                    streams = [s for s in req["data"]["streams"] if s == "trade_updates"]
                    if self.listen_delay_s:
                        await asyncio.sleep(self.listen_delay_s)
                    if streams:
                        self._trading_ws.add(ws)
                        self.listening = True
                    await ws.send_bytes(json.dumps(
                        {"stream": "listening", "data": {"streams": streams}}).encode())
                    self._notify()
        finally:
            self._trading_ws.discard(ws)
            self.listening = bool(self._trading_ws)
            self._notify()
        return ws

    async def _events(self, order: dict, event: str, **extra: str) -> None:
        """Send one trade update for `order` to every listening client."""
        data = {"event": event, "timestamp": now_rfc3339(), **extra, "order": public(order)}
        await self._broadcast_trading({"stream": "trade_updates", "data": data})

    async def _broadcast_trading(self, message: dict) -> None:
        raw = json.dumps(message).encode()
        for ws in list(self._trading_ws):
            if not ws.closed:
                try:
                    await ws.send_bytes(raw)
                except ConnectionError:       # the client went away meanwhile
                    pass
        self._notify()

    # ----------------------------------------------------- market-data stream
    async def data_stream(self, request: web.Request) -> web.WebSocketResponse:
        # autoping off: the fake answers pings itself and times its own pings'
        # pongs (the replay's lockstep and the benchmark's loop check).
        ws = web.WebSocketResponse(autoping=False, compress=self.compress_data)
        await ws.prepare(request)
        packed = request.headers.get("Content-Type", "") == "application/msgpack"
        conn = (ws, packed)
        self.received.data_connections += 1
        self.received.data_connection_times.append(time.monotonic())
        self._notify()
        send = sender(ws, packed)
        await send([{"T": "success", "msg": "connected"}])
        authed = False
        try:
            async for req in self._requests(ws):
                action = req.get("action")
                if action == "auth" and await self._cut(ws, "data"):
                    pass                          # gone in the middle of the sign-in
                elif action == "auth":
                    if authed:
                        await send([{"T": "error", "code": 403, "msg": "already authenticated"}])
                    elif self.data_auth_error:
                        code, text = self.data_auth_error
                        if self.data_auth_error_times is not None:
                            self.data_auth_error_times -= 1
                            if self.data_auth_error_times <= 0:
                                self.data_auth_error = None
                        await send([{"T": "error", "code": code, "msg": text}])
                        await ws.close()
                    elif (self.refuse_auth or req.get("key") != self.key_id
                          or req.get("secret") != self.secret_key):
                        await send([{"T": "error", "code": 402, "msg": "auth failed"}])
                        await ws.close()
                    else:
                        authed = True
                        await send([{"T": "success", "msg": "authenticated"}])
                elif action in ("subscribe", "unsubscribe"):
                    if not authed:
                        await send([{"T": "error", "code": 401, "msg": "not authenticated"}])
                        continue
                    if action == "subscribe" and self.subscribe_error:
                        code, text = self.subscribe_error       # the subscription is unchanged
                        await send([{"T": "error", "code": code, "msg": text}])
                        continue
                    if max(len(req.get("trades") or ()), len(req.get("quotes") or ())) > \
                            self.max_subscribe_symbols:        # one message too large
                        await send([{"T": "error", "code": 400, "msg": "invalid syntax"}])
                        continue
                    for channel in ("trades", "quotes"):
                        names = set(req.get(channel) or ())
                        if action == "subscribe":
                            self.subscriptions[channel] |= names
                        else:
                            self.subscriptions[channel] -= names
                    self._data_ws.add(conn)
                    trades = sorted(self.subscriptions["trades"])
                    await send([{"T": "subscription", "trades": trades,
                                 "quotes": sorted(self.subscriptions["quotes"]), "bars": [],
                                 "updatedBars": [], "dailyBars": [], "statuses": [],
                                 "lulds": [], "corrections": trades, "cancelErrors": trades}])
                    if self.drop_after_subscribe:
                        self.drop_after_subscribe -= 1
                        await ws.close()          # up, then gone at once
                    self._notify()
                else:
                    await send([{"T": "error", "code": 400, "msg": "invalid syntax"}])
        finally:
            self._data_ws.discard(conn)
            if not self._data_ws:
                self.subscriptions = {"trades": set(), "quotes": set()}
            self._notify()
        return ws

    async def _broadcast_data(self, messages: list[dict]) -> None:
        wanted = [m for m in messages if m["S"] in self.subscriptions[CHANNELS[m["T"]]]]
        if not wanted:
            return
        for ws, packed in list(self._data_ws):
            if not ws.closed:
                await sender(ws, packed)(wanted)
        self.data_sent_at = time.perf_counter()
        self.received.prints.extend((self.data_sent_at, m["S"], round(m["p"] * 100))
                                    for m in wanted if m["T"] == "t")

    async def send_raw(self, frames: list[str]) -> float:
        """Send pre-encoded JSON frames to every client as fast as it takes them;
        return perf_counter() at the first send (for throughput benchmarks)."""
        start = time.perf_counter()
        for raw in frames:
            for ws, _ in list(self._data_ws):
                await ws.send_str(raw)
        self.data_sent_at = time.perf_counter()
        return start

    async def _requests(self, ws: web.WebSocketResponse) -> AsyncIterator[dict]:
        """A client's messages, decoded (JSON text, or msgpack binary as the
        SDK sends), until it closes; pings answered and pongs timed meanwhile."""
        async for msg in ws:
            if self._control(ws, msg):
                continue
            if msg.type == WSMsgType.TEXT:
                yield json.loads(msg.data)
            elif msg.type == WSMsgType.BINARY:
                yield msgpack.unpackb(msg.data)
            else:
                return

    async def _cut(self, ws: web.WebSocketResponse, stream: str) -> bool:
        """Close the socket in the middle of its sign-in, if a test asked for it."""
        if not self.cut_handshakes[stream]:
            return False
        self.cut_handshakes[stream] -= 1
        await ws.close()
        return True

    def _control(self, ws: web.WebSocketResponse, msg: Any) -> bool:
        """Answer a ping, time a pong; True if `msg` was one of them."""
        if msg.type == WSMsgType.PING:
            asyncio.get_running_loop().create_task(ws.pong(msg.data))
            return True
        if msg.type == WSMsgType.PONG:
            waiter = self._pongs.pop(bytes(msg.data), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(time.perf_counter())
            return True
        return False

    async def ping_data(self, timeout: float = WAIT_S) -> float:
        """Ping every market-data client; return the slowest pong's round trip (s).

        websockets answers a ping from its reader, so a pong that comes back
        late means the client's event loop was busy."""
        return await self._ping([ws for ws, _ in self._data_ws if not ws.closed], timeout)

    async def ping_trading(self, timeout: float = WAIT_S) -> float:
        """Ping every trading-stream client (the replay: once its order's events
        are sent, the bot has read them before the next market data)."""
        return await self._ping([ws for ws in self._trading_ws if not ws.closed], timeout)

    async def _ping(self, sockets: list, timeout: float) -> float:
        loop = asyncio.get_running_loop()
        waits = []
        start = time.perf_counter()
        for ws in sockets:
            payload = next(self._ping_ids).to_bytes(8, "big")
            waits.append(self._pongs.setdefault(payload, loop.create_future()))
            await ws.ping(payload)
        done = await asyncio.wait_for(asyncio.gather(*waits), timeout)
        return max(done, default=start) - start

    async def replay(self, tape: Tape, speed: Optional[float] = None,
                     latency_ms: float = 5.0,
                     triggers: tuple[dict[int, str], dict[int, tuple[str, int]]] = ({}, {}),
                     max_frame: int = 1000, acted_pings: int = 3,
                     room: Optional[Callable[[str, str, int], bool]] = None) -> None:
        """Stream `tape` through the market-data websocket, and match orders
        against its book.

        speed N: real time x N (the market clock runs from the first event),
        one frame per timestamp. speed None: as fast as the client keeps up:
        events go out in frames of up to `max_frame`; each print listed in
        `triggers` (likely, possible: the prints the bot may follow, with
        their symbol and level) goes in a frame of its own; the frames after
        it, which no rule can follow, go on at once (the bot reads them while
        this server writes the next), and before the next such print the
        fake pings `acted_pings` times, one round trip after the other (it
        pings every 20 frames too, so the client is never far behind). Each
        round trip is at least one turn of the bot's event loop: the first
        pong may come before the bot read the print (websockets answers a
        ping from its reader), by the second the bot has acted on it and, on
        Python 3.12 and later, sent its order (an eager task writes it before
        the handler returns, over the connection the bot opened before it
        subscribed: a new one would take round trips of its own); on 3.11 aiohttp writes a request's body a turn
        later, so a third (the default). The order was then in this server's
        socket before the last pong, and a few turns of this loop read it
        (after a likely print, one more round trip if it has not come). A
        likely print whose order the bot has room for (`room(symbol, side,
        held)`: the replay asks the bot's own Position) is the bot's order
        for sure: if the round trips did not bring it (a loaded machine can
        deliver two sockets' bytes out of order), this waits for it, up to
        EXPECTED_ORDER_S. If an order came, it waits until the order is done
        and its events read, and passes over the later prints of that level
        (one attempt per level: they cannot trigger).

        An order is matched against the book as it stood at the print that
        triggered it (the last such print of its symbol at its limit price)
        plus `latency_ms`; a market order, at the last event sent plus the
        latency.
        """
        self.tape, self.replay_latency_ns = tape, round(latency_ms * MS_NS)
        self.replay_sent, self.replay_done = 0, False
        self.replay_late_orders = self.replay_missing_orders = 0
        self._print_times = {}
        first_t, wall0 = tape.times[0], time.perf_counter()
        last_sent = [first_t]
        if speed:
            self._replay_clock = lambda: first_t + round((time.perf_counter() - wall0) * speed * 1e9)
        else:
            self._replay_clock = lambda: last_sent[0]
        sockets = [ws for ws, _ in self._data_ws]
        frame: list[str] = []
        since_ping = 0

        likely, possible = triggers
        tried: set[tuple[str, int]] = set()        # (symbol, level) the bot ordered at
        pending: Optional[tuple[int, tuple[str, int], Optional[str]]] = None  # the last trigger
        #                                         sent: orders before it, its level, likely side

        async def flush() -> None:
            nonlocal since_ping
            if not frame:
                return
            raw = "[" + ",".join(frame) + "]"
            for ws in sockets:
                await ws.send_str(raw)
            self.replay_sent += len(frame)
            frame.clear()
            since_ping += 1
            if since_ping >= 20:                     # the client is never far behind
                await self.ping_data()
                since_ping = 0

        async def settle() -> None:
            """Before the next print the bot may follow (and at the end): the
            last one's order, if any, has come and is done, and its events are
            read by the bot, so that the bot decides the next one as it would
            in real time. The frames sent in between (which no rule can
            follow) are read by the bot meanwhile: the two sides work at once."""
            nonlocal pending
            if pending is None:
                return
            before, level, side = pending
            pending = None
            await flush()
            for _ in range(acted_pings):             # everything sent so far acted on
                await self.ping_data()
            expected = side is not None and room is not None and room(
                level[0], side, self.positions.get(level[0], [0])[0])
            if await self._order_came(before, side is not None, expected) \
                    and await self._settle_orders():
                tried.add(level)

        for i, e in enumerate(tape.events):
            t = e[1]
            level = None if speed else possible.get(i)
            if level is not None and level not in tried:
                await settle()                       # the last trigger's outcome first
            trigger = level is not None and level not in tried
            if frame and ((speed and t != last_sent[0]) or trigger):
                await flush()                            # (a trigger goes in a frame alone)
            if speed and (delay := wall0 + (t - first_t) / 1e9 / speed - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            frame.append(encode(e, i))
            last_sent[0] = t
            if e[0] == "t" and e[3] % 100 == 0 and (speed or trigger):
                self._print_times[(e[2], e[3] // 100)] = t   # the print an order may follow
            if trigger:
                before = len(self.received.orders)
                await flush()
                pending = (before, level, likely.get(i))
            elif not speed and len(frame) >= max_frame:
                await flush()
        await settle()
        await flush()
        await self.ping_data()                       # the client has read it all
        self.replay_done = True
        self._notify()

    async def _order_came(self, before: int, likely: bool, expected: bool = False) -> bool:
        """Did a limit order come since `before`? It was in this server's socket
        before the last pong: a few turns of this loop read it. After a likely
        print, if it still has not come, one more round trip makes sure; an
        `expected` order is waited for (up to EXPECTED_ORDER_S, or until the
        bot is gone)."""
        def came() -> bool:
            return any(o.get("type") == "limit" for o in self.received.orders[before:])
        for _ in range(5):
            if came():
                return True
            await asyncio.sleep(0)
        if likely:
            await self.ping_data()
        if expected and not came():
            self.replay_late_orders += 1
            deadline = time.perf_counter() + EXPECTED_ORDER_S
            while not came() and time.perf_counter() < deadline and self.hopeless() is None:
                await asyncio.sleep(0.002)
            self.replay_missing_orders += not came()
        return came()

    async def _settle_orders(self, settle_s: float = 0.05) -> bool:
        """After an order that followed a print: wait (up to `settle_s`) until
        the orders are done and their events read by the bot, so that its
        next decision sees them, as a run in real time would. This is what
        makes a replay come out the same every time."""
        await self._until(lambda: len(self.orders) >= len(self.received.orders) and not any(
            o["status"] in OPEN_STATES for o in itertools.islice(reversed(self.orders.values()), 8)),
            settle_s)
        await self.ping_trading()
        return True

    # ------------------------------------------------- test API (any thread)
    def call(self, fn: Callable, *args: Any) -> Any:
        """Run `fn(*args)` (a coroutine function) on the server's loop."""
        return asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(WAIT_S)

    def push(self, *messages: dict) -> None:
        """Send quotes/trades (built by `quote`/`trade`) in one frame.

        Quotes also move the matching engine's book.
        """
        for m in messages:
            if m["T"] == "q":
                self.book[m["S"]] = (round(m["bp"] * 100), round(m["ap"] * 100), m["bs"], m["as"])
        self.call(self._broadcast_data, list(messages))
        for see in self.on_push:
            see(list(messages))
        for symbol in {m["S"] for m in messages if m["T"] == "q"}:
            self.call(self._fill_waiting_market_orders, symbol)

    async def _fill_waiting_market_orders(self, symbol: str) -> None:
        """A market order that found its side of the book empty (no bid to
        sell to) fills against the next quote that shows one."""
        for order in list(self.orders.values()):
            if (order["symbol"] == symbol and order["type"] == "market"
                    and order["status"] in OPEN_STATES and self.tape is None):
                left = int(order["qty"]) - int(order["filled_qty"])
                plan = self._plan(order, None, self.default_policy)
                await self._execute(order, [(min(n, left), p) for n, p in plan][:1])

    def wait_until(self, predicate: Callable[[], Any], what: str, timeout: float = WAIT_S,
                   hopeless: Optional[Callable[[], Optional[str]]] = None) -> Any:
        """Block until predicate() is truthy (re-checked on every change). A
        wait that `hopeless` says cannot end well fails at once, with its word."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (result := predicate()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
                if hopeless is not None and (why := hopeless()):
                    raise AssertionError(f"waiting for {what} in vain: {why}")
                self._changed.wait(min(left, 0.05))
        return result

    def hopeless(self, sign: Optional[str] = None) -> Optional[str]:
        """Why an order or cancel awaited can no longer come, from the watchers
        (a bot that exited, or logged `sign`); None while it still may."""
        return next((why for watch in self.watchers if (why := watch(sign))), None)

    def subscribed(self, symbol: str) -> bool:
        return symbol in self.subscriptions["quotes"] and symbol in self.subscriptions["trades"]

    def wait_subscribed(self, symbol: str, timeout: float = WAIT_S) -> None:
        """Until a client is subscribed to the symbol's quotes and trades."""
        self.wait_until(lambda: self.subscribed(symbol), f"a subscription to {symbol}", timeout)

    def wait_ready(self, symbol: str, timeout: float = WAIT_S) -> None:
        """Until a client listens to trade_updates and is subscribed to the
        symbol's quotes and trades (or a watcher says it never will)."""
        self.wait_until(lambda: self.listening and self.subscribed(symbol),
                        f"the bot to subscribe to {symbol} and listen", timeout, self.hopeless)

    def wait_orders(self, n: int, timeout: float = WAIT_S, sign: Optional[str] = None) -> list[dict]:
        """Until at least n orders were POSTed; return all of them. Fails at
        once when a watcher says they cannot come (see `hopeless`)."""
        return self.wait_until(lambda: len(self.received.orders) >= n and self.received.orders,
                               f"{n} order(s) (have {len(self.received.orders)})", timeout,
                               lambda: self.hopeless(sign))

    def wait_cancels(self, n: int, timeout: float = WAIT_S) -> list[str]:
        return self.wait_until(lambda: len(self.received.cancels) >= n and self.received.cancels,
                               f"{n} cancel(s) (have {len(self.received.cancels)})", timeout,
                               self.hopeless)

    def order_by_client_id(self, coid: str) -> dict:
        """The order placed with `coid`, once the fake has created it."""
        return self.wait_until(lambda: self.by_client_id.get(coid), f"order {coid} to be placed")

    def position_qty(self, symbol: str) -> int:
        return self.positions.get(symbol, [0])[0]

    def open_orders(self) -> list[dict]:
        return [o for o in self.orders.values() if o["status"] in OPEN_STATES]

    def force(self, method: str, route: str, status: int, message: str = "forced error",
              times: Optional[int] = 1, after: bool = False, skip: int = 0) -> None:
        """Answer `method route` (e.g. "POST", "/v2/orders") with `status`; with
        `after`, carry the request out first (an order placed, then a 5xx);
        with `skip`, only after that many requests went through."""
        self.faults[(method, route)] = Fault(status, message, times, after, skip)

    def send_garbage(self, stream: str, text: str = "<html>502 Bad Gateway</html>") -> None:
        """One frame that is not JSON, on the "data" or the "trading" stream."""
        sockets = ([ws for ws, _ in self._data_ws] if stream == "data"
                   else list(self._trading_ws))
        self.call(self._send_text, sockets, text)

    async def _send_text(self, sockets: list, text: str) -> None:
        for ws in sockets:
            await ws.send_str(text)

    def open_orders_of_run(self, prefix: str = "tick-taker-") -> list[dict]:
        """Open orders the bot placed (its client ids start with `prefix`)."""
        return [o for o in self.open_orders() if o["client_order_id"].startswith(prefix)]

    def send_update(self, order: dict, event: str, **extra: str) -> None:
        """Send a trade update by hand (e.g. for an order the bot never placed)."""
        self.call(functools.partial(self._events, order, event, **extra))

    def foreign_order(self, symbol: str, side: str = "buy", qty: int = 100,
                      filled: int = 100, price_cents: int = 1000) -> dict:
        """An order that exists at the 'broker' but was not placed by the bot."""
        order = new_order(symbol, side, "limit", "day", qty, price_cents,
                          f"manual-{uuid.uuid4().hex[:8]}")
        order.update(filled_qty=str(filled), filled_avg_price=money(price_cents),
                     status="filled" if filled >= qty else "partially_filled")
        self._add(order)
        return order

    def place_late(self, body: dict) -> dict:
        """Create, now, the order a submit asked for that the fake answered
        without creating (a 5xx, a timeout): a slow gateway, or a queue at the
        broker, creating it after all. Its `new` update and fills follow as
        for any order (the default policy: it fills against the book)."""
        self.call(self._place, body)
        return self.order_by_client_id(body["client_order_id"])

    def resting_order(self, symbol: str, side: str, qty: int, limit_cents: int,
                      coid: str) -> dict:
        """An open order already at the broker (e.g. left by an earlier run)."""
        order = new_order(symbol, side, "limit", "day", qty, limit_cents, coid)
        order["_cancel_event"] = "canceled"
        self._add(order)
        return order

    def hold(self, symbol: str, qty: int, price_cents: int) -> None:
        """A position already in the account."""
        self.positions[symbol] = [qty, Decimal(price_cents) / 100 * qty]

    def fill(self, order: dict, shares: int) -> None:
        """Execute `shares` of an open order now, at its limit (by hand)."""
        self.call(self._execute, order, [(shares, round(Decimal(order["limit_price"]) * 100))])

    def drop_data_stream(self) -> None:
        self.call(self._drop, [ws for ws, _ in self._data_ws])

    def drop_trading_stream(self) -> None:
        self.call(self._drop, list(self._trading_ws))

    async def _drop(self, sockets: list) -> None:
        for ws in sockets:
            await ws.close(code=1011, message=b"dropped by the fake")


NO_HISTORY = ("this simulated Alpaca serves no history: start it with `python -m sim.alpaca "
              "--history` (the bundled MSFT hour), or replay a file with --data")
BUNDLED = Path(__file__).resolve().parent / "data" / "msft_2012-06-21.csv.gz"


def in_lots(q: dict) -> dict:
    """A history quote as Alpaca served SIP quotes before 3 November 2025: its
    sizes in round lots of 100. Exact (530 shares: 5.3, an int when whole),
    so that a download of a tape in shares gives its shares back."""
    for key in ("bs", "as"):
        lots = q[key] / LOT_SHARES
        q[key] = int(lots) if lots == int(lots) else lots
    return q


def sender(ws: web.WebSocketResponse, packed: bool) -> Callable:
    """A sender in the connection's codec: msgpack binary or JSON text."""
    async def send(messages: list[dict]) -> None:
        if packed:
            await ws.send_bytes(msgpack.packb([_msgpack_times(m) for m in messages]))
        else:
            await ws.send_str(json.dumps([_json_times(m) for m in messages]))
    return send


def _json_times(m: dict) -> dict:
    """`t` as RFC-3339 (a string is sent as it is: a test's malformed time)."""
    return {**m, "t": rfc3339(m["t"])} if isinstance(m.get("t"), int) else m


def _msgpack_times(m: dict) -> dict:
    return ({**m, "t": msgpack.Timestamp.from_unix_nano(m["t"])}
            if isinstance(m.get("t"), int) else m)


def new_order(symbol: str, side: str, kind: str, tif: str, qty: int,
              limit_cents: Optional[int], coid: str) -> dict:
    """An Alpaca order object: every number a string, nullable fields null."""
    now = now_rfc3339()
    return {"id": str(uuid.uuid4()), "client_order_id": coid, "created_at": now,
            "updated_at": now, "submitted_at": now, "filled_at": None, "expired_at": None,
            "canceled_at": None, "failed_at": None, "replaced_at": None, "replaced_by": None,
            "replaces": None, "asset_id": str(uuid.uuid5(uuid.NAMESPACE_OID, symbol)),
            "symbol": symbol, "asset_class": "us_equity", "notional": None, "qty": str(qty),
            "filled_qty": "0", "filled_avg_price": None, "order_class": "", "order_type": kind,
            "type": kind, "side": side, "time_in_force": tif,
            "limit_price": money(limit_cents) if limit_cents is not None else None,
            "stop_price": None, "status": "new", "extended_hours": False, "legs": None,
            "trail_percent": None, "trail_price": None, "hwm": None}


def public(order: dict) -> dict:
    """The order as Alpaca shows it (without the fake's private keys)."""
    return {k: v for k, v in order.items() if not k.startswith("_")}


def quote(symbol: str, bid: int, ask: int, bid_size: int, ask_size: int, t_ns: int) -> dict:
    """A v2 quote message; prices in cents here, dollars on the wire."""
    return {"T": "q", "S": symbol, "bx": "V", "bp": bid / 100, "bs": bid_size,
            "ax": "V", "ap": ask / 100, "as": ask_size, "c": ["R"], "z": "C", "t": t_ns}


_trade_ids = iter(range(1, 1 << 62))


NO_FIELD = None               # trade(..., conditions=NO_FIELD): a print without `c`


def trade(symbol: str, price: int, size: int, t_ns: int,
          conditions: Optional[list[str]] = ("@",)) -> dict:
    """A v2 trade message; price in cents here, dollars on the wire."""
    m = {"T": "t", "S": symbol, "i": next(_trade_ids), "x": "V", "p": price / 100,
         "s": size, "z": "C", "t": t_ns}
    if conditions is not NO_FIELD:
        m["c"] = list(conditions)
    return m


def correction(symbol: str, price: int, size: int, t_ns: int) -> dict:
    """A v2 trade correction (`T: "c"`): an earlier print, corrected to this
    price and size."""
    return {"T": "c", "S": symbol, "x": "V", "oi": next(_trade_ids), "op": price / 100,
            "os": size, "oc": ["@"], "ci": next(_trade_ids), "cp": price / 100, "cs": size,
            "cc": ["@"], "z": "C", "t": t_ns}


def cancel_error(symbol: str, price: int, size: int, t_ns: int) -> dict:
    """A v2 trade cancel (`T: "x"`, action C) of a print at this price and size."""
    return {"T": "x", "S": symbol, "i": next(_trade_ids), "x": "V", "p": price / 100,
            "s": size, "a": "C", "z": "C", "t": t_ns}


def main() -> None:
    parser = argparse.ArgumentParser(description="A local fake Alpaca on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--history", action="store_true",
                        help="serve the bundled MSFT hour (2012-06-21 09:30-10:30 ET) through "
                        "the historical routes, so the replay's download, cache and range "
                        "path can be tried without keys")
    args = parser.parse_args()
    fake = FakeAlpaca()
    if args.history:
        fake.load_history(Tape(BUNDLED))

    async def run() -> None:
        await fake.serve(args.port)
        print(f"fake Alpaca listening on {fake.url}  (Ctrl+C to stop)")
        print("point the bot (or the replay) at it with:")
        for name, value in fake.env().items():
            print(f"  export {name}={value}")
        print("and run the bot with --live: the fake is not Alpaca's paper endpoint")
        if args.history:
            print("then replay the bundled hour through its historical routes with:\n"
                  "  python -m sim.replay --symbol MSFT --date 2012-06-21 --start 09:30 "
                  "--end 10:30")
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
