"""The test API: what a test (in a thread of its own) pushes, forces and
waits for. Every wait has a timeout, and fails at once when a watcher (the
bot's log) says it is waiting in vain."""
from __future__ import annotations

import asyncio
import functools
import time
import uuid
from decimal import Decimal
from typing import Any, Callable, Optional

from sim.alpaca.wire import OPEN_STATES, WAIT_S, Fault, money, new_order


class Controls:
    """Thread-safe calls into the server's loop, and the waits tests use."""

    def call(self, fn: Callable, *args: Any) -> Any:
        """Run `fn(*args)` (a coroutine function) on the server's loop."""
        return asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(WAIT_S)

    def push(self, *messages: dict) -> None:
        """Send quotes/trades (built by `quote`/`trade`) in one frame.

        Quotes also move the matching engine's book.
        """
        self.call(self._market_frame, list(messages))
        for see in self.on_push:
            see(list(messages))

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
