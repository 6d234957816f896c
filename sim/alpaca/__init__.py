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
- The market-data history at /v2/stocks/...: tapes loaded, made-up
  symbol-days, and every quote and trade the stream sent (pushed by a test
  or played live), as Alpaca's history holds what its stream sent: a run
  against the simulator can be replayed from it (sim.drift).

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

    python -m sim.alpaca [--port 8642] [--play FILE | --synthetic] [--history]

Where each part lives (one concern a file; FakeAlpaca in server.py is
their sum):

    wire.py      the wire's shapes: orders, errors, quote()/trade() builders
    server.py    FakeAlpaca: routes, its thread, the recording middleware
    account.py   account, clock, calendar, assets, positions
    orders.py    orders and the matching engine (the fill assumptions above)
    streams.py   the trading stream and the market-data stream
    play.py      a tape streamed: the replay's lockstep, the live play
    history.py   the historical routes (/v2/stocks/...)
    controls.py  the test API: push, force, wait_*
    __main__.py  `python -m sim.alpaca`
"""
from sim.alpaca.history import BUNDLED, NO_HISTORY
from sim.alpaca.server import FakeAlpaca
from sim.alpaca.wire import (DROP, EXPECTED_ORDER_S, KEY_ID, NO_FIELD, OPEN_STATES, SECRET_KEY,
                             WAIT_S, Fault, FillPolicy, Received, cancel_error, correction, money,
                             new_order, public, quote, rfc3339, trade)

__all__ = ["BUNDLED", "DROP", "EXPECTED_ORDER_S", "KEY_ID", "NO_FIELD", "NO_HISTORY", "OPEN_STATES",
           "SECRET_KEY", "WAIT_S", "FakeAlpaca", "Fault", "FillPolicy", "Received", "cancel_error",
           "correction", "money", "new_order", "public", "quote", "rfc3339", "trade"]
