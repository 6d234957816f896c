"""The wire's shapes: Alpaca's messages, orders and error bodies as the fake
sends them, the knobs a test sets on one order (FillPolicy) or one route
(Fault), and the builders tests push (`quote`, `trade`, ...)."""
from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Optional

import msgpack
from aiohttp import web

from sim.tape import LOT_SHARES

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
