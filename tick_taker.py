#!/usr/bin/env python3
"""tick-taker: an order-book-imbalance tick follower for Alpaca.

A faithful, corrected rebuild of Alpaca's 2019 "example-hftish". It watches
one stock's one-cent bid/ask level. When the level moves by exactly one cent,
the level is *armed*. When a trade of at least one lot then prints at the ask
(or the bid) while the displayed sizes lean the same way by more than 1.8x, it
sends one 100-share `day` limit order at that price and cancels it at once (a
simulated immediate-or-cancel). One attempt per level; never short; never more
than `--quantity` shares held.

The exact contract is in README.md ("The strategy"). Read top to bottom:

    constants, Config         the knobs
    Quote                     level tracking (pure, no I/O)
    Position                  order registry and fill accounting (pure)
    decide()                  one trade print -> an order intent or None
    Alpaca I/O                the two websocket clients, REST and its rate limiter
    TickTaker                 wires the streams and REST to the three above;
                              reconnects, restarts, market hours, the watchdog
    parse_args / main         command line, start-up checks, shutdown

Run:  python tick_taker.py --symbol SNAP --quantity 500
Stop: Ctrl+C once (cancels this run's open orders, prints a summary).
"""
from __future__ import annotations

import argparse
import asyncio
import calendar
import collections
import concurrent.futures
import functools
import itertools
import json
import logging
import os
import random
import re
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional, Union

import requests
import websockets
from alpaca_trade_api.rest import REST, APIError
from dotenv import load_dotenv
from requests.adapters import HTTPAdapter

# --------------------------------------------------------------------------
# Constants: the strategy's knobs (see README, "The strategy").
# --------------------------------------------------------------------------
LOT = 100                            # shares per order; smallest print followed
IMBALANCE_RATIO = Fraction("1.8")    # exact, so 180 vs 100 is not "more"
QUOTE_GUARD_NS = 50_000_000          # ignore trades < 50 ms after the level quote
TICK_CENTS = 1                       # a level is a one-tick spread; a move is one tick

DEFAULT_SYMBOL = "SNAP"
DEFAULT_QUANTITY = 500
DEFAULT_FEED = "iex"
PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
DATA_STREAM_URL = "https://stream.data.alpaca.markets"
CLIENT_ID_PREFIX = "tick-taker-"     # our orders' client_order_id starts with this
REST_TIMEOUT_S = 10                  # the SDK sets none; a hung call would freeze orders
SHUTDOWN_WAIT_S = 3.0                # how long Ctrl+C waits for in-flight work
WS_CLOSE_TIMEOUT_S = 1.0
RATE_LIMIT_PER_MIN = 200             # Alpaca's documented REST rate, per account
RECONNECT_FIRST_S = 0.5              # reconnect backoff: doubles each try, with jitter,
RECONNECT_MAX_S = 30.0               # up to this (the SDK's own loop retries every 10 ms)
CANCEL_TRIES = 4                     # a cancel refused with 429/5xx is retried, backing off
MAX_ORDER_AGE_S = 1.0                # a signal still waiting for the REST thread this long is dropped
DEFAULT_STALE_S = 60.0               # no market data this long: warn and disarm the level
DEFAULT_CLOSE_BUFFER_MIN = 5.0       # no new orders this close to the close

# Terminal events: after these no more fills can come for the order.
TERMINAL_EVENTS = frozenset(
    {"fill", "canceled", "expired", "rejected", "done_for_day", "replaced"})
FILL_EVENTS = frozenset({"partial_fill", "fill"})

log = logging.getLogger("tick_taker")


class FatalError(Exception):
    """An expected failure that ends the run with a clear message, no traceback."""


@dataclass(frozen=True)
class Config:
    """Everything the run needs, resolved once from flags, environment and .env."""
    symbol: str
    quantity: int            # most shares ever held (multiple of LOT)
    key_id: str
    secret_key: str = field(repr=False)   # never printed
    base_url: str            # REST and trading stream (`<base>/stream`)
    data_url: str            # market-data stream (`<data>/v2/<feed>`)
    feed: str                # iex or sip
    stale_s: float = DEFAULT_STALE_S                  # market-data watchdog
    close_buffer_min: float = DEFAULT_CLOSE_BUFFER_MIN  # stop new orders before the close
    flatten_at_close: bool = False                    # sell what this run bought, then
    rest_rate: int = RATE_LIMIT_PER_MIN               # REST requests a minute, at most


# An exchange timestamp: integer ns since the epoch, or the stream's RFC-3339
# string. Strings are parsed only when a rule needs the time (a level change,
# or a print that passed the cheaper rules), not for every quote: parsing is
# a large share of the per-quote cost.
ExchangeTime = Union[int, str]


def as_ns(t: ExchangeTime) -> int:
    return t if isinstance(t, int) else parse_ns(t)


# --------------------------------------------------------------------------
# Quote tracker: the one-cent level and the live quote. Pure, no I/O.
# --------------------------------------------------------------------------
class Quote:
    """Tracks the current one-cent level, whether it is armed, and the live quote.

    Prices are integer cents; times are exchange nanoseconds.
    """

    def __init__(self) -> None:
        self.level_bid: Optional[int] = None
        self.level_ask: Optional[int] = None
        self.level_time_ns = 0
        self.armed = False
        self.bid = self.ask = self.bid_size = self.ask_size = 0
        self.level_changes = self.armed_levels = 0       # counts, for the summary

    def on_quote(self, bid: int, ask: int, bid_size: int, ask_size: int,
                 t: ExchangeTime) -> bool:
        """Apply one quote; return True when it is a level change."""
        self.bid, self.ask, self.bid_size, self.ask_size = bid, ask, bid_size, ask_size
        # A level change: a one-tick spread with both sides moved.
        if ask - bid != TICK_CENTS or bid == self.level_bid or ask == self.level_ask:
            return False
        # Armed only for a one-tick move of both sides in the same direction;
        # the first level and any jump (possible news) are not armed.
        prev_bid = self.level_bid
        self.armed = prev_bid is not None and abs(bid - prev_bid) == TICK_CENTS
        self.level_bid, self.level_ask, self.level_time_ns = bid, ask, as_ns(t)
        self.level_changes += 1
        self.armed_levels += self.armed
        return True

    def at_level(self) -> bool:
        """Is the live quote still the level (not widened or moved one side)?"""
        return self.bid == self.level_bid and self.ask == self.level_ask

    def disarm(self) -> None:
        """One attempt per level."""
        self.armed = False


# --------------------------------------------------------------------------
# Position tracker: this run's orders and fills. Pure, no I/O.
# --------------------------------------------------------------------------
@dataclass
class TrackedOrder:
    """One order of this run, as the Position tracker sees it."""
    side: str                      # "buy" or "sell"
    qty: int
    filled: int = 0                # cumulative filled_qty last seen
    notional_cents: int = 0        # cumulative filled_qty * filled_avg_price
    order_id: Optional[str] = None  # Alpaca's id, once the POST returned

    @property
    def pending(self) -> int:
        return self.qty - self.filled


class Position:
    """Order registry and fill accounting for this run's orders only.

    Fills are counted as the change in each order's cumulative `filled_qty`,
    so repeated, stale or out-of-order updates change nothing. Realized P&L
    uses the average cost of the shares held.
    """

    def __init__(self, quantity: int, preexisting: int = 0) -> None:
        self.quantity = quantity
        self.preexisting = preexisting  # shares held before this run: count toward
        self.held = 0                   # the quantity, never sold by the bot
        self.cost_cents = 0            # what the held shares cost (average cost)
        self.realized_cents = 0
        self.bought = self.sold = 0
        self.orders_sent = 0
        self.orders: dict[str, TrackedOrder] = {}

    @property
    def pending_buys(self) -> int:
        return sum(o.pending for o in self.orders.values() if o.side == "buy")

    @property
    def pending_sells(self) -> int:
        return sum(o.pending for o in self.orders.values() if o.side == "sell")

    def can_buy(self) -> bool:
        return self.preexisting + self.held + self.pending_buys + LOT <= self.quantity

    def can_sell(self) -> bool:
        return self.held - self.pending_sells >= LOT

    def register(self, client_order_id: str, side: str, qty: int = LOT) -> None:
        """Record an order before it is sent, so even an update that beats
        the REST reply is matched and counted."""
        self.orders[client_order_id] = TrackedOrder(side, qty)
        self.orders_sent += 1

    def set_order_id(self, client_order_id: str, order_id: str) -> None:
        """Remember Alpaca's id (for the cancel at shutdown), if still tracked."""
        order = self.orders.get(client_order_id)
        if order is not None:
            order.order_id = order_id

    def release(self, client_order_id: str) -> None:
        """Forget an order that was never placed (sending it failed)."""
        if self.orders.pop(client_order_id, None) is not None:
            self.orders_sent -= 1

    def on_update(self, client_order_id: str, event: str, filled_qty: int,
                  filled_avg_cents: Decimal) -> int:
        """Apply one trade update; return the shares newly filled (0 if none).

        Updates for orders this run did not place are ignored.
        """
        order = self.orders.get(client_order_id)
        if order is None:
            return 0
        delta = 0
        if event in FILL_EVENTS or event in TERMINAL_EVENTS:
            delta = self._apply_fill(order, filled_qty, filled_avg_cents)
        if event in TERMINAL_EVENTS:
            del self.orders[client_order_id]   # releases what is still pending
        return delta

    def _apply_fill(self, order: TrackedOrder, filled_qty: int,
                    filled_avg_cents: Decimal) -> int:
        delta = min(filled_qty, order.qty) - order.filled
        if delta <= 0:
            return 0                       # repeated or stale update
        notional = int((filled_avg_cents * filled_qty).to_integral_value())
        delta_cents = notional - order.notional_cents
        order.filled, order.notional_cents = order.filled + delta, notional
        if order.side == "buy":
            self.held += delta
            self.cost_cents += delta_cents
            self.bought += delta
        else:
            cost = self.cost_cents * delta // self.held if self.held else 0
            self.cost_cents -= cost
            self.realized_cents += delta_cents - cost
            self.held -= delta
            self.sold += delta
        return delta


# --------------------------------------------------------------------------
# The decision: one trade print -> an order intent, or None.
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Intent:
    side: str
    limit_cents: int
    reason: str


def decide(quote: Quote, position: Position, price_cents: int, size: int,
           t: ExchangeTime) -> Optional[Intent]:
    """Apply the strategy's decision rules, in order, to one trade print."""
    if not quote.armed:
        return None                                   # 1. armed, no attempt yet
    if not quote.at_level():
        return None                                   # 2. live quote at the level
    if as_ns(t) - quote.level_time_ns <= QUOTE_GUARD_NS:
        return None                                   # 3. > 50 ms after level time
    if size < LOT:
        return None                                   # 4. at least one lot
    bid_size, ask_size = quote.bid_size, quote.ask_size
    if (price_cents == quote.level_ask and bid_size > IMBALANCE_RATIO * ask_size
            and position.can_buy()):
        return Intent("buy", quote.level_ask,
                      f"bid {bid_size} > {float(IMBALANCE_RATIO)}x{ask_size}")
    if (price_cents == quote.level_bid and ask_size > IMBALANCE_RATIO * bid_size
            and position.can_sell()):
        return Intent("sell", quote.level_bid,
                      f"ask {ask_size} > {float(IMBALANCE_RATIO)}x{bid_size}")
    return None


# --------------------------------------------------------------------------
# Alpaca I/O helpers: wire formats at the edge.
# --------------------------------------------------------------------------
def print_cents(price: float) -> Optional[int]:
    """A trade price in whole cents, or None for a sub-penny print (such as a
    midpoint execution at 10.005), which is at neither the bid nor the ask."""
    cents = price * 100
    whole = round(cents)
    return whole if abs(cents - whole) < 1e-6 else None


def dollars(cents: int | float) -> str:
    return f"{cents / 100:.2f}"


_RFC3339 = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


@functools.lru_cache(maxsize=256)
def _epoch_seconds(head: str, tz: str) -> int:
    seconds = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        seconds -= sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    return seconds


def parse_ns(stamp: str) -> int:
    """RFC-3339 time with up to nanoseconds -> integer ns since the epoch.

    Many messages share a second, so the date part is parsed once (cached).
    Called only when a rule needs the time (see ExchangeTime), not per quote.
    """
    m = _RFC3339.match(stamp)
    if m is None:
        raise ValueError(f"bad timestamp {stamp!r}")
    head, frac, tz = m.groups()
    return _epoch_seconds(head, tz) * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


def ws_url(http_url: str) -> str:
    """The SDK's rule: an http(s) URL means ws(s)."""
    return re.sub(r"^http", "ws", http_url.rstrip("/"))


def endpoint_kind(base_url: str) -> str:
    if base_url.rstrip("/") == PAPER_URL:
        return "PAPER"
    if base_url.rstrip("/") == LIVE_URL:
        return "LIVE"
    return "CUSTOM"


class RateLimiter:
    """Keeps REST requests within Alpaca's rate and pauses after a 429.

    Every HTTP request counts, retries included (both calls of an order
    attempt, too). Pure bookkeeping: callers pass the (monotonic) time.
    """

    def __init__(self, limit: int = RATE_LIMIT_PER_MIN, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self.sent: collections.deque[float] = collections.deque()
        self.paused_until = 0.0
        self.strikes = 0                 # 429s in a row

    def _trim(self, now: float) -> None:
        while self.sent and self.sent[0] <= now - self.window_s:
            self.sent.popleft()

    def can_send(self, n: int, now: float) -> bool:
        """Room for n requests right now (an order attempt needs 2)?"""
        self._trim(now)
        return now >= self.paused_until and len(self.sent) + n <= self.limit

    def wait_s(self, now: float) -> float:
        """How long the next request must wait."""
        self._trim(now)
        full = self.sent[0] + self.window_s - now if len(self.sent) >= self.limit else 0.0
        return max(full, self.paused_until - now, 0.0)

    def record(self, now: float) -> None:
        self.sent.append(now)

    def throttled(self, now: float, reset_in: Optional[float]) -> float:
        """A 429: pause until Alpaca's reset, or back off 1, 2, 4 ... 60 s."""
        self.strikes += 1
        pause = reset_in if reset_in is not None else 2.0 ** (self.strikes - 1)
        pause = min(max(pause, 0.5), 60.0)
        self.paused_until = now + pause
        return pause

    def answered(self) -> None:
        self.strikes = 0


class _RestAdapter(HTTPAdapter):
    """Every SDK request passes here: a timeout (the SDK sets none) and the
    rate limiter (it waits in the REST thread, never on the event loop)."""

    def __init__(self, limiter: RateLimiter) -> None:
        super().__init__()
        self.limiter = limiter

    def send(self, request, **kwargs):  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = REST_TIMEOUT_S
        wait = self.limiter.wait_s(time.monotonic())
        if wait > 0:
            log.warning("REST rate limit: waiting %.1f s", wait)
            time.sleep(wait)
        self.limiter.record(time.monotonic())
        response = super().send(request, **kwargs)
        if response.status_code == 429:
            reset = response.headers.get("X-RateLimit-Reset")
            reset_in = float(reset) - time.time() if reset and reset.isdigit() else None
            pause = self.limiter.throttled(time.monotonic(), reset_in)
            log.warning("HTTP 429 from Alpaca: no new orders for %.1f s", pause)
        else:
            self.limiter.answered()
        return response


def make_rest(cfg: Config, limiter: RateLimiter) -> REST:
    rest = REST(cfg.key_id, cfg.secret_key, cfg.base_url, api_version="v2")
    # The SDK's session is private, but a REST call with no timeout can hang
    # the order thread for good, and the rate must be kept for every request;
    # mounting an adapter is the least intrusive way to do both.
    for scheme in ("http://", "https://"):
        rest._session.mount(scheme, _RestAdapter(limiter))
    # The SDK retries a 429 after a blocking 3 s: an order sent 3 s late is
    # wrong for this strategy. The bot backs off itself (see RateLimiter).
    rest._retry = 0
    # With no proxy configured, skip requests' per-call look-ups of proxy
    # variables and ~/.netrc: about 0.1 ms off every order (keys go in headers).
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        rest._session.trust_env = False
    return rest


def http_status(exc: BaseException) -> Optional[int]:
    """The HTTP status of an SDK error, if the server answered at all."""
    if isinstance(exc, APIError):
        return exc.status_code
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code
    return None


class StreamError(Exception):
    """A stream failed to connect or sign in in a way worth retrying."""


def backoff_s(attempt: int) -> float:
    """Exponential backoff with jitter: 0.25-0.5 s, 0.5-1 s, ... up to 15-30 s."""
    ceiling = min(RECONNECT_MAX_S, RECONNECT_FIRST_S * 2 ** attempt)
    return random.uniform(ceiling / 2, ceiling)


async def connect(url: str, what: str) -> websockets.WebSocketClientProtocol:
    # Pings every 10 s: a connected-but-dead socket is noticed within 40 s.
    try:
        return await websockets.connect(
            url, ping_interval=10, ping_timeout=30, close_timeout=WS_CLOSE_TIMEOUT_S,
            open_timeout=REST_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as exc:
        raise StreamError(f"cannot connect to the {what} at {url}: {exc}") from None


async def recv_json(ws: websockets.WebSocketClientProtocol, what: str):
    """The next message, decoded."""
    try:
        raw = await asyncio.wait_for(ws.recv(), REST_TIMEOUT_S)
    except (asyncio.TimeoutError, websockets.ConnectionClosed) as exc:
        raise StreamError(f"the {what} closed during sign-in: {exc}") from None
    return json.loads(raw)


DATA_ERRORS = {
    402: "Alpaca refused the API keys on the market-data stream (auth failed)",
    406: "connection limit exceeded: another program already holds this "
         "account's market-data connection (close it, or wait ~90 s after a crash)",
    409: "your market-data plan does not include this feed (try --feed iex)",
}


class DataStream:
    """Market-data v2 stream client (JSON mode): quotes and trades, one symbol."""

    def __init__(self, cfg: Config, on_quote: Callable, on_trade: Callable) -> None:
        self.url = f"{ws_url(cfg.data_url)}/v2/{cfg.feed}"
        self.cfg = cfg
        self.on_quote, self.on_trade = on_quote, on_trade
        self.ws: Optional[websockets.WebSocketClientProtocol] = None
        self.last_data = time.monotonic()     # when the last frame arrived (watchdog)

    async def open(self) -> None:
        """Connect, sign in and subscribe. Refused keys or plan are fatal;
        anything else (a 406 included) raises StreamError, worth a retry."""
        what = "market-data stream"
        await self.close()
        self.ws = await connect(self.url, what)
        first = await recv_json(self.ws, what)
        if not (first and first[0].get("T") == "success"):
            raise StreamError(f"unexpected greeting from the {what}: {first}")
        await self.ws.send(json.dumps(
            {"action": "auth", "key": self.cfg.key_id, "secret": self.cfg.secret_key}))
        reply = (await recv_json(self.ws, what))[0]
        if reply.get("T") == "error":
            code = reply.get("code")
            text = DATA_ERRORS.get(code, f"{what} error {code}: {reply.get('msg')}")
            raise (FatalError if code in (402, 409) else StreamError)(text)
        sym = [self.cfg.symbol]
        await self.ws.send(json.dumps({"action": "subscribe", "quotes": sym, "trades": sym}))
        self.last_data = time.monotonic()
        log.info("market data: subscribed to %s quotes and trades (%s)",
                 self.cfg.symbol, self.url)

    async def run(self) -> None:
        """Dispatch messages until the socket closes (then return)."""
        async for raw in self.ws:
            self.last_data = time.monotonic()
            try:
                self.dispatch(json.loads(raw))
            except Exception:   # one malformed frame must not end the run
                log.exception("could not handle market data %.200s", raw)

    def dispatch(self, messages: list[dict]) -> None:
        symbol = self.cfg.symbol
        for m in messages:
            kind = m.get("T")
            if m.get("S") != symbol:
                if kind == "error":
                    log.warning("market data error %s: %s", m.get("code"), m.get("msg"))
                continue
            if kind == "q":   # JSON numbers: prices are floats, sizes ints
                self.on_quote(round(m["bp"] * 100), round(m["ap"] * 100),
                              m["bs"], m["as"], m["t"])
            elif kind == "t" and (cents := print_cents(m["p"])) is not None:
                self.on_trade(cents, m["s"], m["t"])

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


class TradingStream:
    """Trading stream client: `trade_updates` for this account."""

    def __init__(self, cfg: Config, on_update: Callable) -> None:
        self.url = f"{ws_url(cfg.base_url)}/stream"
        self.cfg = cfg
        self.on_update = on_update
        self.ws: Optional[websockets.WebSocketClientProtocol] = None

    async def open(self) -> None:
        """Connect, sign in and listen; refused keys are fatal."""
        what = "trading stream"
        await self.close()
        self.ws = await connect(self.url, what)
        await self.ws.send(json.dumps(
            {"action": "auth", "key": self.cfg.key_id, "secret": self.cfg.secret_key}))
        reply = await recv_json(self.ws, what)
        if reply.get("data", {}).get("status") != "authorized":
            raise FatalError("Alpaca refused the API keys on the trading stream")
        await self.ws.send(json.dumps(
            {"action": "listen", "data": {"streams": ["trade_updates"]}}))
        log.info("trading stream: listening for trade_updates (%s)", self.url)

    async def run(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if msg.get("stream") == "trade_updates":
                # One bad update must not end all later ones (the SDK's trap).
                try:
                    self.on_update(msg["data"])
                except Exception:
                    log.exception("could not apply trade update %s", msg.get("data"))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


# --------------------------------------------------------------------------
# TickTaker: wires the streams and REST to Quote, Position and decide().
# --------------------------------------------------------------------------
class TickTaker:
    """Owns the state and the I/O of one run."""

    def __init__(self, cfg: Config, rest: REST, limiter: RateLimiter) -> None:
        self.cfg = cfg
        self.rest = rest
        self.limiter = limiter
        self.quote = Quote()
        self.position = Position(cfg.quantity)
        self.run_id = uuid.uuid4().hex[:8]
        self._seq = itertools.count(1)
        self.stopping = False           # Ctrl+C, the close, or a fatal error
        self.closing = False            # too close to the close for new orders
        self.trading_live = False       # the trading stream is up: fills are seen
        self.close_at: Optional[float] = None    # epoch seconds, from the clock
        # All REST calls leave the event loop for this one thread, in order,
        # so quotes and trades keep flowing while an order is in flight.
        self.rest_thread = concurrent.futures.ThreadPoolExecutor(1, "rest")
        self.loop = asyncio.get_running_loop()
        self.last_order: Optional[concurrent.futures.Future] = None
        self.data = DataStream(cfg, self.on_quote, self.on_trade)
        self.trading = TradingStream(cfg, self.on_trade_update)

    # -- handlers: thin, they feed the trackers ---------------------------
    def on_quote(self, bid: int, ask: int, bid_size: int, ask_size: int,
                 t: ExchangeTime) -> None:
        if self.quote.on_quote(bid, ask, bid_size, ask_size, t):
            log.debug("level %s/%s %s", dollars(bid), dollars(ask),
                      "armed" if self.quote.armed else "not armed")

    def on_trade(self, price_cents: int, size: int, t: ExchangeTime) -> None:
        if self.stopping or self.closing or not self.trading_live:
            return                               # no order while our state may be stale
        intent = decide(self.quote, self.position, price_cents, size, t)
        if intent is None:
            return
        if not self.limiter.can_send(2, time.monotonic()):   # submit + cancel
            log.warning("signal at %s skipped: REST rate limit", dollars(intent.limit_cents))
            return
        self.quote.disarm()                      # an attempt: one per level
        coid = f"{CLIENT_ID_PREFIX}{self.run_id}-{next(self._seq)}"
        self.position.register(coid, intent.side)
        log.info("%s %d %s @ %s (level %d, %s) [%s]", intent.side.upper(), LOT,
                 self.cfg.symbol, dollars(intent.limit_cents), self.quote.level_changes,
                 intent.reason, coid)
        # The order leaves the event loop here, for the REST thread.
        self.last_order = self.rest_thread.submit(
            self.place_order, coid, intent, time.monotonic())

    def on_trade_update(self, data: dict) -> None:
        order = data.get("order") or {}
        coid, event = order.get("client_order_id"), data.get("event")
        if coid not in self.position.orders:
            log.debug("ignoring %s for an order this run did not place", event)
            return
        filled = int(Decimal(order.get("filled_qty") or 0))
        avg = Decimal(order.get("filled_avg_price") or 0) * 100
        delta = self.position.on_update(coid, event, filled, avg)
        if delta:
            log.info("FILL %s %d %s @ %s (%s; position %+d)", order.get("side", "").upper(),
                     delta, self.cfg.symbol, data.get("price") or order.get("filled_avg_price"),
                     event, self.position.held)
        elif event in TERMINAL_EVENTS:
            log.info("%s %s (filled %d)", event.upper(), coid, filled)

    # -- order I/O: in the REST thread, one order at a time ------------------
    # These methods run in `rest_thread`, never on the event loop. They touch
    # the Position only through `on_loop`, so all state changes stay on the
    # loop's thread.
    def on_loop(self, fn: Callable, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def place_order(self, coid: str, intent: Intent, decided_at: float) -> None:
        """Submit the limit order, then cancel it at once (simulated IOC)."""
        age = time.monotonic() - decided_at
        if self.stopping or age > MAX_ORDER_AGE_S:
            if not self.stopping:
                log.warning("order %s not sent: the signal is %.1f s old", coid, age)
            self.on_loop(self.position.release, coid)
            return
        try:
            order_id = self.submit(coid, intent.side, LOT, intent.limit_cents)
            if order_id is not None:
                self.cancel(coid, order_id)
        except Exception:                  # a bug must not kill the REST thread
            log.exception("order %s: unexpected error", coid)

    def submit(self, coid: str, side: str, qty: int, limit_cents: Optional[int]) -> Optional[str]:
        """Send a day order (limit, or market when limit_cents is None); return
        Alpaca's id, or None if it was not placed."""
        kind = "market" if limit_cents is None else "limit"
        try:
            order = self.rest.submit_order(
                symbol=self.cfg.symbol, qty=qty, side=side, type=kind, time_in_force="day",
                limit_price=None if limit_cents is None else dollars(limit_cents),
                client_order_id=coid)
        except APIError as exc:            # the server answered: not placed
            log.warning("REJECTED %s: HTTP %s %s", coid, exc.status_code, exc)
            self.on_loop(self.position.release, coid)
            return None
        except Exception as exc:           # no clear answer: ask whether it exists
            log.warning("order %s: %s; checking whether it was placed", coid, exc)
            return self.recover_unknown(coid)
        self.on_loop(self.position.set_order_id, coid, order.id)
        return order.id

    def recover_unknown(self, coid: str) -> Optional[str]:
        try:
            order = self.rest.get_order_by_client_order_id(coid)
        except Exception as exc:
            if http_status(exc) == 404:
                log.warning("order %s was not placed", coid)
                self.on_loop(self.position.release, coid)
            else:
                log.error("order %s state unknown (%s); kept as pending", coid, exc)
            return None
        self.on_loop(self.position.set_order_id, coid, order.id)
        return order.id

    def cancel(self, coid: str, order_id: str) -> None:
        """The simulated IOC's second half. Refused because filled is normal;
        a 429 or 5xx is retried, backing off, in this thread."""
        for attempt in range(CANCEL_TRIES):
            try:
                self.rest.cancel_order(order_id)
                log.debug("cancel sent for %s", coid)
                return
            except Exception as exc:
                if http_status(exc) in (404, 422):
                    log.info("cancel of %s not needed (%s)", coid, exc)
                    return
                if attempt + 1 < CANCEL_TRIES and not self.stopping:
                    log.warning("cancel of %s failed (%s); retrying", coid, exc)
                    time.sleep(0.25 * 2 ** attempt)
                    continue
                log.warning("cancel of %s failed (%s); it stays tracked and is "
                            "cancelled again at shutdown", coid, exc)
                return

    async def rest_call(self, fn: Callable, *args, **kwargs):
        """Run a REST call (or one of the methods above) in the REST thread."""
        return await self.loop.run_in_executor(
            self.rest_thread, functools.partial(fn, *args, **kwargs))

    # -- start-up --------------------------------------------------------------
    async def check_account(self) -> None:
        """One REST call proves the keys before any stream opens."""
        try:
            acct = await self.rest_call(self.rest.get_account)
        except Exception as exc:
            status = http_status(exc)
            if status in (401, 403):
                raise FatalError(f"Alpaca refused the API keys (HTTP {status}) at "
                                 f"{self.cfg.base_url}: check APCA_API_KEY_ID and "
                                 "APCA_API_SECRET_KEY (paper and live keys differ)") from None
            raise FatalError(f"cannot read the account at {self.cfg.base_url}: {exc}") from None
        raw = acct._raw
        for flag in ("trading_blocked", "account_blocked", "trade_suspended_by_user"):
            if raw.get(flag):
                raise FatalError(f"the account says {flag}; refusing to start")
        log.info("account %s: equity $%s, buying power $%s", raw.get("status", "?"),
                 raw.get("equity", "?"), raw.get("buying_power", "?"))
        # Alpaca removed these in July 2026; show them only if still sent.
        for name in ("pattern_day_trader", "daytrade_count"):
            if name in raw:
                log.info("account %s: %s", name, raw[name])

    async def wait_for_open(self, stop: asyncio.Event) -> bool:
        """Wait until the market is open (the clock endpoint); False if stopped."""
        while True:
            clock = await self.rest_call(self.rest.get_clock)
            if clock.is_open:
                self.close_at = clock.next_close.timestamp()
                return True
            wait = clock.next_open.timestamp() - time.time()
            log.info("market closed: waiting %.0f s for the open at %s (Ctrl+C to stop)",
                     max(wait, 0), clock.next_open)
            try:
                await asyncio.wait_for(stop.wait(), min(max(wait, 0.5), 300))
                return False
            except asyncio.TimeoutError:
                pass

    async def adopt_account_state(self) -> None:
        """A restart: cancel the open orders of earlier runs of this bot, report
        anyone else's, and count the shares already held toward --quantity."""
        symbol = self.cfg.symbol
        for o in await self.rest_call(self.rest.list_orders, status="open", limit=500,
                                      symbols=[symbol]):
            if o.client_order_id.startswith(CLIENT_ID_PREFIX):
                log.warning("cancelling %s, an open order of an earlier run", o.client_order_id)
                await self.rest_call(self.cancel, o.client_order_id, o.id)
            else:
                log.warning("open order %s (%s %s %s) is not this bot's: left alone",
                            o.client_order_id, o.side, o.qty, symbol)
        try:
            held = int(Decimal((await self.rest_call(self.rest.get_position, symbol)).qty))
        except Exception as exc:
            if http_status(exc) != 404:                   # 404: no position
                raise FatalError(f"cannot read the position in {symbol}: {exc}") from None
            held = 0
        if held:
            log.warning("the account already holds %+d %s: counted toward --quantity %d; "
                        "the bot sells only shares it buys in this run",
                        held, symbol, self.cfg.quantity)
        self.position.preexisting = max(held, 0)

    # -- streams: run, reconnect, watch -----------------------------------------
    async def keep_streaming(self, stream, name: str, on_down: Callable,
                             on_up: Callable) -> None:
        """Run a stream; when it drops, reconnect with backoff and resubscribe."""
        while True:
            try:
                await stream.run()
                reason = "closed by the server"
            except websockets.ConnectionClosed as exc:
                reason = str(exc)
            if self.stopping:
                return
            on_down()
            log.warning("the %s dropped (%s); reconnecting", name, reason)
            for attempt in itertools.count():
                delay = backoff_s(attempt)
                await asyncio.sleep(delay)
                try:
                    await stream.open()            # FatalError (refused keys) ends the run
                    break
                except StreamError as exc:
                    log.warning("%s: reconnect failed (%s); retrying", name, exc)
            log.info("the %s reconnected", name)
            await on_up()

    def data_down(self) -> None:
        self.quote.disarm()
        log.warning("level disarmed until a fresh one-cent level change")

    async def data_up(self) -> None:
        """Nothing more: the level was disarmed when the stream dropped."""

    def trading_down(self) -> None:
        self.trading_live = False
        log.warning("no new orders until the trading stream reconnects")

    async def trading_up(self) -> None:
        """Fills may have happened while the stream was down: ask for them."""
        await self.reconcile(final=False)
        self.trading_live = True

    async def watchdog(self) -> None:
        """No market data for stale_s seconds: warn, and do not trade the stale level."""
        stale_s, warned = self.cfg.stale_s, False
        while True:
            await asyncio.sleep(min(1.0, stale_s / 4))
            quiet = time.monotonic() - self.data.last_data
            if quiet < stale_s:
                warned = False
            elif not warned:
                warned = True
                self.quote.disarm()
                log.warning("no market data for %.0f s: level disarmed until a fresh "
                            "one-cent level change", quiet)

    async def close_watch(self, stop: asyncio.Event) -> None:
        """Stop new orders close_buffer_min before the close; flatten if asked;
        stop at the close."""
        if self.close_at is None:
            return
        await asyncio.sleep(max(0.0, self.close_at - self.cfg.close_buffer_min * 60 - time.time()))
        self.closing = True
        log.info("%g minutes to the close: no new orders", self.cfg.close_buffer_min)
        if self.cfg.flatten_at_close:
            await self.flatten()
        await asyncio.sleep(max(0.0, self.close_at - time.time()))
        log.info("the market closed: stopping")
        stop.set()

    async def flatten(self) -> None:
        """Sell, at market, the shares this run bought and still holds."""
        qty = self.position.held - self.position.pending_sells
        if qty <= 0:
            return
        coid = f"{CLIENT_ID_PREFIX}{self.run_id}-{next(self._seq)}"
        self.position.register(coid, "sell", qty)
        log.info("FLATTEN: SELL %d %s at market [%s]", qty, self.cfg.symbol, coid)
        await self.rest_call(self.submit, coid, "sell", qty, None)

    # -- run and shutdown ----------------------------------------------------
    async def run(self, stop: asyncio.Event) -> int:
        """Trade until `stop` is set (Ctrl+C, the close) or a fatal error;
        return the exit code."""
        await self.check_account()
        if not await self.wait_for_open(stop):
            self.log_summary()
            return 0
        await self.adopt_account_state()
        try:
            await self.trading.open()
            await self.data.open()
        except (FatalError, StreamError) as exc:
            await self.trading.close()
            await self.data.close()
            raise FatalError(str(exc)) from None
        self.trading_live = True
        trading = asyncio.create_task(self.keep_streaming(
            self.trading, "trading stream", self.trading_down, self.trading_up))
        tasks = {
            trading,
            asyncio.create_task(self.keep_streaming(
                self.data, "market-data stream", self.data_down, self.data_up)),
            asyncio.create_task(self.watchdog()),
            asyncio.create_task(self.close_watch(stop)),
        }
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        code = 0
        for task in done - {stopper}:
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                if isinstance(exc, FatalError):
                    log.error("%s", exc)
                else:
                    log.error("stopping on an unexpected error: %r", exc)
                code = 1
        await self.shutdown(tasks - {trading} | {stopper}, trading)
        return code

    async def shutdown(self, tasks: set, trading: asyncio.Task) -> None:
        """Stop trading, cancel this run's open orders, wait for their final
        updates (the trading stream stays up for them), print the summary."""
        self.stopping = True
        log.info("stopping: no new orders; cancelling this run's open orders")
        for task in tasks:
            task.cancel()
        await self.data.close()
        # Let the order in flight finish its submit+cancel; queued ones are
        # dropped (place_order sees `stopping`). One thread, in order: the
        # last order's future done means all are.
        deadline = time.monotonic() + SHUTDOWN_WAIT_S
        if self.last_order is not None:
            try:
                await asyncio.wait_for(asyncio.wrap_future(self.last_order), SHUTDOWN_WAIT_S)
            except asyncio.TimeoutError:
                log.warning("an order call is still running; cancelling what we know of")
        await asyncio.sleep(0)              # apply what the REST thread handed back
        await self.cancel_open_orders()
        # Wait briefly for the final updates of what we cancelled, then ask REST.
        while (self.position.orders and self.trading.ws is not None
               and not self.trading.ws.closed and time.monotonic() < deadline + SHUTDOWN_WAIT_S):
            await asyncio.sleep(0.02)
        await self.reconcile(final=True)
        trading.cancel()
        await self.trading.close()
        self.rest_thread.shutdown(wait=False, cancel_futures=True)
        self.log_summary()

    async def cancel_open_orders(self) -> None:
        for coid, order in list(self.position.orders.items()):
            order_id = order.order_id or await self.rest_call(self.recover_unknown, coid)
            if order_id is not None:
                await self.rest_call(self.cancel, coid, order_id)

    async def reconcile(self, final: bool) -> None:
        """Apply the current state of every order still in flight, as REST
        reports it: fills missed while the trading stream was down count once
        (cumulative filled_qty), terminal orders are released."""
        for coid in list(self.position.orders):
            try:
                o = await asyncio.wait_for(
                    self.rest_call(self.rest.get_order_by_client_order_id, coid),
                    REST_TIMEOUT_S)
            except Exception as exc:
                log.warning("could not read the state of %s: %s", coid, exc)
                continue
            event = {"filled": "fill", "partially_filled": "partial_fill"}.get(o.status, o.status)
            self.on_trade_update({"event": event, "order": o._raw})
            if final and coid in self.position.orders:
                log.warning("order %s is still %s at exit", coid, o.status)

    def log_summary(self) -> None:
        p, q = self.position, self.quote
        log.info("market %s: %d level changes, %d armed", self.cfg.symbol, q.level_changes,
                 q.armed_levels)
        log.info("SUMMARY %s: orders sent %d, bought %d, sold %d, position %+d shares, "
                 "realized P&L %s$%s", self.cfg.symbol, p.orders_sent, p.bought, p.sold,
                 p.held, "-" if p.realized_cents < 0 else "+",
                 dollars(abs(p.realized_cents)))
        if p.preexisting:
            log.info("shares held before this run, untouched: %d", p.preexisting)
        if p.orders:
            log.warning("%d order(s) of this run may still be open: %s",
                        len(p.orders), ", ".join(p.orders))


# --------------------------------------------------------------------------
# Command line and start-up.
# --------------------------------------------------------------------------
def lots(text: str) -> int:
    """argparse type for --quantity: a positive multiple of the lot."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0 or value % LOT:
        raise argparse.ArgumentTypeError(
            f"must be a positive multiple of {LOT} (got {value})")
    return value


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Order-book-imbalance tick taker for Alpaca (see README.md).")
    p.add_argument("--symbol", default=DEFAULT_SYMBOL, type=str.upper,
                   help=f"stock to trade (default {DEFAULT_SYMBOL})")
    p.add_argument("--quantity", default=DEFAULT_QUANTITY, type=lots,
                   help=f"most shares to hold, a multiple of {LOT} (default {DEFAULT_QUANTITY})")
    p.add_argument("--key-id", help="API key id (else APCA_API_KEY_ID)")
    p.add_argument("--secret-key", help="API secret key (else APCA_API_SECRET_KEY)")
    p.add_argument("--base-url", help="trading API URL (else APCA_API_BASE_URL; default "
                   "paper for PK... keys, live otherwise)")
    p.add_argument("--data-url", help="market-data stream URL (else APCA_API_STREAM_URL; "
                   f"default {DATA_STREAM_URL})")
    p.add_argument("--feed", choices=("iex", "sip"), default=DEFAULT_FEED,
                   help="market-data feed (default iex; sip needs a paid plan)")
    p.add_argument("--stop-before-close", type=float, default=DEFAULT_CLOSE_BUFFER_MIN,
                   metavar="MINUTES", help="send no new orders this many minutes before "
                   f"the close (default {DEFAULT_CLOSE_BUFFER_MIN:g})")
    p.add_argument("--flatten-at-close", action="store_true",
                   help="then sell, at market, what this run bought and still holds")
    p.add_argument("--stale-seconds", type=float, default=DEFAULT_STALE_S, metavar="SECONDS",
                   help="warn and stop trading the level after this long without market "
                   f"data (default {DEFAULT_STALE_S:g})")
    p.add_argument("--rest-rate", type=int, default=RATE_LIMIT_PER_MIN, metavar="PER_MINUTE",
                   help=f"most REST requests a minute (default {RATE_LIMIT_PER_MIN}, "
                   "Alpaca's documented limit; raise it only if your plan allows more)")
    p.add_argument("--debug", action="store_true", help="also log every level change")
    return p.parse_args(argv)


def make_config(args: argparse.Namespace) -> Config:
    """Flag > environment > .env (already loaded, never overriding) > default."""
    key_id = args.key_id or os.environ.get("APCA_API_KEY_ID")
    secret = args.secret_key or os.environ.get("APCA_API_SECRET_KEY")
    if not key_id or not secret:
        raise FatalError(
            "no API keys: set APCA_API_KEY_ID and APCA_API_SECRET_KEY in the environment "
            "or in a .env file (copy .env.example), or pass --key-id/--secret-key")
    default_base = PAPER_URL if key_id.startswith("PK") else LIVE_URL
    base = args.base_url or os.environ.get("APCA_API_BASE_URL") or default_base
    data = args.data_url or os.environ.get("APCA_API_STREAM_URL") or DATA_STREAM_URL
    for name, url in (("base URL", base), ("data URL", data)):
        if not re.match(r"^(http|ws)s?://", url):
            raise FatalError(f"the {name} {url!r} must start with http(s):// or ws(s)://")
    return Config(args.symbol, args.quantity, key_id, secret, base.rstrip("/"),
                  data.rstrip("/"), args.feed, args.stale_seconds, args.stop_before_close,
                  args.flatten_at_close, args.rest_rate)


def setup_logging(debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    fmt = logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)-7s %(message)s",
                            "%Y-%m-%d %H:%M:%S")
    fmt.converter = time.gmtime                    # UTC timestamps
    handler.setFormatter(fmt)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    log.setLevel(logging.DEBUG if debug else logging.INFO)


async def amain(cfg: Config) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(signame: str) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now; open orders may remain", signame)
            os._exit(130)
        log.info("%s: stopping (press again to exit at once)", signame)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig.name)
    limiter = RateLimiter(cfg.rest_rate)
    bot = TickTaker(cfg, make_rest(cfg, limiter), limiter)
    return await bot.run(stop)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    setup_logging(args.debug)
    load_dotenv(Path.cwd() / ".env", override=False)
    try:
        cfg = make_config(args)
    except FatalError as exc:
        log.error("%s", exc)
        return 2
    kind = endpoint_kind(cfg.base_url)
    log.log(logging.WARNING if kind == "LIVE" else logging.INFO,
            "endpoint: %s trading at %s", kind, cfg.base_url)
    log.info("trading %s, at most %d shares, feed %s", cfg.symbol, cfg.quantity, cfg.feed)
    if cfg.feed == "iex":
        log.warning("feed iex: quotes are IEX's alone, not the consolidated (SIP) quote "
                    "the signal assumes; sizes and levels will differ from the NBBO")
    try:
        return asyncio.run(amain(cfg))
    except FatalError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:           # Ctrl+C before the signal handlers were set
        return 130


if __name__ == "__main__":
    sys.exit(main())
