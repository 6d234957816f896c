"""The fake Alpaca is only worth its tests if it speaks Alpaca's wire protocol.

Where the protocol notes were unsure, alpaca-trade-api 3.2's own parsing
decides: these tests drive the fake with the SDK's REST client and the SDK's
own stream classes (msgpack data stream, legacy trading-stream auth).
"""
from __future__ import annotations

import asyncio

import pytest
from alpaca_trade_api.rest import REST, APIError
from alpaca_trade_api.stream import DataStream, TradingStream

from sim.alpaca import FillPolicy, quote, trade
from tests.helpers import SYMBOL, at


@pytest.fixture
def rest(fake, monkeypatch):
    monkeypatch.setenv("APCA_RETRY_WAIT", "0")
    return REST(fake.key_id, fake.secret_key, fake.url, api_version="v2")


def test_account_has_no_pdt_fields_since_july_2026(rest):
    """GET /v2/account: decimals as strings; pattern_day_trader and daytrade_count removed."""
    acct = rest.get_account()
    assert acct.status == "ACTIVE" and isinstance(acct.equity, str)
    assert getattr(acct, "pattern_day_trader", None) is None
    assert rest.get_clock().is_open and rest.get_asset(SYMBOL).tradable


def test_wrong_keys_get_401_with_alpacas_error_body(fake):
    """Key headers are checked: 401 {"code": 40110000, "message": ...}."""
    with pytest.raises(APIError) as err:
        REST(fake.key_id, "wrong", fake.url, api_version="v2").get_account()
    assert (err.value.status_code, err.value.code) == (401, 40110000)


def test_marketable_buy_fills_at_the_ask_and_is_not_cancelable(fake, rest):
    """A buy limit at or above the ask fills at the ask; cancelling a filled order is 422."""
    fake.push(quote(SYMBOL, 1000, 1001, 500, 300, at(0)))
    order = rest.submit_order(SYMBOL, 100, "buy", "limit", "day", limit_price="10.05",
                              client_order_id="c1")
    fake.wait_until(lambda: fake.order_by_client_id("c1")["status"] == "filled", "the fill")
    filled = rest.get_order_by_client_order_id("c1")
    assert (filled.id, filled.filled_qty, filled.filled_avg_price) == (order.id, "100", "10.0100")
    with pytest.raises(APIError) as err:
        rest.cancel_order(order.id)
    assert (err.value.status_code, err.value.code) == (422, 42210000)
    assert rest.get_position(SYMBOL).qty == "100"
    assert [o.id for o in rest.list_orders(status="closed")] == [order.id]


def test_fill_is_limited_by_the_ask_size(fake, rest):
    """The matching engine fills against the ask size; the rest stays open until cancelled."""
    fake.push(quote(SYMBOL, 1000, 1001, 500, 30, at(0)))
    order = rest.submit_order(SYMBOL, 100, "buy", "limit", "day", limit_price="10.01")
    fake.wait_until(lambda: fake.orders[order.id]["filled_qty"] == "30", "the partial fill")
    assert rest.cancel_order(order.id) is None                   # 204
    assert rest.get_order(order.id).status == "canceled"


def test_unknown_order_and_flat_position_are_404(rest):
    """DELETE an unknown order: 404 40410000; GET a flat position: 404 40410000."""
    for call in (lambda: rest.cancel_order("no-such-id"), lambda: rest.get_position("ZZZZ")):
        with pytest.raises(APIError) as err:
            call()
        assert (err.value.status_code, err.value.code) == (404, 40410000)


def test_forced_429_is_retried_by_the_sdk(fake, rest):
    """Fault injection: a forced status per route; the SDK retries 429."""
    fake.force("GET", "/v2/account", 429, "rate limit exceeded")
    assert rest.get_account().status == "ACTIVE"
    assert fake.received.requests.count(("GET", "/v2/account")) == 2


def test_sdk_msgpack_data_stream_decodes_quotes_and_trades(fake):
    """msgpack (binary, msgpack timestamps) when the handshake sends
    Content-Type: application/msgpack, as the SDK does."""
    async def scenario():
        stream = DataStream(fake.key_id, fake.secret_key, fake.url, raw_data=False)
        got: asyncio.Queue = asyncio.Queue()

        async def handler(item):
            got.put_nowait(item)

        stream.subscribe_quotes(handler, SYMBOL)
        stream.subscribe_trades(handler, SYMBOL)
        await stream._start_ws()
        await stream._subscribe_all()                  # fragmented binary frames
        consumer = asyncio.create_task(stream._consume())
        await asyncio.to_thread(fake.wait_subscribed, SYMBOL)
        await asyncio.to_thread(fake.push, quote(SYMBOL, 1000, 1001, 500, 300, at(1.5)),
                                trade(SYMBOL, 1001, 100, at(2)))
        q, t = [await asyncio.wait_for(got.get(), 5) for _ in range(2)]
        consumer.cancel()
        await stream.close()
        return q, t

    q, t = asyncio.run(scenario())
    assert (q.bid_price, q.ask_price, q.bid_size, q.ask_size) == (10.0, 10.01, 500, 300)
    assert q.timestamp.value == at(1.5) and t.timestamp.value == at(2)
    assert (t.price, t.size) == (10.01, 100)


def test_sdk_trading_stream_receives_fills_with_string_numbers(fake, rest):
    """trade_updates: legacy auth shape, binary frames, numbers as strings,
    per-execution qty and cumulative order.filled_qty."""
    fake.push(quote(SYMBOL, 1000, 1001, 500, 300, at(0)))
    fake.policies = [FillPolicy(pieces=(40, 60))]

    async def scenario():
        stream = TradingStream(fake.key_id, fake.secret_key, fake.url)
        got: asyncio.Queue = asyncio.Queue()

        async def handler(update):
            got.put_nowait(update)

        stream.subscribe_trade_updates(handler)
        await stream._start_ws()
        consumer = asyncio.create_task(stream._consume())
        await asyncio.to_thread(fake.wait_until, lambda: fake.listening, "listen")
        await asyncio.to_thread(rest.submit_order, SYMBOL, 100, "buy", "limit", "day",
                                limit_price="10.01")
        updates = [await asyncio.wait_for(got.get(), 5) for _ in range(3)]
        consumer.cancel()
        await stream.close()
        return updates

    new, part, full = asyncio.run(scenario())
    assert [u.event for u in (new, part, full)] == ["new", "partial_fill", "fill"]
    assert (part.qty, part.order["filled_qty"], full.qty, full.order["filled_qty"]) == \
        ("40", "40", "60", "100")
    assert (full.price, full.position_qty, full.order["status"]) == ("10.01", "100", "filled")


def test_replay_waits_for_an_order_the_bot_must_send_however_late_it_comes(fake, rest):
    """The replay waits "for an order the bot must send (its rule signals and its
    own position has room) until that order has come, however loaded the machine"."""
    import threading
    fake.universe.add(SYMBOL)
    late = threading.Timer(0.2, lambda: rest.submit_order(SYMBOL, 100, "buy", "limit", "day",
                                                          limit_price="10.00"))
    late.start()                         # after the ping round trips, as on a loaded machine
    try:
        assert fake.call(fake._order_came, 0, False, True) is True
    finally:
        late.join()
    assert (fake.replay_late_orders, fake.replay_missing_orders) == (1, 0)
    # An order the bot has no room for is not awaited: no order, no wait.
    assert fake.call(fake._order_came, 1, False, False) is False
    assert fake.replay_late_orders == 1
