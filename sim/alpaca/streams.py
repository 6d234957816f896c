"""The two websockets: the trading stream (trade_updates) and the market-data
stream (quotes and trades, JSON or msgpack), with the pings that time a
client's event loop."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator

import msgpack
from aiohttp import WSMsgType, web

from sim.alpaca.wire import CHANNELS, WAIT_S, public, now_rfc3339, sender


class TradingStream:
    """/stream: sign-in, listen, then trade_updates in binary frames."""

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


class DataStream:
    """/v2/{feed}: connected, auth, subscribe; quotes and trades pushed."""

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
