"""Orders and the matching engine: submit, look up, cancel; fills against the
book (the last quote pushed, or a tape's book in a replay) as the package's
docstring states them."""
from __future__ import annotations

import asyncio
import time
import uuid
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Optional

from aiohttp import web

from sim.alpaca.wire import (OPEN_STATES, FillPolicy, error_body, money, new_order, now_rfc3339,
                             public)


class OrderBook:
    """POST/GET/DELETE /v2/orders..., and the executions they get."""

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

    async def _market_frame(self, messages: list[dict]) -> None:
        """A frame of market data, pushed by a test or played from a tape: each
        quote moves its symbol's book, the frame goes to every subscribed
        client, then market orders waiting for a side of the book fill. Its
        quotes and trades join the history the data API serves, as what the
        stream sent joins Alpaca's (sim.drift replays a run from it)."""
        for m in messages:
            if m["T"] == "q":
                self.book[m["S"]] = (round(m["bp"] * 100), round(m["ap"] * 100), m["bs"], m["as"])
            if m["T"] in ("q", "t") and isinstance(m["t"], int):
                self.history.setdefault(m["S"], {"quotes": [], "trades": []})[
                    "quotes" if m["T"] == "q" else "trades"].append(
                    {k: v for k, v in m.items() if k not in ("T", "S")})
        await self._broadcast_data(messages)
        for symbol in {m["S"] for m in messages if m["T"] == "q"}:
            await self._fill_waiting_market_orders(symbol)

    async def _fill_waiting_market_orders(self, symbol: str) -> None:
        """A market order that found its side of the book empty (no bid to
        sell to) fills against the next quote that shows one."""
        for order in list(self.orders.values()):
            if (order["symbol"] == symbol and order["type"] == "market"
                    and order["status"] in OPEN_STATES and self.tape is None):
                left = int(order["qty"]) - int(order["filled_qty"])
                plan = self._plan(order, None, self.default_policy)
                await self._execute(order, [(min(n, left), p) for n, p in plan][:1])

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
