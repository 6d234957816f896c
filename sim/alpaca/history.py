"""The market-data history routes (/v2/stocks/...): quotes and trades by page,
checked as Alpaca checks the query."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import time
from pathlib import Path
from typing import Iterable, Optional

from aiohttp import web

from sim.alpaca.wire import _data_time, error_body, in_lots, rfc3339
from sim.tape import NEW_YORK, SIP_SIZES_IN_SHARES_FROM_NS, Event, Tape, synthetic

NO_HISTORY = ("this simulated Alpaca serves no history: start it with `python -m sim.alpaca "
              "--history` (the bundled MSFT hour and synthetic symbol-days), or replay a file "
              "with --data")
BUNDLED = Path(__file__).resolve().parent.parent / "data" / "msft_2012-06-21.csv.gz"


# Made-up symbol-days, for a sweep or a comparison without an account: any
# weekday, generated when first asked for (the same symbol and day, the same
# data). Their asset's name says so, and every report that replays them says
# "SYNTHETIC" (sim/history.py, made_up).
SYNTHETIC = ("SYNTH1", "SYNTH2", "SYNTH3")
SYNTHETIC_NAME = "SYNTHETIC: made-up quotes and trades (sim.alpaca)"
SYNTHETIC_EVENTS = 20_000            # a symbol-day: about one event a second
SYNTHETIC_DAYS_MAX = 400             # days one request may make up


def in_the_bots_units() -> dict[str, int]:
    """Made-up data in the ticks and print sizes of the tick_taker.py beside
    sim/ (a fork's, in a fork's clone), so that its rule finds signals in it."""
    import tick_taker as tt
    bid = max(2000, 2 * tt.MIN_LEVEL_BID_CENTS)     # well above its floor for a level
    return {"tick": tt.TICK_CENTS, "min_print": tt.MIN_PRINT_SIZE,
            "bid": bid - bid % tt.TICK_CENTS}


def synthetic_seed(symbol: str, day: dt.date) -> int:
    return int.from_bytes(hashlib.sha256(f"{symbol} {day}".encode()).digest()[:8], "big")


class HistoryRoutes:
    """GET /v2/stocks/{symbol}/quotes|trades and /v2/stocks/quotes|trades."""

    def serve_synthetic(self, symbols: tuple[str, ...] = SYNTHETIC, days: bool = True) -> None:
        """Serve made-up symbol-days of `symbols` (any weekday) through the
        historical routes (`days` False: only what is played of them); their
        assets are named SYNTHETIC_NAME."""
        if days:
            self.synthetic_symbols |= set(symbols)
        self.universe |= set(symbols)
        for symbol in symbols:
            self.assets[symbol] = {**(self.assets.get(symbol) or {}), "name": SYNTHETIC_NAME}

    def _make_up(self, symbol: str, start: int, end: int) -> None:
        """The synthetic days of `symbol` from `start` to `end` (ns), made up
        once each, into `history` in time order."""
        first, last = (dt.datetime.fromtimestamp(t / 1e9, NEW_YORK).date() for t in (start, end))
        if start == 0:
            first = last
        days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
        fresh = [d for d in days[:SYNTHETIC_DAYS_MAX] if d.weekday() < 5
                 and d.isoformat() not in self.closed_days and (symbol, d) not in self._made_up]
        for day in fresh:
            self._made_up.add((symbol, day))
            self._serve(synthetic(SYNTHETIC_EVENTS, symbol, seed=synthetic_seed(symbol, day),
                                  move_p=0.05, print_p=0.15, day=day, **in_the_bots_units()))
        if fresh:
            book = self.history[symbol]
            book["quotes"].sort(key=lambda i: i["t"])
            book["trades"].sort(key=lambda i: i["t"])

    def _history_query(self, request: web.Request) -> tuple[dict, Optional[web.Response]]:
        """The data API's query parameters, checked as Alpaca checks them."""
        if not self.history and not self.synthetic_symbols:   # the simulator's own word
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
        if symbol in self.synthetic_symbols:
            self._make_up(symbol, query["start"], query["end"])
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
        self._serve(tape.events, updates)

    def _serve(self, events: Iterable[Event], updates: Optional[dict[int, str]] = None) -> None:
        for i, e in enumerate(events):
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
