#!/usr/bin/env python3
"""tick-taker: an order-book-imbalance tick follower for Alpaca.

A faithful, corrected rebuild of Alpaca's 2019 "example-hftish". It watches
a stock's one-cent bid/ask level (or several stocks', each on its own). When
the level moves by exactly one cent, the level is *armed*. When a regular
trade of at least MIN_PRINT_SIZE shares then prints at the ask (or the bid)
while the displayed sizes lean the same way by more than IMBALANCE_RATIO, it
sends one LOT-share `day` limit order at that price and cancels it at once
(a simulated immediate-or-cancel). One attempt per level; never short; never
more than `--quantity` shares held.

FORKING IT? The rule is the first 180 lines: the constants just below and
`Rule` (its `signal_side()`: a print -> "buy", "sell" or nothing; and, for a
rule that remembers, its own state and an `on_quote()` hook). Change those, then

    pipenv run pytest tests/test_contract.py       # what pins the shipped rule
    pipenv run python -m sim.compare ORIGINAL.py tick_taker.py   # yours vs the original

(README, "Change the strategy"). Everything below `Rule` is the
plumbing that carries its verdict out safely; a fork need not read it.

The exact contract is in docs/strategy.md. Read top to bottom:

    constants                 the rule's knobs
    Trade, Rule               THE RULE: one trade print -> a side, or None (and
                              a home for what a rule remembers)
    ---- plumbing below: a fork that changes the rule need not read on ----
    settings, Config          the run's settings and limits
    Quote, feed()             level tracking (pure, no I/O); each quote to the rule
    Position                  order registry, order life and fill accounting (pure)
    order_for(), follow()     the position's room and the run's guards (the
                              trading stream, stopping, the close, the loss
                              limit, the REST budget) around the rule
    edge records              OrderUpdate: the wire's order shapes, parsed once
    REST                      the SDK in its own thread, the rate limiter
    Journal                   the run's record in SQLite, written off the loop
    OrderDesk                 every order from decision to terminal state:
                              budget, submit/cancel on the event loop (aiohttp),
                              unknown outcomes resolved, cancel-all at shutdown
    DataStream, TradingStream our two websocket clients (JSON mode)
    Instrument                one symbol's Quote, Rule and Position
    TickTaker's parts         StartupChecks (keys, account, symbols, market
                              hours, what earlier runs left, both streams),
                              StreamSession (reconnects, the watchdog),
                              RunGuards (the close, the loss limit, flatten),
                              Shutdown (cancel until terminal, the summary)
    TickTaker                 their sum: wires the streams to the rule and the
                              desk (the handlers), and runs it all
    Preflight                 --check: a checklist for the first real run
    parse_args / main         command line, the live gate, logging, exit codes

Run:  python tick_taker.py --symbol SNAP --quantity 500
Stop: Ctrl+C once (cancels this run's open orders, prints a summary).
"""
from __future__ import annotations

import argparse
import asyncio
import calendar
import collections
import datetime
import functools
import gc
import hashlib
import ipaddress
import itertools
import json
import logging
import os
import queue
import random
import re
import signal
import sqlite3
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, Optional, Union
from zoneinfo import ZoneInfo

import aiohttp
import requests
import websockets
from alpaca_trade_api.rest import REST, APIError
from dotenv import load_dotenv
from requests.adapters import HTTPAdapter

# --------------------------------------------------------------------------
# Constants: the strategy's knobs (see docs/strategy.md).
# --------------------------------------------------------------------------
LOT = 100                            # shares per order (a sell may be an odd lot)
MIN_PRINT_SIZE = 100                 # the smallest trade print followed, in shares
IMBALANCE_RATIO = Fraction("1.8")    # exact, so 180 vs 100 is not "more"
QUOTE_GUARD_NS = 50_000_000          # a print this soon after the level's quote may
                                     # belong to the previous level: ignore it
TICK_CENTS = 1                       # a level is a one-tick spread; a move is one tick
MIN_LEVEL_BID_CENTS = 100            # no level from a bid under $1: such stocks quote in
                                     # hundredths of a cent (Reg NMS Rule 612 allows it only
                                     # there), so there is no one-cent level to follow
# Which prints count: a print is followed only if every condition code it
# carries is one of these (docs/strategy.md, "Which prints count"); any other code
# (out of sequence, average price, odd lot, opening/closing, ...) excludes it.
REGULAR_CONDITIONS = frozenset({
    " ",                             # regular sale (tapes A and B)
    "@",                             # regular sale (tape C, and IEX)
    "F",                             # intermarket sweep: a regular trade that swept the touch
})


@dataclass(frozen=True, slots=True)
class Trade:
    """One trade print, as the core sees it (quotes, ten times as many, are
    passed as plain arguments: their path is the hot one)."""
    price_cents: int
    size: int
    t: ExchangeTime
    conditions: Optional[list[str]] = None   # the print's `c` codes; None: no field


def outweighs(size: int, other: int) -> bool:
    """size > IMBALANCE_RATIO x other, exactly, in integers (a Fraction product
    costs microseconds on the path from print to order)."""
    return size * IMBALANCE_RATIO.denominator > other * IMBALANCE_RATIO.numerator


def regular(conditions: Optional[list[str]]) -> bool:
    """A regular trade at the current market: every condition code it carries
    is in REGULAR_CONDITIONS (a print with no conditions field counts)."""
    return conditions is None or REGULAR_CONDITIONS.issuperset(conditions)


class Rule:
    """THE RULE, one per symbol: is this print a signal, and which way.

    `signal_side()` sees every print of the symbol and says "buy", "sell" or
    None; the position and the run are not asked (order_for() and follow()
    do that). `quote` is the symbol's level tracker: its level (`level_bid`,
    `level_ask`, `level_time_ns`), whether it is `armed`, and the live quote
    (`bid`, `ask`, `bid_size`, `ask_size`), integer cents and shares.

    A rule that remembers keeps its state here, on `self` (set it up in
    `__init__`), and may define `on_quote(self, quote, t)`: it is then called
    with every quote of the symbol, once `quote` has taken it (`t`: the
    quote's exchange time; `as_ns(t)` in nanoseconds). The shipped rule
    remembers nothing, so it defines none and quotes skip the call. Example,
    and its test walk-through: README, "Change the strategy".
    """
    on_quote: Optional[Callable[[Quote, ExchangeTime], None]] = None

    def signal_side(self, quote: Quote, trade: Trade) -> Optional[str]:
        """One guard per rule of docs/strategy.md, cheapest first.
        "Spread of exactly one cent" needs no line of its own: rule 2
        implies it (a level is always a one-tick spread)."""
        if not quote.armed:
            return None                                   # 1. armed, no attempt yet
        if not quote.at_level():
            return None                                   # 2. live quote at the level
        if as_ns(trade.t) - quote.level_time_ns <= QUOTE_GUARD_NS:
            return None                                   # 3. after the quote guard
        if trade.size < MIN_PRINT_SIZE:
            return None                                   # 4. a big enough print
        if not regular(trade.conditions):
            return None                                   # 5. a regular print ...
        bid_size, ask_size = quote.bid_size, quote.ask_size
        if bid_size <= 0 or ask_size <= 0:
            return None                                   # 5. ... and both sizes shown
        if trade.price_cents == quote.level_ask and outweighs(bid_size, ask_size):
            return "buy"                                  # printed at the ask, bid heavy
        if trade.price_cents == quote.level_bid and outweighs(ask_size, bid_size):
            return "sell"                                 # printed at the bid, ask heavy
        return None


# ==========================================================================
# Everything below is plumbing: it carries Rule.signal_side()'s verdict out
# safely (levels, positions, orders, streams, shutdown). A fork that only
# changes the rule need not read on.
# ==========================================================================

DEFAULT_SYMBOL = "SNAP"
DEFAULT_QUANTITY = 5 * LOT           # --quantity's default: five lots (500 shares)
MAX_QUANTITY = 1_000_000             # --quantity above this is a typo, not a plan
DEFAULT_JOURNAL = "tick-taker.db"    # the journal, in the folder the bot runs in
DEFAULT_FEED = "iex"
PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_URL = "https://api.alpaca.markets"
DATA_STREAM_URL = "https://stream.data.alpaca.markets"
CLIENT_ID_PREFIX = "tick-taker-"     # our orders' client_order_id starts with this
SUMMARY_ALL = 10                     # a run of more symbols lists only those that traded
PLACEHOLDER_KEYS = frozenset({"PKXXXXXXXXXXXXXXXXXX", "your-secret-key"})   # .env.example's

# The order path (see docs/order-life.md).
ORDER_TIMEOUT_S = 2.0                # submit/cancel: no answer by then means "unknown"
IN_FLIGHT_S = 5.0                    # a submit may still be created this long after it was
                                     # sent: only then is a 404 look-up proof it never was
RESOLVE_FIRST_S = 0.25               # look-ups and cancel retries back off from this ...
RESOLVE_MAX_S = 5.0                  # ... doubling up to this, until the order is terminal
TERMINAL_WAIT_S = 1.0                # after a cancel, wait this long for the final update
                                     # before asking REST
SHUTDOWN_DEADLINE_S = 10.0           # Ctrl+C: cancel and resolve until this, then list
                                     # what is still open and exit non-zero
SHUTDOWN_LIST_S = 2.0                # at least this long to list the broker's open orders
KEEP_WARM_S = 30.0                   # an idle order connection is used (GET /v2/clock) this
                                     # often, so a signal never waits for a new TLS handshake
# Everything else on REST (the SDK, in its own thread).
REST_TIMEOUT_S = 10                  # the SDK sets none; a hung call would freeze the thread
ORDERS_PAGE = 500                    # the most open orders one listing gives
SUBSCRIBE_CHUNK = 500                # symbols a subscribe message names, at most (~4 KB a
                                     # frame, with quotes and trades: far under any limit)
STARTUP_TRIES = 5                    # start-up REST calls and stream opens: transient faults
                                     # retried this often (backing off), then a clear error
RATE_LIMIT_PER_MIN = 200             # Alpaca's documented REST rate, per account
# The streams.
WS_CLOSE_TIMEOUT_S = 1.0
RECONNECT_FIRST_S = 0.5              # reconnect backoff: doubles each try, with jitter,
RECONNECT_MAX_S = 30.0               # up to this (the SDK's own loop retries every 10 ms)
STABLE_S = 30.0                      # the backoff restarts only after a connection
                                     # stayed up this long (a connect-drop loop is not hammered)
DEFAULT_STALE_S = 60.0               # no market data this long: warn and forget the level
CONNECTION_LIMIT_S = 120.0           # at start, a 406 (the data connection is taken) is
                                     # retried this long: a crashed run's takes a while to clear
DEFAULT_CLOSE_BUFFER_MIN = 5.0       # no new orders this close to the close

# Exit codes (docs/running.md, "What it prints").
EXIT_OK, EXIT_FATAL, EXIT_USAGE, EXIT_ORDERS_OPEN, EXIT_LOSS_LIMIT = 0, 1, 2, 3, 4
LOSS_CHECK_S = 0.1                   # --max-loss: the P&L is checked this often (and on fills)

# Terminal events: after these no more fills can come for the order.
TERMINAL_EVENTS = frozenset(
    {"fill", "canceled", "expired", "rejected", "done_for_day", "replaced"})
# A REST order's status, as the trade update event that would have reported it.
STATUS_EVENTS = {"filled": "fill", "partially_filled": "partial_fill"}

NEW_YORK = ZoneInfo("America/New_York")   # market hours are given in New York time
log = logging.getLogger("tick_taker")


class FatalError(Exception):
    """An expected failure that ends the run with a clear message, no traceback."""


@dataclass(frozen=True)
class Config:
    """Everything the run needs, resolved once from flags, environment and .env."""
    symbols: tuple[str, ...]     # the stocks traded, each on its own
    quantity: int                # most shares ever held, per symbol (multiple of LOT)
    key_id: str
    secret_key: str = field(repr=False)   # never printed
    base_url: str                # REST and trading stream (`<base>/stream`)
    data_url: str                # market-data stream (`<data>/v2/<feed>`)
    feed: str                    # iex or sip
    stale_s: float = DEFAULT_STALE_S                  # market-data watchdog
    close_buffer_min: float = DEFAULT_CLOSE_BUFFER_MIN  # stop new orders before the close
    flatten_at_close: bool = False                    # sell what this run bought, then
    rest_rate: int = RATE_LIMIT_PER_MIN               # REST requests a minute, at most
    max_loss_cents: Optional[int] = None              # stop the run at this loss (all symbols)
    journal: Optional[Path] = None                    # the run's record (SQLite); None: none
    check: bool = False                               # --check: a preflight, no trading
    check_order: bool = False                         # --check --order: one far limit, cancelled


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
    # Fixed slots: every quote passes here, and slot stores are the cheapest.
    __slots__ = ("level_bid", "level_ask", "level_time_ns", "armed", "bid", "ask",
                 "bid_size", "ask_size", "level_changes", "armed_levels", "fresh", "good_bid")

    def __init__(self) -> None:
        self.level_bid: Optional[int] = None
        self.level_ask: Optional[int] = None
        self.level_time_ns = 0
        self.armed = False
        self.bid = self.ask = self.bid_size = self.ask_size = 0
        self.good_bid = 0     # the last bid above zero (IEX often sends `bp: 0`): the mark
        self.level_changes = self.armed_levels = 0       # counts, for the summary
        self.fresh = False    # a quote came since the watchdog last looked (its pulse)

    def on_quote(self, bid: int, ask: int, bid_size: int, ask_size: int,
                 t: ExchangeTime) -> bool:
        """Apply one quote; return True when it is a level change.

        A level change is applied whole or not at all: its time is read
        first, and a time that cannot be read raises before anything changes.
        """
        # A level change: a one-tick spread with both sides moved. Anything
        # else (nearly every quote) only moves the live quote: the fast path,
        # plain stores and an early return, as every quote passes here.
        if ask - bid != TICK_CENTS or bid == self.level_bid or ask == self.level_ask:
            self.bid = bid
            self.ask = ask
            self.bid_size = bid_size
            self.ask_size = ask_size
            self.fresh = True         # (a flag, not a count: no int to allocate a quote)
            if bid:
                self.good_bid = bid
            return False
        if bid < MIN_LEVEL_BID_CENTS:     # under $1: prices in hundredths of a cent, rounded
            self.bid, self.ask, self.bid_size, self.ask_size = bid, ask, bid_size, ask_size
            self.fresh = True             # no level, and no level state changed
            if bid:
                self.good_bid = bid
            return False
        level_time_ns = as_ns(t)          # read first: a bad time changes nothing at all
        self.bid, self.ask, self.bid_size, self.ask_size = bid, ask, bid_size, ask_size
        self.good_bid = bid               # (over MIN_LEVEL_BID_CENTS: above zero)
        self.fresh = True
        # Armed only for a one-tick move of both sides in the same direction;
        # the first level and any jump (possible news) are not armed.
        prev_bid = self.level_bid
        self.armed = prev_bid is not None and abs(bid - prev_bid) == TICK_CENTS
        self.level_bid, self.level_ask, self.level_time_ns = bid, ask, level_time_ns
        self.level_changes += 1
        self.armed_levels += self.armed
        return True

    @property
    def mid(self) -> float:
        """The live quote's mid, in cents (the journal's yardstick)."""
        return (self.bid + self.ask) / 2

    def at_level(self) -> bool:
        """Is the live quote still the level (not widened or moved one side)?"""
        return self.bid == self.level_bid and self.ask == self.level_ask

    def disarm(self) -> None:
        """One attempt per level."""
        self.armed = False

    def forget(self) -> None:
        """After a gap in market data the level is forgotten: the next level
        seen is a first level, never armed (a one-cent move measured from a
        stale level is not a move)."""
        self.level_bid = self.level_ask = None
        self.armed = False


def feed(quote: Quote, rule: Rule) -> Callable[[int, int, int, int, ExchangeTime], bool]:
    """What each quote of a symbol is given to: its Quote tracker, then the
    rule's `on_quote` hook if it has one. A rule without one gets the
    tracker's own method: the hot path pays for no call it does not need."""
    if rule.on_quote is None:
        return quote.on_quote
    on_quote, hook = quote.on_quote, rule.on_quote

    def both(bid: int, ask: int, bid_size: int, ask_size: int, t: ExchangeTime) -> bool:
        changed = on_quote(bid, ask, bid_size, ask_size, t)
        hook(quote, t)
        return changed
    return both


# --------------------------------------------------------------------------
# Position tracker: this run's orders, their life, and fills. Pure, no I/O.
# --------------------------------------------------------------------------
@dataclass
class TrackedOrder:
    """One order of this run, as the Position tracker sees it."""
    side: str                      # "buy" or "sell"
    qty: int
    sent_at: float                 # monotonic seconds when the submit went out
    filled: int = 0                # cumulative filled_qty last seen
    notional_cents: Fraction = Fraction(0)   # cumulative filled_qty * filled_avg_price
    order_id: Optional[str] = None  # Alpaca's id, once known
    unknown: bool = False          # the submit got no clear answer: it may exist

    @property
    def pending(self) -> int:
        return self.qty - self.filled


class Position:
    """Order registry and fill accounting for this run's orders in one symbol.

    Fills are counted as the change in each order's cumulative `filled_qty`,
    so repeated, stale or out-of-order updates change nothing. An order whose
    outcome is unknown stays pending (it may exist and fill) until an update
    or a look-up settles it; one never found keeps its room for the rest of
    the run (it may yet be created). Realized P&L uses the average cost of the
    shares held, kept exactly (fractions of a cent), and is rounded only when
    printed.
    """

    def __init__(self, quantity: int, preexisting: int = 0) -> None:
        self.quantity = quantity
        self.preexisting = preexisting  # shares held before this run: count toward
        self.held = 0                   # the quantity, never sold by the bot
        self.cost_cents = Fraction(0)   # what the held shares cost (average cost)
        self.realized_cents = Fraction(0)
        self.bought = self.sold = 0
        self.orders_sent = 0
        self.orders: dict[str, TrackedOrder] = {}
        # Orders not found (404) once their submit could no longer be in
        # flight: taken as never placed, but Alpaca documents no bound on how
        # late an order may be created, so their shares keep their room:
        # the position never passes --quantity, and is never sold short.
        self.unfound: dict[str, TrackedOrder] = {}

    def _pending(self, side: str) -> int:
        """Shares still spoken for by this side's orders, tracked or never found."""
        return sum(o.pending for d in (self.orders, self.unfound) for o in d.values()
                   if o.side == side)

    @property
    def pending_buys(self) -> int:
        return self._pending("buy")

    @property
    def pending_sells(self) -> int:
        return self._pending("sell")

    def can_buy(self) -> bool:
        return self.preexisting + self.held + self.pending_buys + LOT <= self.quantity

    def sellable(self) -> int:
        """This run's shares not already being sold (never the shares held
        before the run)."""
        return self.held - self.pending_sells

    def pnl_cents(self, mark_cents: int) -> Fraction:
        """This run's P&L: realized, plus the shares held marked at `mark_cents`."""
        return self.realized_cents + self.held * mark_cents - self.cost_cents

    # -- an order's life ---------------------------------------------------
    def register(self, client_order_id: str, side: str, qty: int = LOT,
                 now: float = 0.0) -> None:
        """Record an order before it is sent, so even an update that beats
        the REST reply is matched and counted."""
        self.orders[client_order_id] = TrackedOrder(side, qty, now)
        self.orders_sent += 1

    def refused(self, client_order_id: str) -> None:
        """Alpaca answered 4xx: not placed. Release its pending shares at once."""
        if self.orders.pop(client_order_id, None) is not None:
            self.orders_sent -= 1

    def unknown(self, client_order_id: str) -> None:
        """5xx, a timeout, a lost connection: it may exist. It stays pending."""
        if (order := self.orders.get(client_order_id)) is not None:
            order.unknown = True

    def not_found(self, client_order_id: str, now: float) -> bool:
        """A look-up by client_order_id answered 404. Taken as never placed
        only once its submit can no longer be in flight; then it is no longer
        tracked (True), yet its shares keep their room (see `unfound`).
        Before that, it stays pending."""
        order = self.orders.get(client_order_id)
        if order is None or order.order_id is not None or now - order.sent_at <= IN_FLIGHT_S:
            return False
        self.unfound[client_order_id] = self.orders.pop(client_order_id)
        return True

    def found(self, client_order_id: str) -> bool:
        """An order not found exists after all: tracked again, as it was."""
        order = self.unfound.pop(client_order_id, None)
        if order is not None:
            self.orders[client_order_id] = order
        return order is not None

    def on_update(self, client_order_id: str, event: str, filled_qty: int,
                  filled_avg_cents: Fraction, order_id: Optional[str] = None) -> int:
        """Apply one trade update (or a REST look-up); return the shares newly
        filled (0 if none). It also supplies Alpaca's id, if not yet known.

        Updates for orders this run did not place are ignored.
        """
        order = self.orders.get(client_order_id)
        if order is None:
            return 0
        if order_id and order.order_id is None:
            order.order_id, order.unknown = order_id, False
        # Fills count from any update that carries a larger cumulative filled_qty
        # (a `pending_cancel` look-up with shares filled, say), terminal or not.
        delta = self._apply_fill(order, filled_qty, filled_avg_cents)
        if event in TERMINAL_EVENTS:
            del self.orders[client_order_id]   # releases what is still pending
        return delta

    def _apply_fill(self, order: TrackedOrder, filled_qty: int,
                    filled_avg_cents: Fraction) -> int:
        delta = min(filled_qty, order.qty) - order.filled
        if delta <= 0:
            return 0                       # repeated or stale update
        notional = Fraction(filled_avg_cents) * filled_qty
        delta_cents = notional - order.notional_cents
        order.filled, order.notional_cents = order.filled + delta, notional
        if order.side == "buy":
            self.held += delta
            self.cost_cents += delta_cents
            self.bought += delta
        else:
            cost = self.cost_cents * delta / self.held if self.held else Fraction(0)
            self.cost_cents -= cost
            self.realized_cents += delta_cents - cost
            self.held -= delta
            self.sold += delta
        return delta


# --------------------------------------------------------------------------
# The run around the rule: the position's room, then the run's guards.
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Intent:
    side: str
    limit_cents: int
    qty: int
    bid_size: int                  # the live sizes that decided it, for the log
    ask_size: int

    @property
    def reason(self) -> str:
        heavy, light = ((self.bid_size, self.ask_size) if self.side == "buy"
                        else (self.ask_size, self.bid_size))
        return (f"{'bid' if self.side == 'buy' else 'ask'} {heavy} > "
                f"{float(IMBALANCE_RATIO)}x{light}")


def order_for(side: str, quote: Quote, position: Position) -> Optional[Intent]:
    """The order a signal asks for, if the position has room for it."""
    if side == "buy" and position.can_buy():          # held + pending + 100 <= quantity
        return Intent("buy", quote.level_ask, LOT, quote.bid_size, quote.ask_size)
    if side == "sell" and position.sellable() >= 1:   # an odd lot is sold too; never short
        return Intent("sell", quote.level_bid, min(LOT, position.sellable()),
                      quote.bid_size, quote.ask_size)
    return None


def decide(quote: Quote, rule: Rule, position: Position, trade: Trade) -> Optional[Intent]:
    """Apply the strategy's decision rules, in order, to one trade print."""
    side = rule.signal_side(quote, trade)
    return None if side is None else order_for(side, quote, position)


WHY_BUDGET = "REST rate budget"      # no room for a submit and a cancel right now


@dataclass(frozen=True)
class Decision:
    """A signal, and what came of it: the order to send, or why none is."""
    side: str
    intent: Optional[Intent] = None
    why_not: str = ""


def follow(quote: Quote, rule: Rule, position: Position, trade: Trade,
           blocked: Optional[Callable[[], Optional[str]]],
           reserve: Callable[[], bool]) -> Optional[Decision]:
    """One trade print through the rule, then the run's guards around it.

    The rule is Rule.signal_side(), above, alone; this adds what is not the
    rule: the position's room (order_for), whether an order may go now, the
    REST budget, and one attempt per level. The bot, the replay's counts and
    the property test all call this, so they cannot disagree. None for a
    print that is no signal (nearly all of them). `blocked()` says why no
    order may go now (the trading stream is down, Ctrl+C, too close to the
    close, the loss limit: asked only on a signal, so it may cost), or None;
    `reserve` books the REST budget for the order's submit and cancel, or
    says there is none.
    """
    side = rule.signal_side(quote, trade)
    if side is None:
        return None
    if blocked is not None and (why := blocked()):
        return Decision(side, why_not=why)            # no order while our state may be stale
    intent = order_for(side, quote, position)
    if intent is None:
        return Decision(side, why_not="no room to buy" if side == "buy" else "nothing to sell")
    if not reserve():
        return Decision(side, why_not=WHY_BUDGET)     # skipped, not queued; still armed
    quote.disarm()                                    # an attempt: one per level
    return Decision(side, intent)


# --------------------------------------------------------------------------
# Edge records and wire formats: parsed once, at the edge.
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class OrderUpdate:
    """One order's state, from a trade update, a REST look-up or a POST reply."""
    client_order_id: str
    order_id: Optional[str]
    event: str
    side: str
    symbol: str
    filled_qty: int
    filled_avg_cents: Fraction         # exact: Alpaca's decimal string, in cents
    price_cents: Optional[Fraction] = None   # this execution's price (fills only)

    @classmethod
    def from_order(cls, order: dict, event: Optional[str] = None,
                   price: Optional[str] = None) -> "OrderUpdate":
        """An Alpaca order object; without an event, its status stands for one."""
        status = order.get("status") or ""
        return cls(order.get("client_order_id") or "", order.get("id"),
                   event or STATUS_EVENTS.get(status, status), order.get("side") or "",
                   order.get("symbol") or "", int(Decimal(order.get("filled_qty") or 0)),
                   Fraction(Decimal(order.get("filled_avg_price") or 0)) * 100,
                   exact_cents(price))

    @classmethod
    def from_stream(cls, data: dict) -> "OrderUpdate":
        """A `trade_updates` message's data."""
        return cls.from_order(data.get("order") or {}, data.get("event") or "",
                              data.get("price"))


def exact_cents(dollars: Any) -> Optional[Fraction]:
    """Alpaca's decimal string of dollars as exact cents; None if it is not one
    (an execution's own price is for the log: its shares count regardless)."""
    try:
        return Fraction(Decimal(dollars)) * 100
    except (ArithmeticError, TypeError, ValueError):
        return None


def print_cents(price: float) -> Optional[int]:
    """A trade price in whole cents, or None for a sub-penny print (such as a
    midpoint execution at 10.005), which is at neither the bid nor the ask."""
    cents = price * 100
    whole = round(cents)
    return whole if abs(cents - whole) < 1e-6 else None


def quote_cents(price: float) -> int:
    """A quote's price (dollars, a JSON number) in whole cents, rounded down.
    Exact for every whole-cent price (the 1e-6 absorbs binary floating-point
    error: 10.01 * 100 is 1000.9999999999999). Rounding down keeps a sub-dollar
    bid quoted in hundredths of a cent (0.9951) under 100 cents, so it never
    makes a level; at $1 and above Reg NMS Rule 612 allows whole cents only."""
    return int(price * 100 + 1e-6)


def dollars(cents: int | float) -> str:
    return f"{cents / 100:.2f}"


def far_limit(bid_cents: int) -> Decimal:
    """--check --order's buy limit: half the bid, so that nothing fills it
    (never at or above the bid). Whole cents at $1 and above; under $1, where
    Alpaca takes four decimals, hundredths of a cent (a $0.50 bid: 0.2500)."""
    half = Decimal(bid_cents) / 200
    return half.quantize(Decimal("0.01") if half >= 1 else Decimal("0.0001"), ROUND_DOWN)


def price_text(cents: Fraction) -> str:
    """An exact price in cents as dollars, to the cent or finer ('10.01',
    '10.0133'): one form, whichever answer reported the fill."""
    whole, frac = str((Decimal(cents.numerator) / Decimal(cents.denominator) / 100).quantize(
        Decimal("0.0001"))).split(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def signed_dollars(cents: Fraction) -> str:
    """An exact amount of cents as +$1.23 / -$1.23, rounded (half away from
    zero) only here, where it is printed."""
    whole = int(abs(cents) + Fraction(1, 2))
    return f"{'-' if cents < 0 else '+'}${whole // 100}.{whole % 100:02d}"


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


def earlier(t: ExchangeTime, ns: int, second: str) -> bool:
    """Is exchange time t before ns (whose UTC second is `second`, as text)?
    A UTC RFC-3339 time in an earlier second says so as text, unparsed:
    same-width fields in the same zone sort as text the way they sort in time."""
    if isinstance(t, str) and t[-1:] == "Z" and t[:19] < second:
        return True
    return as_ns(t) < ns


def when_in_words(at_s: float, now_s: float) -> str:
    """'in 3 h 12 min, at 09:30 ET (14:30 UTC)': a wait a trader reads at a glance."""
    minutes = max(0, round((at_s - now_s) / 60))
    days, rest = divmod(minutes, 24 * 60)
    span = " ".join(part for part in (f"{days} d" if days else "",
                                      f"{rest // 60} h" if rest >= 60 else "",
                                      f"{rest % 60} min") if part)
    utc = time.gmtime(at_s)
    et = datetime.datetime.fromtimestamp(at_s, NEW_YORK)
    return f"in {span}, at {et:%H:%M} ET ({utc.tm_hour:02d}:{utc.tm_min:02d} UTC)"


def stamp(t: ExchangeTime) -> str:
    """An exchange time as RFC-3339: the stream's own string, or ns formatted."""
    if isinstance(t, str):
        return t
    seconds, frac = divmod(t, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"


def ws_url(http_url: str) -> str:
    """The SDK's rule: an http(s) URL means ws(s)."""
    return re.sub(r"^http", "ws", http_url.rstrip("/"))


def endpoint_kind(base_url: str) -> str:
    """PAPER, LIVE, LOCAL (a server on this machine: the simulated Alpaca, or
    a tunnel) or CUSTOM."""
    if base_url.rstrip("/") == PAPER_URL:
        return "PAPER"
    if base_url.rstrip("/") == LIVE_URL:
        return "LIVE"
    host = (urllib.parse.urlsplit(base_url).hostname or "").lower()
    try:
        local = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        local = False
    return "LOCAL" if local else "CUSTOM"


def backoff_s(attempt: int, first: float = RECONNECT_FIRST_S,
              ceiling: float = RECONNECT_MAX_S) -> float:
    """Exponential backoff with jitter: 0.25-0.5 s, 0.5-1 s, ... up to 15-30 s."""
    top = min(ceiling, first * 2 ** attempt)
    return random.uniform(top / 2, top)


# --------------------------------------------------------------------------
# REST: the rate limiter, and the SDK in a thread of its own.
# --------------------------------------------------------------------------
class RateLimiter:
    """Keeps REST requests within Alpaca's rate and pauses after a 429.

    Every HTTP request counts, whichever path sends it (the SDK's thread or
    the order desk on the event loop), so it is locked. Callers pass the
    (monotonic) time.
    """

    def __init__(self, limit: int = RATE_LIMIT_PER_MIN, window_s: float = 60.0) -> None:
        self.limit, self.window_s = limit, window_s
        self.sent: collections.deque[float] = collections.deque()
        self.paused_until = 0.0
        self.strikes = 0                 # 429s in a row
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        while self.sent and self.sent[0] <= now - self.window_s:
            self.sent.popleft()

    def reserve(self, n: int, now: float) -> bool:
        """Book n requests now if there is room (an order books its submit
        and its cancel at once); False if not."""
        with self._lock:
            self._trim(now)
            if now < self.paused_until or len(self.sent) + n > self.limit:
                return False
            self.sent.extend([now] * n)
            return True

    def take(self, now: float) -> float:
        """Book one request now and return 0, or return how long to wait."""
        with self._lock:
            self._trim(now)
            full = self.sent[0] + self.window_s - now if len(self.sent) >= self.limit else 0.0
            wait = max(full, self.paused_until - now, 0.0)
            if wait <= 0:
                self.sent.append(now)
            return wait

    def throttled(self, now: float, reset_in: Optional[float]) -> float:
        """A 429: pause until Alpaca's reset, or back off 1, 2, 4 ... 60 s."""
        with self._lock:
            self.strikes += 1
            pause = reset_in if reset_in is not None else 2.0 ** (self.strikes - 1)
            pause = min(max(pause, 0.5), 60.0)
            self.paused_until = max(self.paused_until, now + pause)
            return pause

    def answered(self) -> None:
        self.strikes = 0

    def on_answer(self, status: int, headers: Any, now: float) -> None:
        """Every answer, whichever path got it: a 429 pauses new orders until
        Alpaca's reset (said in the log); anything else ends a run of 429s."""
        if status == 429:
            pause = self.throttled(now, reset_in_s(headers))
            log.warning("HTTP 429 from Alpaca: no new orders for %.1f s", pause)
        else:
            self.answered()


def reset_in_s(headers: Any) -> Optional[float]:
    """Seconds until Alpaca's X-RateLimit-Reset (unix seconds), if given."""
    reset = headers.get("X-RateLimit-Reset")
    return float(reset) - time.time() if reset and reset.isdigit() else None


class _RestAdapter(HTTPAdapter):
    """Every SDK request passes here: a timeout (the SDK sets none) and the
    rate limiter (it waits in the REST thread, never on the event loop)."""

    def __init__(self, limiter: RateLimiter) -> None:
        super().__init__()
        self.limiter = limiter

    def send(self, request, **kwargs):  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = REST_TIMEOUT_S
        while (wait := self.limiter.take(time.monotonic())) > 0:
            time.sleep(wait)
        response = super().send(request, **kwargs)
        self.limiter.on_answer(response.status_code, response.headers, time.monotonic())
        return response


def make_rest(cfg: Config, limiter: RateLimiter) -> REST:
    rest = REST(cfg.key_id, cfg.secret_key, cfg.base_url, api_version="v2")
    # The SDK's session is private, but a REST call with no timeout can hang
    # the REST thread for good, and the rate must be kept for every request;
    # mounting an adapter is the least intrusive way to do both.
    for scheme in ("http://", "https://"):
        rest._session.mount(scheme, _RestAdapter(limiter))
    # The SDK retries a 429 after a blocking 3 s; the bot backs off itself.
    rest._retry = 0
    # With no proxy configured, skip requests' per-call look-ups of proxy
    # variables and ~/.netrc (keys go in headers).
    if not proxy_configured():
        rest._session.trust_env = False
    return rest


def proxy_configured() -> bool:
    return any(name.lower().endswith("_proxy") for name in os.environ)


def http_status(exc: BaseException) -> Optional[int]:
    """The HTTP status of an SDK error, if the server answered at all."""
    if isinstance(exc, APIError):
        return exc.status_code
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return exc.response.status_code
    return None


def transient(exc: BaseException) -> bool:
    """Worth retrying: no answer, a 5xx or a 429 (not a refusal)."""
    status = http_status(exc)
    return status is None or status >= 500 or status == 429


class RestThread:
    """The SDK's REST calls leave the event loop here, one at a time: the
    SDK is built on `requests`, which blocks. A daemon thread, so a call
    hanging at exit never holds the process."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._work, name="rest", daemon=True).start()

    def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Awaitable:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((loop, future, functools.partial(fn, *args, **kwargs)))
        return future

    def _work(self) -> None:
        while True:
            loop, future, job = self._jobs.get()
            try:
                result, error = job(), None
            except BaseException as exc:        # handed back to the awaiting coroutine
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:                # the loop is gone: nobody is waiting
                return


def start_now(coro: Coroutine) -> asyncio.Task:
    """A task that runs at once up to its first real wait, so an order is on
    the wire before the handler that decided it returns (Python 3.12+; on
    3.11 it starts at the event loop's next turn)."""
    if sys.version_info >= (3, 12):
        return asyncio.Task(coro, loop=asyncio.get_running_loop(), eager_start=True)
    return asyncio.get_running_loop().create_task(coro)


def _settle(future: asyncio.Future, result: Any, error: Optional[BaseException]) -> None:
    if not future.done():
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


# --------------------------------------------------------------------------
# The journal: what every run did, in a SQLite file (docs/journal.md).
# --------------------------------------------------------------------------
JOURNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,          -- UTC
    ended_at TEXT,
    symbols TEXT NOT NULL,             -- comma-separated
    quantity INTEGER NOT NULL,         -- per symbol
    endpoint TEXT NOT NULL,
    feed TEXT NOT NULL,
    max_loss_cents INTEGER,
    exit_code INTEGER,
    marks TEXT,                        -- JSON: each symbol's last mid (cents) at the end
    script_sha256 TEXT                 -- the script it ran: its text is in `scripts`
);
CREATE TABLE IF NOT EXISTS scripts (   -- each script a run ran, once: what sim.drift replays
    sha256 TEXT PRIMARY KEY,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS signals (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,              -- the run's n-th signal
    symbol TEXT NOT NULL,
    exchange_time TEXT NOT NULL,       -- the print's time, as the stream gave it (UTC)
    exchange_ns INTEGER NOT NULL,
    side TEXT NOT NULL,                -- buy or sell
    level_bid_cents INTEGER, level_ask_cents INTEGER,
    bid_size INTEGER, ask_size INTEGER,                -- the live sizes
    print_cents INTEGER, print_size INTEGER, print_conditions TEXT,
    client_order_id TEXT,              -- the order sent, or NULL ...
    why_not TEXT,                      -- ... and why not
    mid_cents REAL,                    -- the mid at the print,
    mid_1s_cents REAL,                 -- 1 s later and
    mid_10s_cents REAL,                -- 10 s later (exchange time)
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS orders (
    client_order_id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    order_id TEXT,                     -- Alpaca's, once known
    symbol TEXT NOT NULL, side TEXT NOT NULL, qty INTEGER NOT NULL,
    type TEXT NOT NULL,                -- limit or market
    limit_cents INTEGER,
    exchange_ns INTEGER,               -- its signal's print (NULL: a market order)
    sent_at TEXT NOT NULL,             -- UTC
    answered_at TEXT, answer TEXT,     -- the submit's answer: HTTP status, or no answer
    outcome TEXT,                      -- fill, canceled, expired, ..., refused, never placed
    filled_qty INTEGER NOT NULL DEFAULT 0,
    filled_avg_price TEXT,             -- dollars, to the cent or finer: 10.01, 10.0133
    ended_at TEXT
);
CREATE TABLE IF NOT EXISTS fills (
    run_id TEXT NOT NULL,
    client_order_id TEXT NOT NULL,
    symbol TEXT NOT NULL, side TEXT NOT NULL,
    qty INTEGER NOT NULL,              -- this execution's shares
    price TEXT NOT NULL,               -- dollars, to the cent or finer: 10.01, 10.0133
    at TEXT NOT NULL,                  -- UTC, when the bot saw it
    exchange_ns INTEGER,               -- its order's print, to line up with market data
    position_after INTEGER NOT NULL    -- this run's shares of the symbol after it
);
CREATE TABLE IF NOT EXISTS events (   -- terminal events, and `new`: Alpaca's first word
    run_id TEXT NOT NULL, client_order_id TEXT NOT NULL, event TEXT NOT NULL, at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS signals_run ON signals (run_id);
CREATE INDEX IF NOT EXISTS orders_run ON orders (run_id);
CREATE INDEX IF NOT EXISTS fills_run ON fills (run_id);
CREATE TABLE IF NOT EXISTS checks (
    run_id TEXT NOT NULL, at TEXT NOT NULL, endpoint TEXT NOT NULL, feed TEXT NOT NULL,
    rest_p50_ms REAL, rest_p95_ms REAL,            -- GET /v2/clock round trips
    data_age_p50_ms REAL, data_age_p95_ms REAL,   -- a quote's age: local clock - exchange time
    order_round_trip_ms REAL,                      -- --order: POST sent -> its `new` update
    passed INTEGER NOT NULL
);
"""
J_RUN = ("INSERT INTO runs (run_id, started_at, symbols, quantity, endpoint, feed, "
         "max_loss_cents, script_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
J_SCRIPT = "INSERT OR IGNORE INTO scripts (sha256, text) VALUES (?, ?)"
J_RUN_END = "UPDATE runs SET ended_at = ?, exit_code = ?, marks = ? WHERE run_id = ?"
J_SIGNAL = ("INSERT INTO signals (run_id, seq, symbol, exchange_time, exchange_ns, side, "
            "level_bid_cents, level_ask_cents, bid_size, ask_size, print_cents, print_size, "
            "print_conditions, client_order_id, why_not, mid_cents) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
J_MID = {1: "UPDATE signals SET mid_1s_cents = ? WHERE run_id = ? AND seq = ?",
         10: "UPDATE signals SET mid_10s_cents = ? WHERE run_id = ? AND seq = ?"}
J_ORDER = ("INSERT INTO orders (client_order_id, run_id, symbol, side, qty, type, limit_cents, "
           "exchange_ns, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
J_ANSWER = ("UPDATE orders SET answered_at = ?, answer = ?, order_id = COALESCE(order_id, ?) "
            "WHERE client_order_id = ?")
J_ORDER_ID = "UPDATE orders SET order_id = ? WHERE client_order_id = ? AND order_id IS NULL"
J_FILL = ("INSERT INTO fills (run_id, client_order_id, symbol, side, qty, price, at, "
          "exchange_ns, position_after) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
J_OUTCOME = ("UPDATE orders SET outcome = ?, filled_qty = ?, filled_avg_price = ?, ended_at = ? "
             "WHERE client_order_id = ?")
J_EVENT = "INSERT INTO events (run_id, client_order_id, event, at) VALUES (?, ?, ?, ?)"
J_CHECK = ("INSERT INTO checks (run_id, at, endpoint, feed, rest_p50_ms, rest_p95_ms, "
           "data_age_p50_ms, data_age_p95_ms, order_round_trip_ms, passed) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
JOURNAL_ADDED = (("runs", "script_sha256", "TEXT"),)   # columns older journals lack
JOURNAL_FLUSH_S = 0.5                # committed this often: a crash loses at most a second
JOURNAL_BUSY_S = 10.0                # another bot writing the same file: wait this long


def upgrade(db: sqlite3.Connection) -> None:
    """A journal written by an older tick_taker.py gets the columns added since
    (its old runs keep them empty), so one file serves every version."""
    for table, column, kind in JOURNAL_ADDED:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            try:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:   # another bot added it a moment ago
                if "duplicate column" not in str(exc):
                    raise


def script_copy() -> tuple[str, str]:
    """This script's SHA-256 and text, as it is now: the journal keeps them, so
    that a later edit does not change what sim.drift replays."""
    data = Path(__file__).read_bytes()
    return hashlib.sha256(data).hexdigest(), data.decode("utf-8", "replace")


def utc_now() -> str:
    """Now, UTC, to the millisecond: '2026-11-23T14:30:01.123Z'."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


class Journal:
    """The run's signals, orders, fills and terminal events, in SQLite.

    Writes leave the event loop here, for a thread of their own: a trade
    never waits for the disk. They are committed every half second (a crash
    loses at most the last second), and at the end (Ctrl+C flushes). Several
    bots and runs share one file: WAL mode, and a writer waits its turn."""

    def __init__(self, path: Optional[Path]) -> None:
        self.path = path
        self._rows: queue.SimpleQueue = queue.SimpleQueue()
        self._closing = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._refused = 0                    # rows SQLite refused (left out, told once)
        if path is None:
            return
        deadline = time.monotonic() + JOURNAL_BUSY_S
        while True:
            try:
                self._db = sqlite3.connect(path, timeout=JOURNAL_BUSY_S,
                                           check_same_thread=False)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(JOURNAL_SCHEMA)
                upgrade(self._db)
                break
            except sqlite3.OperationalError as exc:
                # Another bot creating the same fresh file holds it for a moment
                # (switching it to WAL needs it alone): wait for it.
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise FatalError(f"cannot open the journal {path}: {exc} (--journal "
                                     "PATH, or --no-journal)") from None
                time.sleep(0.05)
            except sqlite3.Error as exc:
                raise FatalError(f"cannot open the journal {path}: {exc} (--journal PATH, or "
                                 "--no-journal)") from None
        self._thread = threading.Thread(target=self._write, name="journal", daemon=True)
        self._thread.start()

    def add(self, sql: str, *params: Any) -> None:
        """Queue one statement (cheap: the loop never waits for the disk)."""
        if self._thread is not None:
            self._rows.put((sql, params))

    def close(self, timeout_s: float = 5.0) -> None:
        """Write everything queued, then close."""
        if self._thread is not None:
            self._closing.set()
            self._thread.join(timeout_s)
            self._thread = None

    def _write(self) -> None:
        """Every JOURNAL_FLUSH_S, all that was queued, in one transaction. The
        thread sleeps in between (a row queued does not wake it), so it takes
        Python's lock rarely, never in the middle of an order."""
        while True:
            closing = self._closing.wait(JOURNAL_FLUSH_S)
            batch = []
            while True:
                try:
                    batch.append(self._rows.get_nowait())
                except queue.Empty:
                    break
            if batch:
                self._commit(batch)
            if closing:
                self._db.close()
                return

    def _commit(self, batch: list) -> None:
        for attempt in itertools.count():
            try:
                with self._db:                     # one transaction a batch
                    for sql, params in batch:
                        self._db.execute(sql, params)
                return
            except sqlite3.OperationalError as exc:   # locked past the busy timeout, a full disk
                if attempt == 0:
                    log.warning("journal: %s; retrying", exc)
                if attempt >= 5:
                    log.error("journal: %s: %d rows not written", exc, len(batch))
                    return
                time.sleep(1.0)
            except sqlite3.Error:                  # a row it refuses (a constraint, a value):
                self._commit_each(batch)           # keep every other row
                return

    def _commit_each(self, batch: list) -> None:
        """Row by row: a row SQLite refuses is logged (once a run) and left out;
        the writer goes on, so later rows are never lost with it."""
        for sql, params in batch:
            try:
                with self._db:
                    self._db.execute(sql, params)
            except sqlite3.Error as exc:
                if not self._refused:
                    log.error("journal: a row was refused (%s): left out; the journal goes "
                              "on (told once)", exc)
                self._refused += 1


# --------------------------------------------------------------------------
# The order desk: every order of the run, from decision to terminal state.
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    """What an order call got back: an HTTP status (None: no answer at all)."""
    status: Optional[int]
    body: Any = None
    text: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def refused(self) -> bool:
        """4xx: the server looked and said no (for a submit: not placed)."""
        return self.status is not None and 400 <= self.status < 500

    def __str__(self) -> str:
        return f"HTTP {self.status} {self.text}".strip() if self.status else self.text


NOT_FOUND = object()          # a look-up's 404
WASH_TRADE = "wash trade"     # Alpaca's refusal of an order that could trade against one of
                              # ours: "potential wash trade detected" (403 40310000; 422 seen)


class OrderDesk:
    """One home for each rule of docs/order-life.md.

    Submit and cancel go over one keep-alive aiohttp session on the event
    loop, so an order leaves the moment it is decided and quotes keep
    flowing while it is in flight. Look-ups by client_order_id go through the
    SDK in the REST thread. Each order gets one task that sees it to its
    terminal state: cancel at once (retried until terminal), resolve an
    unknown outcome, cancel everything at shutdown.
    """

    def __init__(self, cfg: Config, rest: REST, rest_thread: RestThread,
                 limiter: RateLimiter, positions: dict[str, Position],
                 journal: Journal, run_id: str) -> None:
        self.cfg, self.rest, self.rest_thread, self.limiter = cfg, rest, rest_thread, limiter
        self.positions = positions
        self.journal = journal
        self.run_id = run_id
        self.print_ns: dict[str, Optional[int]] = {}   # client_order_id -> its signal's print
        self._seq = itertools.count(1)
        self.symbol_of: dict[str, str] = {}       # client_order_id -> symbol (the registry)
        self.lives: dict[str, asyncio.Task] = {}  # client_order_id -> the task seeing it through
        self._news: dict[str, asyncio.Event] = {}  # set when an update for the order arrives
        self.stopping = False                     # Ctrl+C: no new order
        self.cancel_all = False                   # every open order of the run is to be
                                                  # cancelled (shutdown, the loss limit)
        self.session: Optional[aiohttp.ClientSession] = None
        self.last_call = -KEEP_WARM_S            # monotonic time of the last order call
        # Orders released as never placed (a 4xx, or a 404 once out of flight):
        # client_order_id -> (symbol, side, qty). An update for one means it
        # exists after all: it is tracked again, its fills count, it is cancelled.
        self.written_off: dict[str, tuple[str, str, int]] = {}
        self.on_fill: Callable[[], Any] = lambda: None   # after every fill (the loss limit)
        self.sent = 0                             # orders this run sent (or tried to)

    async def open(self) -> None:
        self.session = aiohttp.ClientSession(
            headers={"APCA-API-KEY-ID": self.cfg.key_id,
                     "APCA-API-SECRET-KEY": self.cfg.secret_key},
            timeout=aiohttp.ClientTimeout(total=ORDER_TIMEOUT_S),
            connector=aiohttp.TCPConnector(keepalive_timeout=60),
            trust_env=proxy_configured())

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def warm(self) -> None:
        """Open the order connection (one GET /v2/clock over it), so that an
        order finds it ready: start-up does this before it subscribes to the
        market data, so that even the first signal, which may come with the
        first frame, pays for no new connection (a TLS handshake to Alpaca).
        Best effort: if it fails, the first order opens its own."""
        answer = await self._request("GET", "/v2/clock")
        if answer.status is None or answer.status >= 300:
            log.info("order connection not opened ahead (%s); the first order will open it",
                     answer.text or f"HTTP {answer.status}")

    async def keep_warm(self) -> None:
        """Use the order connection whenever it has been idle KEEP_WARM_S: a
        signal minutes after the last one must not pay for a new connection.
        One request a half-minute."""
        while True:
            if time.monotonic() - self.last_call >= KEEP_WARM_S:
                await self.warm()
            await asyncio.sleep(max(0.0, self.last_call + KEEP_WARM_S - time.monotonic()))

    # -- deciding and sending ---------------------------------------------
    def reserve(self) -> bool:
        """Budget first: room for the submit *and* the cancel right now."""
        return self.limiter.reserve(2, time.monotonic())

    def new_client_id(self) -> str:
        return f"{CLIENT_ID_PREFIX}{self.run_id}-{next(self._seq)}"

    def send(self, symbol: str, side: str, qty: int, limit_cents: Optional[int],
             budgeted: bool = True, print_t: Optional[ExchangeTime] = None,
             wash_retry_until: Optional[float] = None) -> str:
        """Register the order, then send it now (a task on this loop); a limit
        is cancelled at once, a market order (flatten) only at shutdown.
        `print_t`: the exchange time of the print it follows (the journal);
        `wash_retry_until`: a market order refused as a potential wash trade
        is sent again until this epoch time (the close)."""
        coid = self.new_client_id()
        self.sent += 1
        self.positions[symbol].register(coid, side, qty, time.monotonic())
        self.symbol_of[coid] = symbol
        self._news[coid] = asyncio.Event()
        self._live(coid, start_now(self._life(coid, symbol, side, qty, limit_cents, budgeted,
                                              wash_retry_until)))
        self.print_ns[coid] = None if print_t is None else as_ns(print_t)
        # Journaled once the order is on the wire (Python 3.11 sends it at the
        # loop's next turn): the disk's bookkeeping never delays an order.
        asyncio.get_running_loop().call_soon(
            self.journal.add, J_ORDER, coid, self.run_id, symbol, side, qty,
            "market" if limit_cents is None else "limit", limit_cents, self.print_ns[coid],
            utc_now())
        return coid

    def _live(self, coid: str, task: asyncio.Task) -> None:
        """The task that sees an order through; once it ends, a terminal order
        is forgotten."""
        self.lives[coid] = task

        def done(_: asyncio.Task) -> None:
            if self.lives.get(coid) is task:
                del self.lives[coid]
            symbol = self.symbol_of.get(coid)
            if symbol is not None and coid not in self.positions[symbol].orders:
                self._news.pop(coid, None)
                self.symbol_of.pop(coid, None)
                self.print_ns.pop(coid, None)
        task.add_done_callback(done)

    async def _life(self, coid: str, symbol: str, side: str, qty: int,
                    limit_cents: Optional[int], budgeted: bool,
                    wash_retry_until: Optional[float] = None) -> None:
        body = {"symbol": symbol, "qty": str(qty), "side": side,
                "type": "market" if limit_cents is None else "limit", "time_in_force": "day",
                "client_order_id": coid}
        if limit_cents is not None:
            body["limit_price"] = dollars(limit_cents)
        position = self.positions[symbol]
        for attempt in itertools.count():
            if not budgeted:              # a market order waits its turn at the rate limiter
                await self._wait_for_budget()
                if self.stopping:         # Ctrl+C came while it waited: nothing goes after it
                    log.warning("order %s not sent: stopping", coid)
                    self._write_off(coid, symbol, side, qty)
                    self.journal_end(coid, "not sent: stopping", 0, None)
                    return
            if (order := position.orders.get(coid)) is not None:
                order.sent_at = time.monotonic()     # in flight from now, not from its decision
            answer = await self._request("POST", "/v2/orders", body, budgeted=True)
            self.journal.add(J_ANSWER, utc_now(), str(answer), answer.body.get("id")
                             if answer.ok and isinstance(answer.body, dict) else None, coid)
            if (answer.refused and WASH_TRADE in answer.text.lower() and wash_retry_until
                    and time.time() < wash_retry_until and not self.stopping):
                delay = backoff_s(attempt, RESOLVE_FIRST_S, RESOLVE_MAX_S)
                log.warning("order %s refused as a potential wash trade (an order of ours on "
                            "the other side may still be open): sending it again in %.1f s",
                            coid, delay)
                await asyncio.sleep(delay)
                budgeted = False
                continue
            break
        if answer.ok and isinstance(answer.body, dict):
            self.apply(OrderUpdate.from_order(answer.body))      # its id (a fill, even)
        elif answer.refused:
            log.warning("REJECTED %s: %s", coid, answer)
            self._write_off(coid, symbol, side, qty)
            self.journal_end(coid, f"refused: {answer}", 0, None)
            return
        else:
            log.warning("order %s: %s; outcome unknown: resolving it by client_order_id",
                        coid, answer)
            position.unknown(coid)
        await self._see_through(coid, position, ioc=limit_cents is not None,
                                cancel_budgeted=budgeted)

    def _write_off(self, coid: str, symbol: str, side: str, qty: int) -> None:
        """Release an order as never placed, remembering it: should it exist
        after all, an update for it brings it back (see `revive`)."""
        self.positions[symbol].refused(coid)
        self.written_off[coid] = (symbol, side, qty)

    def revive(self, update: OrderUpdate) -> Optional[str]:
        """An update for an order written off as never placed: it exists after
        all. Track it again (its fills count) and see it through (cancel it).
        Returns its symbol, or None if it was never written off."""
        found = self.written_off.pop(update.client_order_id, None)
        if found is None:
            return None
        symbol, side, qty = found
        coid = update.client_order_id
        log.warning("order %s, written off as never placed, exists after all (%s): tracking "
                    "it again and cancelling it", coid, update.event or "found open")
        position = self.positions[symbol]
        if not position.found(coid):          # refused (4xx): its room was released
            position.register(coid, side, qty, time.monotonic())
        self.symbol_of[coid] = symbol
        self._news[coid] = asyncio.Event()
        self._live(coid, asyncio.get_running_loop().create_task(
            self._see_through(coid, position, ioc=True, cancel_budgeted=False)))
        return symbol

    async def _wait_for_budget(self) -> None:
        while (wait := self.limiter.take(time.monotonic())) > 0:
            await asyncio.sleep(wait)

    async def _see_through(self, coid: str, position: Position, ioc: bool,
                           cancel_budgeted: bool) -> None:
        """Until the order is terminal: cancel it (an IOC at once, anything when
        everything is cancelled), retrying refusals; wait for its updates
        and, when none come, look it up; an unknown outcome is settled the
        same way."""
        step = 0                           # backoff step for retries and look-ups
        cancelled = False                  # a cancel was accepted, or was not needed
        while (order := position.orders.get(coid)) is not None:
            if order.order_id is not None and (ioc or self.cancel_all) and not cancelled:
                answer = await self._request("DELETE", f"/v2/orders/{order.order_id}",
                                             budgeted=cancel_budgeted)
                cancel_budgeted = False
                if answer.ok or answer.status in (404, 422):
                    cancelled, step = True, 0
                    if not answer.ok:     # already filled or gone: normal
                        log.info("cancel of %s not needed (%s)", coid, answer.text)
                    continue
                delay = backoff_s(step, RESOLVE_FIRST_S, RESOLVE_MAX_S)
                step += 1
                log.warning("cancel of %s refused (%s); retrying in %.1f s", coid, answer, delay)
                await self._news_or_timeout(coid, delay)
                continue
            if order.order_id is None:
                wait = backoff_s(step, RESOLVE_FIRST_S, RESOLVE_MAX_S)
            elif cancelled:
                wait = TERMINAL_WAIT_S * 2 ** min(step, 3)
            else:
                wait = RESOLVE_MAX_S       # a market order, working until it fills
            if await self._news_or_timeout(coid, wait):
                continue                   # an update came: look again
            step += 1
            found = await self.lookup(coid)
            if found is NOT_FOUND:
                side, qty = order.side, order.qty
                if position.not_found(coid, time.monotonic()):
                    self.written_off[coid] = (self.symbol_of[coid], side, qty)
                    log.warning("order %s was never placed (not found %.0f s after it was "
                                "sent); its %d shares keep their room for the rest of the "
                                "run, should Alpaca create it late, and it is looked up again "
                                "at a reconnect and at shutdown", coid, IN_FLIGHT_S, qty)
                    self.journal_end(coid, "never placed", 0, None)
            elif found is not None:
                if found.get("status") not in ("pending_cancel", None):
                    cancelled = False      # still working after our cancel: ask again
                self.apply(OrderUpdate.from_order(found))

    async def _news_or_timeout(self, coid: str, timeout: float) -> bool:
        """Wait for an update for the order (True) or the timeout (False)."""
        news = self._news.get(coid)
        if news is None:
            await asyncio.sleep(timeout)
            return False
        try:
            await asyncio.wait_for(news.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        news.clear()
        return True

    async def _request(self, method: str, path: str, body: Optional[dict] = None,
                       budgeted: bool = False) -> Answer:
        """One order call over the keep-alive session, with Alpaca's error body
        parsed. No answer (timeout, connection error) is Answer(None)."""
        if not budgeted:
            await self._wait_for_budget()
        assert self.session is not None
        self.last_call = time.monotonic()
        try:
            async with self.session.request(method, self.cfg.base_url + path,
                                            json=body) as resp:
                raw = await resp.read()
                status, headers = resp.status, resp.headers
        except asyncio.TimeoutError:
            return Answer(None, text=f"no answer within {ORDER_TIMEOUT_S:g} s")
        except aiohttp.ClientError as exc:
            return Answer(None, text=f"connection failed ({type(exc).__name__})")
        self.limiter.on_answer(status, headers, time.monotonic())
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        text = parsed.get("message", "") if isinstance(parsed, dict) and status >= 300 else ""
        return Answer(status, parsed, text or ("" if status < 300 else raw[:200].decode(
            "utf-8", "replace")))

    async def lookup(self, coid: str) -> Any:
        """The order by client_order_id, through the SDK: its JSON, NOT_FOUND
        on a 404, or None when REST gave no clear answer."""
        try:
            order = await self.rest_thread.call(self.rest.get_order_by_client_order_id, coid)
        except Exception as exc:
            if http_status(exc) == 404:
                return NOT_FOUND
            log.warning("look-up of %s failed (%s); will retry", coid, describe(exc))
            return None
        return order._raw

    # -- what comes back --------------------------------------------------
    def apply(self, update: OrderUpdate) -> None:
        """A trade update, a look-up or a POST reply: route it by the run's
        own client_order_id registry; anything else is ignored."""
        symbol = self.symbol_of.get(update.client_order_id) or self.revive(update)
        if symbol is None:
            log.debug("ignoring %s for an order this run did not place", update.event)
            return
        position = self.positions[symbol]
        coid = update.client_order_id
        order = position.orders.get(coid)
        if order is None:
            return                                     # already terminal
        known, notional = order.order_id, order.notional_cents
        delta = position.on_update(coid, update.event, update.filled_qty,
                                   update.filled_avg_cents, update.order_id)
        if known is None and order.order_id is not None:     # Alpaca's first word of it
            self.journal.add(J_ORDER_ID, order.order_id, coid)
            self.journal.add(J_EVENT, self.run_id, coid, "new", utc_now())
        if delta:
            # This execution's price: the stream says; a look-up gives only the
            # cumulative average, from which the new shares' price follows.
            price = price_text(update.price_cents if update.price_cents is not None
                               else (order.notional_cents - notional) / delta)
            log.info("FILL %s %d %s @ %s (%s; position %+d)", update.side.upper(), delta,
                     symbol, price, update.event, position.held)
            self.journal.add(J_FILL, self.run_id, coid, symbol, order.side, delta, price,
                             utc_now(), self.print_ns.get(coid), position.held)
            self.on_fill()
        if update.event in TERMINAL_EVENTS:
            if not delta:
                log.info("%s %s (filled %d)", update.event.upper(), coid, update.filled_qty)
            self.journal_end(coid, update.event, update.filled_qty,
                             price_text(update.filled_avg_cents) if update.filled_qty else None)
        if (news := self._news.get(update.client_order_id)) is not None:
            news.set()

    async def reconcile(self) -> None:
        """Apply the current state of every order still in flight, and of each
        never found (it may have been created late), as REST reports it:
        fills missed while the trading stream was down count once (cumulative
        filled_qty), terminal orders are released."""
        for coid in self.open_orders() + self.unfound():
            found = await self.lookup(coid)
            if isinstance(found, dict):
                self.apply(OrderUpdate.from_order(found))

    def open_orders(self) -> list[str]:
        return [coid for p in self.positions.values() for coid in p.orders]

    def unfound(self) -> list[str]:
        """Orders taken as never placed on a 404 (Position.unfound): they may
        yet be created, so they are looked up again."""
        return sorted(coid for p in self.positions.values() for coid in p.unfound)

    def journal_end(self, coid: str, outcome: str, filled: int, avg: Optional[str]) -> None:
        now = utc_now()
        self.journal.add(J_OUTCOME, outcome, filled, avg, now, coid)
        self.journal.add(J_EVENT, self.run_id, coid, outcome, now)

    # -- start and stop ---------------------------------------------------
    async def cancel_stale(self, order_id: str, coid: str) -> None:
        """An earlier run's open order: cancel it and wait until REST says it
        is terminal (so the position read next is final)."""
        deadline = time.monotonic() + SHUTDOWN_DEADLINE_S
        step = 0
        while time.monotonic() < deadline:
            answer = await self._request("DELETE", f"/v2/orders/{order_id}")
            if answer.ok or answer.status in (404, 422):
                try:
                    order = await self.rest_thread.call(self.rest.get_order, order_id)
                    if order.status not in OPEN_STATUSES:
                        return
                except Exception as exc:
                    if http_status(exc) == 404:
                        return
            await asyncio.sleep(backoff_s(step, RESOLVE_FIRST_S, RESOLVE_MAX_S))
            step += 1
        raise FatalError(f"could not cancel {coid}, an open order of an earlier run: "
                         "cancel it by hand, then start again")

    async def cancel_everything(self, deadline_s: float = SHUTDOWN_DEADLINE_S) -> list[str]:
        """Cancel every order of this run still open, with retries, until each
        is terminal or the deadline passes. Returns the client ids still open
        (or unknown) at the deadline."""
        self.cancel_all = True
        for news in self._news.values():
            news.set()                     # a working market order: cancel it now
        await self.settle(deadline_s)
        self.cancel_all = False
        return self.open_orders()

    async def settle(self, deadline_s: float) -> None:
        """Wait until every order of the run is terminal, or the deadline."""
        lives = list(self.lives.values())
        if lives:
            await asyncio.wait(lives, timeout=deadline_s)

    async def shutdown(self, deadline_s: float = SHUTDOWN_DEADLINE_S) -> list[str]:
        """Ctrl+C: no new order; cancel every order of this run still open,
        with retries, until each is terminal or the deadline passes; then ask
        the broker for its open orders and cancel any of this run's that the
        bot does not know open (one written off, then created late). Returns
        the client ids still open (or unknown) at the deadline."""
        self.stopping = True
        deadline = time.monotonic() + deadline_s
        await self.cancel_everything(deadline_s)
        # Only a run that sent orders can have strays. The listing is a check:
        # it may wait (the REST thread, the rate limit) SHUTDOWN_LIST_S, or up
        # to the deadline when an order released on a 404 may exist after all.
        strays: Optional[list[dict]] = []
        if self.sent:
            try:
                strays = await asyncio.wait_for(self.strays(), max(
                    SHUTDOWN_LIST_S, deadline - time.monotonic() if self.unfound() else 0))
            except asyncio.TimeoutError:
                log.warning("could not list the open orders at Alpaca in time")
                strays = None
        for order in strays or ():
            coid = order.get("client_order_id", "")
            log.warning("order %s of this run is open at Alpaca though the bot did not "
                        "know it: cancelling it", coid)
            symbol = order.get("symbol", "")
            if symbol in self.positions:           # tracked from now on: its fills count,
                self.written_off.setdefault(       # its cancel is retried until terminal
                    coid, (symbol, order.get("side", ""), int(Decimal(order.get("qty") or 0))))
            self.apply(OrderUpdate.from_order(order, event="new"))
        # Each order never found: looked up once more if the broker could be
        # asked at all. Created late and filled meanwhile it is no stray (not
        # open), yet its fills count. With no word, it is not known closed.
        unsure: list[str] = []
        for coid in self.unfound():
            found = None
            if strays is not None:
                try:
                    found = await asyncio.wait_for(self.lookup(coid), max(
                        0.1, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    pass
            if isinstance(found, dict):
                self.apply(OrderUpdate.from_order(found))
            elif found is None:
                unsure.append(coid)
        if self.lives:
            await self.cancel_everything(max(0.0, deadline - time.monotonic()))
        for task in list(self.lives.values()):
            task.cancel()
        return self.open_orders() + unsure

    async def list_open(self, call: Callable[..., Awaitable]) -> list:
        """Every open order of the account, newest first, in pages of 500 (the
        most one listing gives), through `call` (start-up's retrying one, or
        the REST thread's). Alpaca's `until` is exclusive, and orders may share
        a submission time: each next page starts a microsecond after the last
        one seen, overlapping the page before, and orders seen are dropped."""
        found: dict[str, Any] = {}                 # id -> order, newest first
        until = None
        while True:
            page = await call(self.rest.list_orders, status="open", limit=ORDERS_PAGE,
                              until=until, direction="desc")
            new = [o for o in page if o.id not in found]
            found.update((o.id, o) for o in new)
            if len(page) < ORDERS_PAGE:
                return list(found.values())
            if not new:
                log.warning("over %d open orders submitted within one microsecond: the "
                            "listing stops there", ORDERS_PAGE)
                return list(found.values())
            until = stamp(parse_ns(page[-1]._raw["submitted_at"]) + 1000)

    async def strays(self) -> Optional[list[dict]]:
        """The broker's open orders of this run that the bot does not track;
        None if the broker could not be asked."""
        mine = f"{CLIENT_ID_PREFIX}{self.run_id}-"
        try:
            found = await self.list_open(self.rest_thread.call)   # found by prefix
        except Exception as exc:
            log.warning("could not list the open orders at Alpaca (%s)", describe(exc))
            return None
        tracked = set(self.open_orders())
        return [o._raw for o in found if o.client_order_id.startswith(mine)
                and o.client_order_id not in tracked]


OPEN_STATUSES = frozenset({"new", "accepted", "pending_new", "partially_filled",
                           "accepted_for_bidding", "pending_cancel", "pending_replace",
                           "held", "calculated", "stopped", "suspended"})


def describe(exc: BaseException) -> str:
    """An error in a few words, for the log (never a traceback)."""
    status = http_status(exc)
    if status is not None:
        return f"HTTP {status} {exc}" if isinstance(exc, APIError) else f"HTTP {status}"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {REST_TIMEOUT_S} s"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------
# The two websocket clients (JSON mode): market data, and trade updates.
# --------------------------------------------------------------------------
class StreamError(Exception):
    """A stream failed to connect, sign in or subscribe: worth a retry."""


class ConnectionLimit(StreamError):
    """406: another session holds the account's market-data connection."""


async def connect(url: str, what: str) -> websockets.WebSocketClientProtocol:
    # Pings every 10 s: a connected-but-dead socket is noticed within 40 s.
    try:
        return await websockets.connect(
            url, ping_interval=10, ping_timeout=30, close_timeout=WS_CLOSE_TIMEOUT_S,
            open_timeout=REST_TIMEOUT_S)
    except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as exc:
        raise StreamError(f"cannot connect to the {what} at {url}: {exc}") from None


async def recv_json(ws: websockets.WebSocketClientProtocol, what: str) -> Any:
    """The next message during sign-in, decoded; any failure is a StreamError."""
    try:
        raw = await asyncio.wait_for(ws.recv(), REST_TIMEOUT_S)
        return json.loads(raw)
    except (asyncio.TimeoutError, websockets.ConnectionClosed) as exc:
        raise StreamError(f"the {what} closed during sign-in: {exc}") from None
    except ValueError:
        raise StreamError(f"the {what} sent a malformed message during sign-in") from None


DATA_ERRORS = {
    402: "Alpaca refused the API keys on the market-data stream (auth failed)",
    405: "symbol limit exceeded: your market-data plan allows fewer symbols "
         "(the free plan: 30)",
    406: "connection limit exceeded: another program already holds this "
         "account's market-data connection (close it, or wait ~90 s after a crash)",
    409: "your market-data plan does not include this feed (try --feed iex)",
}
FATAL_DATA_ERRORS = (402, 405, 409)   # refused keys, plan limits: retrying cannot help


class DataStream:
    """Market-data v2 stream client (JSON mode): quotes and trades."""

    what = "market-data stream"

    def __init__(self, cfg: Config, quotes: dict[str, Callable[..., bool]],
                 on_level: Callable[[str], None], on_trade: Callable) -> None:
        """`quotes`: each symbol's quote tracker (`Quote.on_quote`, True on a
        level change, which is then reported to `on_level`)."""
        self.url = f"{ws_url(cfg.data_url)}/v2/{cfg.feed}"
        self.cfg = cfg
        self.quotes, self.on_level, self.on_trade = quotes, on_level, on_trade
        self.watch: Optional[Callable[[list], None]] = None   # shown each frame, when set
        self.ws: Optional[websockets.WebSocketClientProtocol] = None

    async def open(self) -> None:
        """Connect, sign in and subscribe. Refused keys or plan limits are
        fatal; anything else raises StreamError, worth a retry."""
        await self.close()
        self.ws = await connect(self.url, self.what)
        try:
            first = await recv_json(self.ws, self.what)
            if not (isinstance(first, list) and first and isinstance(first[0], dict)
                    and first[0].get("T") == "success"):
                raise StreamError(f"unexpected greeting from the {self.what}")
            await self.ws.send(json.dumps(
                {"action": "auth", "key": self.cfg.key_id, "secret": self.cfg.secret_key}))
            self._check(await recv_json(self.ws, self.what))
            symbols = list(self.cfg.symbols)
            for i in range(0, len(symbols), SUBSCRIBE_CHUNK):   # frames of a safe size
                chunk = symbols[i:i + SUBSCRIBE_CHUNK]
                await self.ws.send(json.dumps(
                    {"action": "subscribe", "quotes": chunk, "trades": chunk}))
                while True:                   # until this part is confirmed
                    reply = self._check(await recv_json(self.ws, self.what))
                    if reply.get("T") == "subscription":
                        break
        except websockets.ConnectionClosed as exc:
            raise StreamError(f"the {self.what} closed during sign-in: {exc}") from None
        names = self.cfg.symbols
        log.info("market data: subscribed to %s quotes and trades (%s)",
                 ",".join(names) if len(names) <= 10 else f"{len(names):,} symbols' "
                 f"({','.join(names[:5])}, ...)", self.url)

    def _check(self, messages: Any) -> dict:
        """A control message, or the error it carries raised."""
        if not (isinstance(messages, list) and messages and isinstance(messages[0], dict)):
            raise StreamError(f"malformed message from the {self.what}")
        reply = messages[0]
        if reply.get("T") == "error":
            code = reply.get("code")
            text = DATA_ERRORS.get(code, f"{self.what} error {code}: {reply.get('msg')}")
            if code in FATAL_DATA_ERRORS:
                raise FatalError(text)
            raise (ConnectionLimit if code == 406 else StreamError)(text)
        return reply

    async def run(self) -> None:
        """Dispatch messages until the socket closes (then return)."""
        async for raw in self.ws:
            try:
                messages = json.loads(raw)
            except ValueError:        # one malformed frame must not end the run
                log.warning("skipped a malformed market-data frame: %.80r", raw)
                continue
            try:
                self.dispatch(messages)
                if self.watch is not None:
                    self.watch(messages)
            except Exception:         # nor a frame of the wrong shape
                log.warning("skipped unreadable market data: %.200s", raw)

    def dispatch(self, messages: list[dict]) -> None:
        """Each quote to its symbol's tracker, each trade to `on_trade`. The
        hot path of the bot: kept to plain dict look-ups and calls."""
        quotes, on_trade = self.quotes, self.on_trade
        for m in messages:
            kind = m.get("T")
            try:
                if kind == "q":   # JSON numbers: prices are floats, sizes ints
                    # Whole cents, rounded down (see quote_cents; inlined: every quote
                    # passes here, and int() is twice as fast as round()).
                    if quotes[m["S"]](int(m["bp"] * 100 + 1e-6), int(m["ap"] * 100 + 1e-6),
                                      m["bs"], m["as"], m["t"]):
                        self.on_level(m["S"])
                elif kind == "t":   # (corrections "c" and cancels "x" never trigger)
                    if (cents := print_cents(m["p"])) is not None and m["S"] in quotes:
                        on_trade(m["S"], Trade(cents, m["s"], m["t"], m.get("c")))
                elif kind == "error":
                    log.warning("market data error %s: %s", m.get("code"), m.get("msg"))
            except (KeyError, TypeError, ValueError) as exc:   # skip it, keep the rest
                if m.get("S") in quotes:          # (not a symbol of ours: not ours to read)
                    log.warning("skipped unreadable market data (%s): %.200r", exc, m)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


class TradingStream:
    """Trading stream client: `trade_updates` for this account."""

    what = "trading stream"

    def __init__(self, cfg: Config, on_update: Callable[[OrderUpdate], None]) -> None:
        self.url = f"{ws_url(cfg.base_url)}/stream"
        self.cfg = cfg
        self.on_update = on_update
        self.ws: Optional[websockets.WebSocketClientProtocol] = None

    async def open(self) -> None:
        """Connect, sign in, listen, and wait for Alpaca's `listening`
        acknowledgement (only then are updates sure to come); refused keys
        are fatal."""
        await self.close()
        self.ws = await connect(self.url, self.what)
        try:
            await self.ws.send(json.dumps(
                {"action": "auth", "key": self.cfg.key_id, "secret": self.cfg.secret_key}))
            reply = await recv_json(self.ws, self.what)
            data = reply.get("data") if isinstance(reply, dict) else None
            if not isinstance(data, dict) or "status" not in data:
                raise StreamError(f"unexpected sign-in reply from the {self.what}: "
                                  f"{str(reply)[:80]}")     # a glitch: retried
            if data["status"] != "authorized":
                raise FatalError("Alpaca refused the API keys on the trading stream")
            await self.ws.send(json.dumps(
                {"action": "listen", "data": {"streams": ["trade_updates"]}}))
            while True:
                reply = await recv_json(self.ws, self.what)
                if isinstance(reply, dict) and reply.get("stream") == "listening":
                    break
                self._dispatch(reply)          # an update that beat the acknowledgement
        except websockets.ConnectionClosed as exc:
            raise StreamError(f"the {self.what} closed during sign-in: {exc}") from None
        log.info("trading stream: listening for trade_updates (%s)", self.url)

    async def run(self) -> None:
        async for raw in self.ws:
            try:
                msg = json.loads(raw)
            except ValueError:        # one bad frame must not end all later updates
                log.warning("skipped a malformed trading-stream frame: %.80r", raw)
                continue
            self._dispatch(msg)

    def _dispatch(self, msg: Any) -> None:
        try:
            if msg.get("stream") != "trade_updates":
                return
            update = OrderUpdate.from_stream(msg["data"])
        except Exception:
            log.warning("skipped a malformed trade update: %.200r", msg)
            return
        try:
            self.on_update(update)
        except Exception:             # nor a bug in applying one (the SDK's trap)
            log.exception("could not apply trade update %s", update)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


# --------------------------------------------------------------------------
# TickTaker: wires the streams to Quote, Position, follow() and the desk. It is
# the sum of four parts, each one concern and read on its own (StartupChecks,
# StreamSession, RunGuards, Shutdown), and of its handlers and run() below them.
# --------------------------------------------------------------------------
@dataclass
class Instrument:
    """One symbol's state: its level tracker, its rule and its position."""
    symbol: str
    quote: Quote
    position: Position
    rule: Rule = field(default_factory=Rule)   # the rule's own memory, per symbol
    signals: int = 0              # prints the rule followed (the summary counts the quiet)

    def mark(self) -> Fraction:
        """What a held share is worth for the loss limit: the last good bid the
        stream carried (every quote's, not one sampled now and then: IEX often
        sends `bp: 0`), or its average cost before any bid was seen: never
        "unknown"."""
        if self.quote.good_bid:
            return Fraction(self.quote.good_bid)
        p = self.position
        return p.cost_cents / p.held if p.held else Fraction(0)


class StartupChecks:
    """Start-up, everything before trading: the keys and the account, the
    symbols, the market's hours, what earlier runs left open or held, both
    streams. A part of TickTaker (below)."""

    async def start(self) -> bool:
        """Everything before trading; False if stopped while waiting."""
        await self.check_account()
        await self.check_symbols()
        if not await self.wait_for_open():
            return False
        await self.desk.open()
        await self.adopt_account_state()
        await self.desk.warm()                   # before the first print can come
        try:
            await self.open_stream(self.trading)
            await self.open_stream(self.data)
        except FatalError:
            await self.trading.close()
            await self.data.close()
            raise
        self.trading_live = True
        return True

    async def rest_call(self, what: str, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """A start-up REST call: transient faults (no answer, 5xx, 429) are
        retried with backoff, then end the run with a clear message; refused
        keys end it at once; other 4xx go to the caller."""
        for attempt in range(STARTUP_TRIES):
            try:
                return await self.rest_thread.call(fn, *args, **kwargs)
            except Exception as exc:
                status = http_status(exc)
                if status in (401, 403):
                    raise FatalError(
                        f"Alpaca refused the API keys (HTTP {status}) at {self.cfg.base_url}: "
                        "check APCA_API_KEY_ID and APCA_API_SECRET_KEY (paper and live "
                        "keys differ)") from None
                if not transient(exc):
                    raise
                if attempt + 1 == STARTUP_TRIES:
                    raise FatalError(f"cannot {what} at {self.cfg.base_url}: {describe(exc)} "
                                     f"({STARTUP_TRIES} tries)") from None
                delay = backoff_s(attempt)
                log.warning("could not %s (%s); retrying in %.1f s", what, describe(exc), delay)
                await asyncio.sleep(delay)

    async def check_account(self) -> None:
        """One REST call proves the keys before any stream opens."""
        try:
            acct = await self.rest_call("read the account", self.rest.get_account)
        except APIError as exc:
            raise FatalError(f"cannot read the account: {describe(exc)}") from None
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

    async def check_symbols(self) -> None:
        """Each symbol must exist at Alpaca, be active and tradable: a typo
        stops here, before anything trades. One request for any number of
        symbols (every active asset), checked here; only a symbol not among
        them is looked up on its own, to say why (the run ends anyway)."""
        try:
            listed = await self.rest_call("list the assets", self.rest.list_assets,
                                          status="active", asset_class="us_equity")
        except APIError as exc:
            raise FatalError(f"cannot list the assets: {describe(exc)}") from None
        active = {a._raw.get("symbol"): a._raw for a in listed}
        problems = []
        for symbol in self.cfg.symbols:
            asset = active.get(symbol)
            if asset is None:
                problems.append(await self.why_not_listed(symbol))
            elif not asset.get("tradable"):
                problems.append(f"{symbol} is not tradable at Alpaca")
        if problems:
            raise FatalError("; ".join(problems))

    async def why_not_listed(self, symbol: str) -> str:
        """A symbol missing from the active assets: unknown, or inactive."""
        try:
            asset = (await self.rest_call(f"look up {symbol}", self.rest.get_asset,
                                          symbol))._raw
        except APIError as exc:
            if exc.status_code in (404, 422):
                return f"{symbol}: Alpaca knows no such symbol (check the spelling)"
            return f"cannot look up {symbol}: {describe(exc)}"
        return f"{symbol} is {asset.get('status')} at Alpaca: it does not trade"

    async def wait_for_open(self) -> bool:
        """Wait until the market is open (the clock endpoint); False if stopped."""
        while True:
            clock = await self.rest_call("read the market clock", self.rest.get_clock)
            if clock.is_open:
                self.close_at = clock.next_close.timestamp()
                return True
            wait = clock.next_open.timestamp() - time.time()
            log.info("market closed: it opens %s; waiting (Ctrl+C to stop)",
                     when_in_words(clock.next_open.timestamp(), time.time()))
            try:
                await asyncio.wait_for(self.stop.wait(), min(max(wait, 0.5), 300))
                return False
            except asyncio.TimeoutError:
                pass

    async def adopt_account_state(self) -> None:
        """A restart: cancel the open orders of earlier runs of this bot, report
        anyone else's, then count the shares already held toward --quantity.
        A fixed number of requests for any number of symbols: every open order
        (pages of 500), every position."""
        mine = set(self.cfg.symbols)
        for o in await self.desk.list_open(functools.partial(self.rest_call,
                                                             "list open orders")):
            if o.symbol not in mine:
                continue
            if o.client_order_id.startswith(CLIENT_ID_PREFIX):
                log.warning("cancelling %s, an open order of an earlier run", o.client_order_id)
                await self.desk.cancel_stale(o.id, o.client_order_id)
            else:
                log.warning("open order %s (%s %s %s) is not this bot's: left alone",
                            o.client_order_id, o.side, o.qty, o.symbol)
        held = {p.symbol: int(Decimal(p.qty)) for p in await self.rest_call(
            "read the positions", self.rest.list_positions)}
        for symbol, inst in self.instruments.items():
            if held.get(symbol):
                log.warning("the account already holds %+d %s: counted toward --quantity %d; "
                            "the bot sells only shares it buys in this run",
                            held[symbol], symbol, self.cfg.quantity)
            inst.position.preexisting = max(held.get(symbol, 0), 0)

    async def open_stream(self, stream: Any) -> None:
        """The first connection: transient faults retried a few times; refused
        keys and plan limits are fatal. Another connection holding the
        account's one data connection (406) is retried for CONNECTION_LIMIT_S
        (a crashed run's connection takes a while to clear, and Alpaca's own
        Go SDK retries it), then fatal."""
        attempt = 0
        until = time.monotonic() + CONNECTION_LIMIT_S
        while True:
            try:
                return await stream.open()
            except ConnectionLimit as exc:
                if time.monotonic() >= until:
                    raise FatalError(f"{exc} (still after {CONNECTION_LIMIT_S:.0f} s)") from None
                delay = min(backoff_s(attempt), max(0.5, until - time.monotonic()))
                attempt += 1
                log.warning("%s; retrying in %.1f s, for up to %.0f s in all", exc, delay,
                            CONNECTION_LIMIT_S)
                await asyncio.sleep(delay)
                continue
            except StreamError as exc:
                if attempt + 1 >= STARTUP_TRIES:
                    raise FatalError(f"{exc} ({STARTUP_TRIES} tries)") from None
                delay = backoff_s(attempt)
                attempt += 1
                log.warning("%s; retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)


class StreamSession:
    """The streaming session: each stream run and, when it drops, reconnected
    with backoff; what a drop means (the levels forgotten; no new orders
    until the fills missed are looked up); the per-symbol watchdog. A part
    of TickTaker (below)."""

    async def keep_streaming(self, stream: Any, on_down: Callable,
                             on_up: Callable[[], Awaitable]) -> None:
        """Run a stream; when it drops, reconnect with backoff and resubscribe.
        The backoff restarts only once a connection has stayed up STABLE_S."""
        name = stream.what
        attempt = 0
        while True:
            up_at = time.monotonic()
            try:
                await stream.run()
                reason = "closed by the server"
            except websockets.ConnectionClosed as exc:
                reason = str(exc)
            if self.stop.is_set() or self.desk.stopping:
                return
            on_down()
            if time.monotonic() - up_at >= STABLE_S:
                attempt = 0
            log.warning("the %s dropped (%s); reconnecting", name, reason)
            while True:
                delay = backoff_s(attempt)
                attempt += 1
                await asyncio.sleep(delay)
                try:
                    await stream.open()            # FatalError (refused keys) ends the run
                    break
                except StreamError as exc:
                    log.warning("%s: reconnect failed (%s); retrying", name, exc)
            log.info("the %s reconnected", name)
            await on_up()

    def data_down(self) -> None:
        for inst in self.instruments.values():
            inst.quote.forget()
        log.warning("market data gap: level forgotten; the next level is a first level")

    async def data_up(self) -> None:
        """Nothing more: the levels were forgotten when the stream dropped."""

    def trading_down(self) -> None:
        self.trading_live = False
        log.warning("no new orders until the trading stream reconnects")

    async def trading_up(self) -> None:
        """Fills may have happened while the stream was down: ask for them."""
        await self.desk.reconcile()
        self.trading_live = True

    async def watchdog(self) -> None:
        """A symbol with no quotes for stale_s seconds: warn, and forget its level
        (a gap in its data). Per symbol: a quiet symbol is not a dead stream;
        when every symbol is quiet, that is said too."""
        stale_s = self.cfg.stale_s
        since = dict.fromkeys(self.instruments, time.monotonic())   # the last quote seen
        warned: set[str] = set()
        idle: set[str] = set()                   # told: under $1, no level to follow
        all_quiet = False
        while True:
            await asyncio.sleep(min(1.0, stale_s / 4))
            now = time.monotonic()
            for symbol, inst in self.instruments.items():
                if 0 < inst.quote.bid < MIN_LEVEL_BID_CENTS and symbol not in idle:
                    idle.add(symbol)
                    log.warning("%s quotes under $%s (MIN_LEVEL_BID_CENTS; under $1, in "
                                "hundredths of a cent): no level is made there, so the bot "
                                "stays idle on it", symbol, f"{MIN_LEVEL_BID_CENTS / 100:g}")
                if inst.quote.fresh:
                    inst.quote.fresh = False
                    since[symbol] = now
                    warned.discard(symbol)
                elif now - since[symbol] >= stale_s and symbol not in warned:
                    warned.add(symbol)
                    inst.quote.forget()
                    log.warning("no quotes for %s for %.0f s: its level forgotten; the next "
                                "level is a first level", symbol, now - since[symbol])
            if len(self.instruments) > 1 and (warned == set(self.instruments)) != all_quiet:
                all_quiet = not all_quiet
                if all_quiet:
                    log.warning("no quotes for any symbol: the stream may be dead (its pings "
                                "will tell)")


class RunGuards:
    """The run's guards, apart from the rule (STRATEGY: "the rule versus the
    run's guards"): why no order may go now, the close, the loss limit
    (checked when a signal is decided, after fills, and on a timer) and the
    flatten. A part of TickTaker (below)."""

    def blocked(self) -> Optional[str]:
        """Why no order may go now (our state may be stale, or the run is
        ending), or None. Asked only on a signal (see follow)."""
        if self.loss_reached():                  # at this moment, not only on a timer
            return "loss limit"
        if self.stop.is_set() or self.desk.stopping:
            return "stopping"
        if self.closing:
            return "too close to the close"
        if not self.trading_live:
            return "trading stream down"
        return None

    async def close_watch(self) -> None:
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
        self.stop.set()

    def pnl_cents(self) -> Fraction:
        """This run's P&L over all symbols: realized, plus the shares held marked
        at the live bid (or the last good one: see Instrument.mark)."""
        return sum((i.position.pnl_cents(i.mark()) for i in self.instruments.values()),
                   Fraction(0))

    def loss_reached(self) -> bool:
        """--max-loss: has this run's P&L reached -DOLLARS? Asked when a signal
        is decided, after every fill, and every LOSS_CHECK_S (the mark moves
        with the quotes). The first time, the run halts: no new orders,
        cancel this run's open orders, sell what it holds at market, stop."""
        limit = self.cfg.max_loss_cents
        if self.halted or limit is None:
            return self.halted is not None
        pnl = self.pnl_cents()
        if pnl > -limit:
            return False
        self.halted = (f"LOSS LIMIT: this run's P&L {signed_dollars(pnl)} reached "
                       f"{signed_dollars(Fraction(-limit))} (--max-loss)")
        log.error("%s: no new orders; cancelling this run's open orders and selling "
                  "what it holds at market", self.halted)
        self.halting = asyncio.get_running_loop().create_task(self.halt())
        return True

    async def halt(self) -> None:
        await self.flatten()
        await self.desk.settle(SHUTDOWN_DEADLINE_S)
        self.stop.set()

    async def loss_watch(self) -> None:
        """--max-loss between fills and signals: the mark moves with the quotes."""
        if self.cfg.max_loss_cents is None:
            return
        while not self.loss_reached():
            await asyncio.sleep(LOSS_CHECK_S)

    async def flatten(self) -> None:
        """Sell, at market, the shares this run bought and still holds, once
        this run's open orders are cancelled and terminal: Alpaca refuses an
        order that could trade against one of ours (a wash trade). A refusal
        as a wash trade all the same is retried until the close."""
        await self.desk.cancel_everything()
        for symbol, inst in self.instruments.items():
            qty = inst.position.sellable()
            if qty > 0:
                coid = self.desk.send(symbol, "sell", qty, None, budgeted=False,
                                      wash_retry_until=self.close_at)
                log.info("FLATTEN: SELL %d %s at market [%s]", qty, symbol, coid)


class Shutdown:
    """Stopping: until a stop (Ctrl+C, the close, the loss limit) or a task's
    failure; then this run's open orders cancelled until terminal, the
    summary and the journal's end. A part of TickTaker (below)."""

    @staticmethod
    async def until_stopped(stopper: asyncio.Task, tasks: set[asyncio.Task]) -> int:
        """Until `stop` is set or a task fails; the exit code. A task that
        simply ends (say, the loss watch with no limit) stops nothing."""
        running = {stopper, *tasks}
        while True:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                return EXIT_OK
            for task in done:
                if not task.cancelled() and (exc := task.exception()) is not None:
                    if isinstance(exc, FatalError):
                        log.error("%s", exc)
                    else:
                        log.error("stopping on an unexpected error: %r", exc)
                    return EXIT_FATAL

    async def shutdown(self, tasks: set, trading: Optional[asyncio.Task], code: int) -> int:
        """Stop trading, cancel this run's open orders until each is terminal
        (the trading stream stays up for their final updates), print the
        summary; orders still open at the deadline make the exit non-zero."""
        self.stop.set()
        log.info("stopping: no new orders; cancelling this run's open orders")
        for task in (*tasks, *([self.halting] if self.halting else [])):
            task.cancel()
        await self.data.close()
        still_open = await self.desk.shutdown()
        if trading is not None:
            trading.cancel()
        await self.trading.close()
        await self.desk.close()
        self.log_summary()
        if self.halted:
            code = code or EXIT_LOSS_LIMIT
        if still_open:
            log.error("%d order(s) of this run may still be open at Alpaca: %s; check "
                      "them in your dashboard", len(still_open), ", ".join(still_open))
            return code or EXIT_ORDERS_OPEN
        return code

    def journal_end(self, code: int) -> None:
        """The run's end in the journal: when, how, and each symbol's last mid
        (to mark what it holds)."""
        marks = {s: i.quote.mid for s, i in self.instruments.items()
                 if i.quote.bid > 0 and i.quote.ask > 0}
        self.journal.add(J_RUN_END, utc_now(), code, json.dumps(marks), self.run_id)

    def log_summary(self) -> None:
        """A row per symbol: all of them in a small run; in a large one (over
        SUMMARY_ALL) only those that traded or hold shares, most active first
        (their market lines with --debug), then a total and how many never
        signalled."""
        insts = list(self.instruments.values())
        every = len(insts) <= SUMMARY_ALL
        shown = insts if every else sorted(
            (i for i in insts if i.position.orders_sent or i.position.held
             or i.position.preexisting),
            key=lambda i: (-i.position.orders_sent, -abs(i.position.held), i.symbol))
        for inst in shown:
            p, q = inst.position, inst.quote
            log.log(logging.INFO if every else logging.DEBUG,
                    "market %s: %d level changes, %d armed", inst.symbol, q.level_changes,
                    q.armed_levels)
            log.info("SUMMARY %s: orders sent %d, bought %d, sold %d, position %+d shares, "
                     "realized P&L %s", inst.symbol, p.orders_sent, p.bought, p.sold,
                     p.held, signed_dollars(p.realized_cents))
            if p.preexisting:
                log.info("shares of %s held before this run, untouched: %d", inst.symbol,
                         p.preexisting)
        if len(insts) > 1:
            ps = [i.position for i in insts]
            log.info("SUMMARY TOTAL: orders sent %d, bought %d, sold %d, realized P&L %s",
                     sum(p.orders_sent for p in ps), sum(p.bought for p in ps),
                     sum(p.sold for p in ps), signed_dollars(sum(p.realized_cents for p in ps)))
            quiet = sum(not i.signals for i in insts)
            log.info("SUMMARY: %d of %d symbols never signalled%s", quiet, len(insts),
                     "" if every else f"; {len(insts) - len(shown)} without a trade or a "
                     "share are not listed")
        if self.halted:
            log.error("SUMMARY: %s; the run stopped itself", self.halted)


class TickTaker(StartupChecks, StreamSession, RunGuards, Shutdown):
    """Owns the state and the I/O of one run: its handlers feed each print to
    follow() and each decision to the desk; run() starts, trades, stops."""

    def __init__(self, cfg: Config, rest: REST, limiter: RateLimiter,
                 stop: asyncio.Event, journal: Journal) -> None:
        self.cfg = cfg
        self.rest = rest
        self.stop = stop                # Ctrl+C, the close, or a fatal error
        self.journal = journal
        self.run_id = uuid.uuid4().hex[:8]
        self.rest_thread = RestThread()
        self.instruments = {s: Instrument(s, Quote(), Position(cfg.quantity))
                            for s in cfg.symbols}
        self.desk = OrderDesk(cfg, rest, self.rest_thread, limiter,
                              {s: i.position for s, i in self.instruments.items()},
                              journal, self.run_id)
        self.desk.on_fill = self.loss_reached      # the loss limit after every fill
        self.signal_seq = itertools.count(1)
        # symbol -> [[due ns, seq, horizon, mid so far, due second as text]], soonest first
        self.mid_watch: dict[str, list[list]] = {}
        self.closing = False            # too close to the close for new orders
        self.halted: Optional[str] = None  # why the run stopped trading itself (--max-loss)
        self.halting: Optional[asyncio.Task] = None   # the loss limit's cancel-flatten-stop
        self.trading_live = False       # the trading stream is up: fills are seen
        self.close_at: Optional[float] = None    # epoch seconds, from the clock
        # Quotes go straight to each symbol's tracker (the hot path), and its rule.
        self.data = DataStream(cfg, {s: feed(i.quote, i.rule) for s, i in self.instruments.items()},
                               self.on_level, self.on_trade)
        self.trading = TradingStream(cfg, self.desk.apply)

    # -- handlers: thin, they feed the core ------------------------------
    def on_level(self, symbol: str) -> None:
        quote = self.instruments[symbol].quote
        log.debug("level %s %s/%s %s", symbol, dollars(quote.level_bid),
                  dollars(quote.level_ask), "armed" if quote.armed else "not armed")

    def on_trade(self, symbol: str, trade: Trade) -> None:
        inst = self.instruments[symbol]
        decision = follow(inst.quote, inst.rule, inst.position, trade, self.blocked,
                          self.desk.reserve)
        if decision is None:
            return                               # not a signal: nearly every print
        inst.signals += 1
        intent, coid = decision.intent, None
        loop = asyncio.get_running_loop()
        if intent is not None:
            coid = self.desk.send(symbol, intent.side, intent.qty, intent.limit_cents,
                                  print_t=trade.t)
            # Logged once the order is on the wire: writing the line first would delay it.
            loop.call_soon(
                log.info, "%s %d %s @ %s (level %d, %s; print at %s) [%s]",
                intent.side.upper(), intent.qty, symbol, dollars(intent.limit_cents),
                inst.quote.level_changes, intent.reason, trade.t, coid)
        else:                                    # a signal, and why no order (rare: cheap)
            log.log(logging.WARNING if decision.why_not == WHY_BUDGET else logging.INFO,
                    "%s signal %s @ %s not followed: %s (print at %s)", decision.side.upper(),
                    symbol, dollars(trade.price_cents), decision.why_not, trade.t)
        self.journal_signal(symbol, trade, decision, coid)

    # -- the journal: signals, and the mid after them ---------------------
    def journal_signal(self, symbol: str, trade: Trade, decision: Decision,
                       coid: Optional[str]) -> None:
        """A signal, whether an order went or why not; the mid 1 s and 10 s
        later (exchange time) is filled in as the quotes come."""
        if self.journal.path is None:
            return
        q = self.instruments[symbol].quote
        seq, t_ns, mid = next(self.signal_seq), as_ns(trade.t), q.mid
        self.journal.add(J_SIGNAL, self.run_id, seq, symbol, stamp(trade.t), t_ns,
                         decision.side, q.level_bid, q.level_ask, q.bid_size, q.ask_size,
                         trade.price_cents, trade.size, "".join(trade.conditions or ()), coid,
                         decision.why_not or None, mid)
        watch = self.mid_watch.setdefault(symbol, [])
        for h in J_MID:
            due = t_ns + h * 1_000_000_000
            watch.append([due, seq, h, mid, stamp(due)[:19]])
        watch.sort()
        self.data.watch = self.watch_mids

    def watch_mids(self, messages: list[dict]) -> None:
        """After a frame: for each signal waiting for its mid 1 s (or 10 s)
        later, the mid at the last quote of its symbol at or before that time.
        Called for every frame while a mid is awaited, so a frame is checked
        by its last quote's time as text (see `earlier`), and then each quote
        against the soonest due time only; times are parsed only within the
        second a mid is due."""
        for symbol, waiting in list(self.mid_watch.items()):
            for last in reversed(messages):        # the frame's last quote of the symbol
                if last.get("S") == symbol and last.get("T") == "q":
                    break
            else:
                continue
            quote = self.instruments[symbol].quote
            if earlier(last["t"], waiting[0][0], waiting[0][4]):
                for w in waiting:                   # nothing due: the mid so far
                    w[3] = quote.mid
                continue
            mid = waiting[0][3]                    # the mid so far (every entry has it)
            for m in messages:                     # a time is passed in this frame: where
                if m.get("S") != symbol or m.get("T") != "q":
                    continue
                # Soonest first: a quote past a due time (t > due: not t < due + 1,
                # as text while in an earlier second) closes it at the mid so far.
                while waiting and not earlier(m["t"], waiting[0][0] + 1, waiting[0][4]):
                    w = waiting.pop(0)
                    self.journal.add(J_MID[w[2]], mid, self.run_id, w[1])
                mid = (m["bp"] + m["ap"]) * 50
            for w in waiting:
                w[3] = mid
            if not waiting:
                del self.mid_watch[symbol]
        if not self.mid_watch:
            self.data.watch = None

    # -- the run ------------------------------------------------------------
    async def run(self) -> int:
        """Trade until `stop` is set (Ctrl+C, the close) or a fatal error;
        return the exit code."""
        sha, text = script_copy()
        self.journal.add(J_SCRIPT, sha, text)
        self.journal.add(J_RUN, self.run_id, utc_now(), ",".join(self.cfg.symbols),
                         self.cfg.quantity, self.cfg.base_url, self.cfg.feed,
                         self.cfg.max_loss_cents, sha)
        starting = asyncio.create_task(self.start())
        stopper = asyncio.create_task(self.stop.wait())
        await asyncio.wait({starting, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():                      # Ctrl+C during start-up
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return await self.shutdown(set(), None, EXIT_OK)
        if (exc := starting.exception()) is not None:
            stopper.cancel()
            await self.desk.close()
            if isinstance(exc, FatalError):
                raise exc
            raise FatalError(f"start-up failed: {describe(exc)}") from None
        if not starting.result():
            return await self.shutdown({stopper}, None, EXIT_OK)
        # What start-up imported and built lives for the whole run: the garbage
        # collector need not rescan it (a full pass over the SDK's imports,
        # pandas and numpy among them, would stall the loop for tens of ms).
        gc.collect()
        gc.freeze()
        trading = asyncio.create_task(self.keep_streaming(
            self.trading, self.trading_down, self.trading_up))
        tasks = {
            asyncio.create_task(self.keep_streaming(self.data, self.data_down, self.data_up)),
            asyncio.create_task(self.watchdog()),
            asyncio.create_task(self.close_watch()),
            asyncio.create_task(self.desk.keep_warm()),
            asyncio.create_task(self.loss_watch()),
        }
        code = await self.until_stopped(stopper, {trading, *tasks})
        return await self.shutdown(tasks | {stopper}, trading, code)


# --------------------------------------------------------------------------
# --check: a preflight for the first real run, trading nothing.
# --------------------------------------------------------------------------
CHECK_QUOTES_S = 5.0                 # --check: how long to wait for each symbol's quotes
CHECK_REST_TRIES = 5                 # --check: REST round trips timed
CHECK_CLOCK_OFF_MS = 2000            # a quote's age past this (or below -100): clock off?


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Preflight:
    """--check: every start-up check, then a checklist of what a first real
    run depends on (keys, account, clock, symbols, REST's round trip, both
    streams, the quotes' age, and with --order one order's life), each line
    saying what to do when it fails. Exit 0 only if all pass."""

    def __init__(self, bot: TickTaker) -> None:
        self.bot, self.cfg = bot, bot.cfg
        self.failed = 0
        self.figures: dict[str, Optional[float]] = dict.fromkeys(
            ("rest_p50", "rest_p95", "age_p50", "age_p95", "order_ms"))

    def ok(self, text: str) -> None:
        log.info("CHECK ok    %s", text)

    def fail(self, text: str, advice: str) -> None:
        self.failed += 1
        log.error("CHECK FAIL  %s: %s", text, advice)

    async def run(self) -> int:
        bot, cfg = self.bot, self.cfg
        where = {"PAPER": "Alpaca's paper endpoint", "LIVE": "Alpaca's LIVE endpoint (real money)",
                 "LOCAL": "a server on this machine (the simulated Alpaca?)"}.get(
            endpoint_kind(cfg.base_url), f"{cfg.base_url} (not Alpaca's paper endpoint)")
        try:
            await bot.check_account()
            self.ok(f"keys accepted by {where}; account readable, trading not blocked")
            clock = await bot.rest_call("read the market clock", bot.rest.get_clock)
            self.ok(f"market {'open' if clock.is_open else 'closed'} (Alpaca's clock)")
        except FatalError as exc:
            self.fail("keys and account", f"{exc} (key id {cfg.key_id[:4]}..., {where})")
            return self.finish()
        try:
            await bot.check_symbols()
            self.ok(f"{len(cfg.symbols)} symbol(s) exist, are active and tradable")
        except FatalError as exc:
            self.fail("symbols", f"{exc}")
        subscribed = False

        async def trading() -> None:
            await self.stream(bot.trading, "trading stream: signed in, listening for "
                              "trade_updates")

        async def data() -> None:
            nonlocal subscribed
            subscribed = await self.stream(bot.data, f"market data ({cfg.feed}): signed in, "
                                           "subscribed")

        async def quotes() -> None:
            if subscribed:
                await self.quotes(clock.is_open)
        steps = [self.rest_round_trip, trading, data, quotes]
        if cfg.check_order:
            steps.append(self.order)
        try:
            for step in steps:
                if bot.stop.is_set():         # Ctrl+C: no further check, and no order (the
                    break                     # order step sends its POST before any yield)
                await step()
        finally:
            await bot.trading.close()
            await bot.data.close()
        return self.finish()

    async def rest_round_trip(self) -> None:
        times = []
        for _ in range(CHECK_REST_TRIES):
            started = time.perf_counter()
            await self.bot.rest_call("read the market clock", self.bot.rest.get_clock)
            times.append((time.perf_counter() - started) * 1000)
        self.figures["rest_p50"], self.figures["rest_p95"] = (percentile(times, 0.5),
                                                              percentile(times, 0.95))
        self.ok(f"REST round trip (GET /v2/clock, {len(times)} times): p50 "
                f"{self.figures['rest_p50']:.0f} ms, p95 {self.figures['rest_p95']:.0f} ms")

    async def stream(self, stream: Any, text: str) -> bool:
        try:
            await stream.open()
        except (StreamError, FatalError) as exc:
            self.fail(stream.what, str(exc))
            return False
        self.ok(text)
        return True

    async def quotes(self, market_open: bool) -> None:
        """Each symbol's quotes arrive; their age (the local clock less the
        exchange time) as p50/p95, and a warning when the clock looks off."""
        if not market_open:
            self.ok("market closed: quotes not awaited (run --check while it is open for "
                    "their age)")
            return
        ages: list[float] = []
        seen: set[str] = set()
        symbols = set(self.cfg.symbols)

        def record(messages: list[dict]) -> None:
            now = time.time_ns()
            for m in messages:
                if m.get("T") == "q" and m.get("S") in symbols:
                    ages.append((now - as_ns(m["t"])) / 1e6)
                    seen.add(m["S"])
        self.bot.data.watch = record
        reader = asyncio.create_task(self.bot.data.run())
        deadline = time.monotonic() + CHECK_QUOTES_S
        while (seen != symbols and time.monotonic() < deadline and not reader.done()
               and not self.bot.stop.is_set()):
            await asyncio.sleep(0.05)
        reader.cancel()
        self.bot.data.watch = None
        if seen != symbols:
            missing = sorted(symbols - seen)
            self.fail("quotes", f"none within {CHECK_QUOTES_S:g} s for {', '.join(missing[:10])}"
                      f"{' ...' if len(missing) > 10 else ''} (a thin symbol, or one your "
                      f"plan's feed {self.cfg.feed} does not carry)")
            if not ages:
                return
        p50, p95 = percentile(ages, 0.5), percentile(ages, 0.95)
        self.figures["age_p50"], self.figures["age_p95"] = p50, p95
        self.ok(f"quotes for {len(seen)} symbol(s), {len(ages)} in all; their age (local "
                f"clock - exchange time): p50 {p50:.0f} ms, p95 {p95:.0f} ms")
        if p50 > CHECK_CLOCK_OFF_MS or p50 < -100:
            log.warning("CHECK warn  the quotes look %s: is this machine's clock off? (sync it "
                        "with NTP)", "late" if p50 > 0 else "early (from the future)")

    async def order(self) -> None:
        """One 1-share buy limit at half the bid (never marketable: see
        far_limit): placed, its `new` update, cancelled, its `canceled`
        update; the round trip. A submit with no clear answer is looked up by
        client_order_id, and the order cancelled if it exists: the check
        never leaves its order open. Nothing is sent after Ctrl+C."""
        desk, symbol = self.bot.desk, self.cfg.symbols[0]
        bid = self.bot.instruments[symbol].quote.bid
        if bid <= 0:
            self.fail("order", f"no bid seen for {symbol} to price a far limit: run --check "
                      "--order while the market is open")
            return
        limit = far_limit(bid)
        what = f"a 1-share buy limit of {symbol} at {limit}"
        events: dict[str, float] = {}
        coid = desk.new_client_id()
        passed_on = self.bot.trading.on_update

        def record(update: OrderUpdate) -> None:
            if update.client_order_id == coid:
                events.setdefault(update.event, time.perf_counter())
            passed_on(update)
        self.bot.trading.on_update = record
        reader = asyncio.create_task(self.bot.trading.run())
        await desk.open()                     # (no await yields before the POST: the run
        try:                                  # loop's Ctrl+C check still holds here)
            started = time.perf_counter()
            answer = await desk._request("POST", "/v2/orders", {
                "symbol": symbol, "qty": "1", "side": "buy", "type": "limit",
                "time_in_force": "day", "limit_price": str(limit), "client_order_id": coid},
                budgeted=True)
            if answer.refused:
                self.fail("order", f"{what}: refused ({answer})")
                return
            found = answer.body if answer.ok and isinstance(answer.body, dict) else None
            if found is None:
                log.warning("CHECK: %s: %s; outcome unknown: looking it up by "
                            "client_order_id %s", what, answer, coid)
                found = await self.resolve(coid)
                if not isinstance(found, dict):
                    self.fail("order", f"{what}: {answer}, and " + (
                        f"not found by its client_order_id {coid} {IN_FLIGHT_S:g} s later "
                        "(never placed)" if found is NOT_FOUND else
                        f"its look-ups failed: look for {coid} in your dashboard"))
                    return
            if await self.until(lambda: "new" in events):
                self.figures["order_ms"] = (events["new"] - started) * 1000
            else:
                self.fail("order", f"{what}: placed ({found.get('status')}), but no `new` "
                          "update within 5 s on the trading stream")
            await desk.cancel_stale(found["id"], coid)     # until Alpaca says it is done
            if await self.until(lambda: "canceled" in events, stoppable=False):
                self.ok(f"order: {what} placed (`new` {self.figures['order_ms'] or 0:.0f} ms "
                        f"after it was sent), then cancelled (`canceled` "
                        f"{(events['canceled'] - started) * 1000:.0f} ms after)")
            else:
                self.fail("order", "cancelled, but no `canceled` update within 5 s (check "
                          "the order in your dashboard)")
        finally:
            reader.cancel()
            await desk.close()

    async def resolve(self, coid: str) -> Any:
        """The check's order, after a submit with no clear answer: looked up
        by client_order_id until found (its JSON), or NOT_FOUND once its
        submit can no longer be in flight, or None if the look-ups fail."""
        since, step = time.monotonic(), 0
        while True:
            found = await self.bot.desk.lookup(coid)
            waited = time.monotonic() - since
            if isinstance(found, dict) or waited > IN_FLIGHT_S + 2 * RESOLVE_MAX_S or (
                    found is NOT_FOUND and waited > IN_FLIGHT_S):
                return found
            await asyncio.sleep(backoff_s(step, RESOLVE_FIRST_S, RESOLVE_MAX_S))
            step += 1

    async def until(self, condition: Callable[[], bool], timeout_s: float = 5.0,
                    stoppable: bool = True) -> bool:
        """Wait for `condition`, up to timeout_s (or a Ctrl+C, if stoppable)."""
        deadline = time.monotonic() + timeout_s
        while (not condition() and time.monotonic() < deadline
               and not (stoppable and self.bot.stop.is_set())):
            await asyncio.sleep(0.02)
        return condition()

    def finish(self) -> int:
        if self.bot.stop.is_set():
            self.fail("the check", "stopped (Ctrl+C) before every check ran")
        f = self.figures
        self.bot.journal.add(J_CHECK, self.bot.run_id, utc_now(), self.cfg.base_url,
                             self.cfg.feed, f["rest_p50"], f["rest_p95"], f["age_p50"],
                             f["age_p95"], f["order_ms"], int(not self.failed))
        if self.failed:
            log.error("CHECK: %d check(s) failed (above): fix them before a real run",
                      self.failed)
            return EXIT_FATAL
        log.info("CHECK: all passed%s", "" if self.cfg.check_order else
                 " (add --order to try one order's life too)")
        return EXIT_OK


# --------------------------------------------------------------------------
# Command line and start-up.
# --------------------------------------------------------------------------
SYMBOL_RE = re.compile(r"^[A-Z][A-Z0-9]{0,5}([.][A-Z]{1,2})?$")   # SNAP, BRK.B


def symbols(text: str) -> list[str]:
    """argparse type for --symbol: a stock, or several separated by commas."""
    found = [part.strip().upper() for part in text.split(",")]
    bad = [s for s in found if not SYMBOL_RE.match(s)]
    if bad:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a stock symbol (like SNAP, BRK.B, or SNAP,MU,AMD)")
    return found


def lots(text: str) -> int:
    """argparse type for --quantity: a positive multiple of the lot."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0 or value % LOT or value > MAX_QUANTITY:
        raise argparse.ArgumentTypeError(
            f"must be a positive multiple of {LOT}, at most {MAX_QUANTITY:,} (got {value})")
    return value


def in_range(kind: Callable[[str], float], low: float, high: float,
             low_open: bool = False) -> Callable[[str], float]:
    """argparse type: a number of `kind` in [low, high] (or (low, high])."""
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value != value or value > high or value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(
                f"must be {'more than' if low_open else 'at least'} {low:g} and at most "
                f"{high:g} (got {text})")
        return value
    return parse


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Order-book-imbalance tick taker for Alpaca (see README.md).")
    p.add_argument("--symbol", action="append", type=symbols, metavar="SYMBOL[,SYMBOL...]",
                   help=f"stock(s) to trade: SNAP, or SNAP,MU,AMD, or the flag repeated "
                   f"(default {DEFAULT_SYMBOL})")
    p.add_argument("--symbols-file", type=Path, metavar="PATH",
                   help="also trade the symbols in this file: one a line, # starts a comment")
    p.add_argument("--quantity", default=DEFAULT_QUANTITY, type=lots,
                   help=f"most shares to hold of each symbol, a multiple of {LOT} "
                   f"(default {DEFAULT_QUANTITY})")
    p.add_argument("--live", action="store_true",
                   help="allow trading with real money: required for any endpoint other "
                   "than Alpaca's paper one")
    p.add_argument("--max-loss", type=in_range(float, 0, 1e9, low_open=True),
                   metavar="DOLLARS", help="stop the run when its P&L (realized, plus held "
                   "shares at the bid) reaches -DOLLARS: cancel, sell what it holds at "
                   f"market, exit {EXIT_LOSS_LIMIT} (default: no limit)")
    p.add_argument("--key-id", help="API key id (else APCA_API_KEY_ID)")
    p.add_argument("--secret-key", help="API secret key (else APCA_API_SECRET_KEY; prefer "
                   "those, a flag shows in the process list)")
    p.add_argument("--base-url", help="trading API URL (else APCA_API_BASE_URL; default "
                   "paper for PK... keys, live otherwise)")
    p.add_argument("--data-url", help="market-data stream URL (else APCA_API_STREAM_URL; "
                   f"default {DATA_STREAM_URL})")
    p.add_argument("--feed", choices=("iex", "sip"), default=DEFAULT_FEED,
                   help="market-data feed (default iex; sip needs a paid plan)")
    p.add_argument("--stop-before-close", type=in_range(float, 0, 390),
                   default=DEFAULT_CLOSE_BUFFER_MIN, metavar="MINUTES",
                   help="send no new orders this many minutes before the close "
                   f"(default {DEFAULT_CLOSE_BUFFER_MIN:g})")
    p.add_argument("--flatten-at-close", action="store_true",
                   help="then sell, at market, what this run bought and still holds")
    p.add_argument("--stale-seconds", type=in_range(float, 0.1, 86400), default=DEFAULT_STALE_S,
                   metavar="SECONDS", help="warn and forget the level after this long without "
                   f"market data (default {DEFAULT_STALE_S:g})")
    p.add_argument("--rest-rate", type=in_range(int, 2, 1_000_000), default=RATE_LIMIT_PER_MIN,
                   metavar="PER_MINUTE",
                   help=f"most REST requests a minute (default {RATE_LIMIT_PER_MIN}, "
                   "Alpaca's documented limit; raise it only if your plan allows more)")
    p.add_argument("--journal", type=Path, default=Path(DEFAULT_JOURNAL), metavar="PATH",
                   help="record this run's signals, orders and fills in this SQLite file, "
                   f"shared with earlier runs (default {DEFAULT_JOURNAL}, here)")
    p.add_argument("--no-journal", action="store_true", help="keep no journal")
    p.add_argument("--log-file", type=Path, metavar="PATH",
                   help="also write the log to this file (appended; the same lines as the "
                   "terminal)")
    p.add_argument("--check", action="store_true",
                   help="trade nothing: check the keys, the account, the clock, the symbols, "
                   "both streams, the quotes' age and REST's round trip, then exit (0: all "
                   "passed)")
    p.add_argument("--order", action="store_true",
                   help="with --check: also place one 1-share limit far from the market, "
                   "wait for it, cancel it (nothing can fill)")
    p.add_argument("--debug", action="store_true", help="also log every level change")
    args = p.parse_args(argv)
    if args.order and not args.check:     # never a trading run the user did not ask for
        p.error("--order goes with --check (it tries one order's life, then exits): "
                "--check --order")
    chosen = [s for group in (args.symbol or []) for s in group]
    if args.symbols_file is not None:
        chosen += symbols_in_file(p, args.symbols_file)
    args.symbol = list(dict.fromkeys(chosen or [DEFAULT_SYMBOL]))   # in order, once each
    args.duplicates = len(chosen) - len(args.symbol) if chosen else 0
    return args


def symbols_in_file(p: argparse.ArgumentParser, path: Path) -> list[str]:
    """--symbols-file: one symbol a line; blank lines and # comments skipped.
    A bad line is an argparse error naming the file and the line."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        p.error(f"--symbols-file {path}: {getattr(exc, 'strerror', None) or exc}")
    found = []
    for n, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            found += symbols(text)
        except argparse.ArgumentTypeError as exc:
            p.error(f"--symbols-file {path}, line {n}: {exc}")
    if not found:
        p.error(f"--symbols-file {path}: no symbols in it")
    return found


def credentials(key_id: Optional[str] = None, secret: Optional[str] = None,
                base_url: Optional[str] = None) -> tuple[str, str, str]:
    """The keys and the trading URL: flag > environment > .env (loaded by the
    caller, never overriding) > default. The replay's downloads use this too."""
    key_id = (key_id or os.environ.get("APCA_API_KEY_ID") or "").strip()
    secret = (secret or os.environ.get("APCA_API_SECRET_KEY") or "").strip()
    if not key_id or not secret:
        raise FatalError(
            "no API keys: set APCA_API_KEY_ID and APCA_API_SECRET_KEY in the environment "
            "or in a .env file (copy .env.example), or pass --key-id/--secret-key")
    if key_id in PLACEHOLDER_KEYS or secret in PLACEHOLDER_KEYS:
        raise FatalError(
            "the API keys are still the placeholders of .env.example: put your own in .env "
            "(paper keys first: Alpaca's dashboard, Paper Trading, API Keys)")
    for name, value in (("APCA_API_KEY_ID", key_id), ("APCA_API_SECRET_KEY", secret)):
        if not value.isprintable() or " " in value:
            raise FatalError(f"{name} contains spaces or control characters: copy the key "
                             "again from Alpaca's dashboard")
    default_base = PAPER_URL if key_id.startswith("PK") else LIVE_URL
    base = (base_url or os.environ.get("APCA_API_BASE_URL") or default_base).strip()
    check_url("base URL", base)
    return key_id, secret, base.rstrip("/")


def check_url(name: str, url: str) -> None:
    if not re.match(r"^(http|ws)s?://[^/\s]+", url):
        raise FatalError(f"the {name} {url!r} must start with http(s):// or ws(s)://")


def make_config(args: argparse.Namespace) -> Config:
    """Flag > environment > .env (already loaded, never overriding) > default."""
    key_id, secret, base = credentials(args.key_id, args.secret_key, args.base_url)
    data = (args.data_url or os.environ.get("APCA_API_STREAM_URL") or DATA_STREAM_URL).strip()
    check_url("data URL", data)
    max_loss = None if args.max_loss is None else round(args.max_loss * 100)
    return Config(tuple(args.symbol), args.quantity, key_id, secret, base,
                  data.rstrip("/"), args.feed, args.stale_seconds, args.stop_before_close,
                  args.flatten_at_close, args.rest_rate, max_loss,
                  None if args.no_journal else args.journal, args.check, args.order)


class Redacting(logging.Formatter):
    """Every line passes here, whatever logged it (this script, the SDK, an
    HTTP library's error): the secret key is replaced before it is written."""

    secrets: set[str] = set()

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        for secret in self.secrets:
            text = text.replace(secret, "[secret]")
        return text

    @classmethod
    def hide(cls, secret: Optional[str]) -> None:
        """Redact this secret from now on: as it is, stripped, and as repr()
        and JSON would escape it."""
        if secret and secret.strip():
            for form in {secret, secret.strip()}:
                cls.secrets |= {form, repr(form)[1:-1], json.dumps(form)[1:-1]}


def setup_logging(debug: bool, log_file: Optional[Path] = None) -> None:
    """UTC timestamps, one event a line, to the terminal and --log-file."""
    fmt = Redacting("%(asctime)s.%(msecs)03d %(levelname)-7s %(message)s",
                    "%Y-%m-%d %H:%M:%S")
    fmt.converter = time.gmtime                    # UTC timestamps
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    root = logging.getLogger()
    for handler in handlers:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    log.setLevel(logging.DEBUG if debug else logging.INFO)


def live_gate(cfg: Config, live: bool) -> bool:
    """Real money only on purpose: any endpoint but Alpaca's paper one needs
    --live. True if the run may go on."""
    kind = endpoint_kind(cfg.base_url)
    key = f"{cfg.key_id[:4]}..."
    if kind == "PAPER":
        log.info("endpoint: PAPER trading at %s (key id %s)", cfg.base_url, key)
        return True
    what = ("Alpaca's LIVE endpoint" if kind == "LIVE" else
            "not Alpaca's paper endpoint (the bot cannot tell paper from live there)")
    if kind == "LOCAL" and live:
        log.info("endpoint: a server on this machine at %s, such as the simulated Alpaca "
                 "(key id %s; --live given, in case it forwards to a real one)",
                 cfg.base_url, key)
        return True
    if not live:
        log.error("refusing to start: %s is %s, with key id %s. That is real money: pass "
                  "--live to trade it, or use paper keys at %s", cfg.base_url, what, key,
                  PAPER_URL)
        return False
    log.warning("*** LIVE TRADING with real money: %s is %s, key id %s (--live) ***",
                cfg.base_url, what, key)
    return True


async def amain(cfg: Config) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    signals = 0

    def on_signal(signame: str) -> None:
        """The first Ctrl+C, SIGTERM or SIGHUP (the terminal closed) always means
        "stop cleanly", even when the bot began stopping itself (the close,
        the loss limit, an error); only a second one exits at once."""
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second signal (%s): exiting now; open orders may remain", signame)
            os._exit(130)
        log.info("%s: stopping cleanly (a second Ctrl+C exits at once)", signame)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig.name)
    limiter = RateLimiter(cfg.rest_rate)
    journal = Journal(cfg.journal)
    bot = TickTaker(cfg, make_rest(cfg, limiter), limiter, stop, journal)
    code = EXIT_FATAL
    try:
        code = await (Preflight(bot).run() if cfg.check else bot.run())
        return code
    finally:
        bot.journal_end(code)
        journal.close()                 # Ctrl+C included: everything is written


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    try:
        setup_logging(args.debug, args.log_file)
    except OSError as exc:
        print(f"cannot write the log file {args.log_file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    load_dotenv(Path.cwd() / ".env", override=False)
    for secret in (args.secret_key, os.environ.get("APCA_API_SECRET_KEY")):
        Redacting.hide(secret)
    try:
        cfg = make_config(args)
    except FatalError as exc:
        log.error("%s", exc)
        return EXIT_USAGE
    if not live_gate(cfg, args.live):
        return EXIT_USAGE
    names = cfg.symbols
    log.info("trading %s, at most %d shares of each, feed %s%s",
             ",".join(names) if len(names) <= 10 else f"{len(names):,} symbols "
             f"({','.join(names[:5])}, ...)", cfg.quantity, cfg.feed,
             "" if cfg.max_loss_cents is None else
             f", loss limit {signed_dollars(Fraction(-cfg.max_loss_cents))}")
    if args.duplicates:
        log.info("%d symbol(s) named more than once: traded once", args.duplicates)
    if cfg.feed == "iex":
        log.warning("feed iex: quotes are IEX's alone, not the consolidated (SIP) quote "
                    "the signal assumes; sizes and levels will differ from the NBBO")
    try:
        return asyncio.run(amain(cfg))
    except FatalError as exc:
        log.error("%s", exc)
        return EXIT_FATAL
    except KeyboardInterrupt:           # Ctrl+C before the signal handlers were set
        return 130


if __name__ == "__main__":
    sys.exit(main())
