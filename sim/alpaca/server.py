"""FakeAlpaca: the server (its routes, its thread, the middleware that records
requests and answers forced faults) composed of one part per concern."""
from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any, Callable, Optional

from aiohttp import web

from sim.alpaca.account import AccountRoutes
from sim.alpaca.controls import Controls
from sim.alpaca.history import HistoryRoutes
from sim.alpaca.orders import OrderBook
from sim.alpaca.play import TapePlayer
from sim.alpaca.streams import DataStream, TradingStream
from sim.alpaca.wire import (DROP, FEEDS, KEY_ID, SECRET_KEY, WAIT_S, Fault, FillPolicy, Received,
                             error_body)
from sim.tape import Tape


class FakeAlpaca(AccountRoutes, HistoryRoutes, OrderBook, TradingStream, DataStream,
                 TapePlayer, Controls):
    """The server, its state, and a thread-safe API for tests."""

    def __init__(self, key_id: str = KEY_ID, secret_key: str = SECRET_KEY) -> None:
        self.key_id, self.secret_key = key_id, secret_key
        self.refuse_auth = False
        self.open_at = time.time() - 3600          # the market's hours, epoch seconds
        self.close_at = time.time() + 6 * 3600
        self._hours_pending: Optional[tuple] = None  # hours_from_first_read()
        self.rate_reset_s = 60                     # X-RateLimit-Reset, from now
        self.account_extra: dict[str, Any] = {}      # e.g. {"trading_blocked": True}
        self.history: dict[str, dict[str, list[dict]]] = {}   # symbol -> quotes/trades, `t`
                                                              # in ns, served by the data API
        self.synthetic_symbols: set[str] = set()     # made up on demand (serve_synthetic)
        self._made_up: set[tuple[str, Any]] = set()  # (symbol, day) made up so far
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
        self._last_stamp = 0                                    # live play: the last `t` (ns)
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
