"""A tape through the market-data stream: the replay (lockstep with the bot,
as fast as it keeps up) and the live play (in market time)."""
from __future__ import annotations

import asyncio
import itertools
import time
from typing import Callable, Optional

from sim.alpaca.wire import EXPECTED_ORDER_S, MS_NS, OPEN_STATES
from sim.tape import Tape, encode, message

PLAY_FRAME_S = 0.01          # live play: the events due within this go in one frame


class TapePlayer:
    """Streams a tape and matches orders against its book."""

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

    async def play(self, tape: Tape, speed: float = 1.0, laps: Optional[int] = None) -> None:
        """Stream `tape` as live market data, in its own time x `speed`, from
        its start again at its end (`laps` times; None: until stopped). Each
        event is stamped with the local clock as it is sent (a quote's age is
        then what --check measures on a real feed), and each quote moves the
        book that orders fill against, as a quote a test pushes does."""
        self.universe |= set(tape.symbols)
        lap = 0
        while laps is None or lap < laps:
            lap += 1
            first, wall0 = tape.times[0], time.perf_counter()
            frame: list[dict] = []
            for i, e in enumerate(tape.events):
                due = wall0 + (e[1] - first) / 1e9 / speed
                if frame and due - time.perf_counter() > PLAY_FRAME_S:
                    await self._play_frame(frame)
                    frame = []
                if (wait := due - time.perf_counter()) > 0:
                    await asyncio.sleep(wait)
                frame.append(message(e, i))
            await self._play_frame(frame)

    async def _play_frame(self, frame: list[dict]) -> None:
        """A frame stamped with the local clock, as if it had just printed:
        each event its own nanosecond, in the order sent (never back in time),
        so that the history it leaves keeps that order."""
        now = max(time.time_ns(), self._last_stamp + 1)
        for k, m in enumerate(frame):
            m["t"] = now + k
        self._last_stamp = now + len(frame) - 1
        await self._market_frame(frame)
