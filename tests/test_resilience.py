"""The real world, end to end through the fake Alpaca: dropped streams, restarts,
rate limits and error storms, market hours, a silent feed.

In every test the bot's position (its summary) must equal the fake's, it must
never hold more than --quantity, and it must send no order while its state is
stale.
"""
from __future__ import annotations

import time

import tick_taker as tt
from sim.alpaca import FillPolicy, trade
from tests.helpers import (AFTER_MS, LOT, PRINT, SENTINEL_BID, SYMBOL, TICK, arm, assert_clean, assert_in_step, at,
                           buy_signal, limit_cents, sell_signal, sentinel, stop_cleanly, summary)

CANCEL = ("DELETE", "/v2/orders/{id}")


def data_reconnected(fake, connections: int) -> None:
    fake.wait_until(lambda: fake.received.data_connections >= connections
                    and fake.subscribed(SYMBOL), "the data stream to reconnect")


# ------------------------------------------------------------ dropped streams
def test_fill_while_the_trading_stream_is_down_is_counted_once(fake, bot):
    """No lost fills: after the trading stream reconnects, fetch every order of this run
    still in flight and apply what filled while it was down, exactly once."""
    fake.default_policy = FillPolicy(shares=0)            # the order rests ...
    fake.force(*CANCEL, 500, "internal server error", times=None)   # ... uncancellable
    buy_signal(fake, 1000, t=0)
    [placed] = fake.wait_orders(1)
    order = fake.order_by_client_id(placed["client_order_id"])
    fake.drop_trading_stream()
    fake.wait_until(lambda: not fake.listening, "the trading stream to drop")
    fake.fill(order, LOT)                                 # nobody hears this fill
    bot.wait_log("the trading stream reconnected")
    bot.wait_log(f"FILL BUY {LOT}", timeout=2)               # asked for at once, not later
    fake.faults.clear()
    s = assert_in_step(fake, stop_cleanly(bot), 0)
    assert (s["bought"], s["position"]) == (LOT, LOT)


def test_no_order_while_the_trading_stream_is_down(fake, bot):
    """The bot sends no order while its state is stale (fills would go unseen)."""
    fake.force("GET", "/stream", 503, "unavailable", times=None)   # reconnects fail
    fake.drop_trading_stream()
    bot.wait_log("reconnect failed")
    buy_signal(fake, 1000, t=0)
    fake.faults.clear()
    bot.wait_log("the trading stream reconnected")
    assert sentinel(fake, 0) == []
    assert fake.received.requests.count(("GET", "/stream")) >= 3   # retried, backing off
    stop_cleanly(bot)


def test_data_stream_drop_disarms_until_a_fresh_level_change(fake, bot):
    """After the data stream reconnects, disarm the level until a fresh one-cent
    level change."""
    level_t = arm(fake, 1000, t=0)
    fake.drop_data_stream()
    data_reconnected(fake, 2)
    fake.push(trade(SYMBOL, 1000 + TICK, PRINT, at(level_t + AFTER_MS)))  # at the old, armed level
    assert sentinel(fake, 0) == []
    stop_cleanly(bot)


def test_refused_keys_on_reconnect_stay_fatal(fake, bot):
    """Refused keys stay fatal: no reconnect loop."""
    fake.refuse_auth = True
    fake.drop_data_stream()
    assert bot.wait_exit() == 1
    out = bot.output()
    assert "refused the API keys" in out and "SUMMARY" in out
    assert_clean(out)
    assert fake.received.data_connections == 2


def test_connection_limit_on_reconnect_is_explained_and_retried(fake, bot):
    """A 406 "connection limit exceeded" says plainly that another program holds the
    account's data connection (after a crash it clears in about 90 s)."""
    fake.data_auth_error = (406, "connection limit exceeded")
    fake.drop_data_stream()
    bot.wait_log("another program already holds")
    fake.data_auth_error = None
    bot.wait_log("the market-data stream reconnected")
    buy_signal(fake, 1000, t=0)
    assert len(fake.wait_orders(1)) == 1
    stop_cleanly(bot)


# ------------------------------------------------------------------- restarts
def test_restart_counts_held_shares_and_cancels_only_its_own_stale_order(fake, run_bot):
    """At start: shares already held count toward --quantity; open orders with this
    bot's client_order_id prefix are cancelled; others are reported, never touched."""
    fake.hold(SYMBOL, 3 * LOT, 1000)
    old = fake.resting_order(SYMBOL, "buy", LOT, 900, "tick-taker-0ldrun00-7")
    manual = fake.resting_order(SYMBOL, "sell", LOT, 1100, "manual-order-1")
    bot = run_bot(quantity=5 * LOT)
    out = bot.wait_log("not this bot's")
    assert f"already holds +{3 * LOT}" in out
    assert (old["status"], manual["status"]) == ("canceled", "new")
    for i in range(3):                                   # room for 2 lots: 3 + 2 = 5 lots
        buy_signal(fake, 1000 + 10 * i, t=1000 * i)
        if i < 2:
            fake.wait_until(lambda: fake.position_qty(SYMBOL) == LOT * (3 + i + 1), "a fill")
    assert len(sentinel(fake, 2, side="sell")) == 2
    s = summary(stop_cleanly(bot))
    assert (s["bought"], s["sold"], s["position"]) == (2 * LOT, LOT, LOT)
    assert fake.position_qty(SYMBOL) == 3 * LOT + s["position"]
    assert manual["status"] == "new"


def test_restart_finds_a_stale_order_past_the_first_page_of_open_orders(fake, run_bot):
    """Every open order is read (pages of 500, the most one listing gives): a stale
    order of this bot behind 500 newer ones of someone else's is still cancelled."""
    old = fake.resting_order(SYMBOL, "buy", 100, 900, "tick-taker-0ldrun00-7")
    time.sleep(0.001)                                    # older than every other
    for i in range(tt.ORDERS_PAGE):
        fake.resting_order(SYMBOL, "sell", 100, 1100, f"manual-order-{i}")
    bot = run_bot()
    assert old["status"] == "canceled"
    assert fake.received.requests.count(("GET", "/v2/orders")) == 2
    stop_cleanly(bot)


def test_restart_never_sells_shares_bought_before_this_run(fake, run_bot):
    """The bot only ever sells shares it bought in this run."""
    fake.hold(SYMBOL, 3 * LOT, 1000)
    bot = run_bot(quantity=5 * LOT)
    sell_signal(fake, 1000, t=0)
    assert sentinel(fake, 0) == []
    stop_cleanly(bot)


# ---------------------------------------------------------------- rate limits
def test_429_pauses_new_orders_without_blocking_the_stream(fake, run_bot):
    """A 429 backs off without blocking the loop: signals during the pause are
    skipped, not queued, and fills keep being applied."""
    fake.rate_reset_s = 2
    bot = run_bot()
    fake.force("POST", "/v2/orders", 429, "rate limit exceeded")
    buy_signal(fake, 1000, t=0)
    bot.wait_log("REJECTED")
    buy_signal(fake, 1010, t=1000)                       # during the pause
    bot.wait_log("not followed: REST rate budget")
    assert len(fake.received.orders) == 1
    for i in range(2, 30):                               # after the pause, orders resume
        buy_signal(fake, 1000 + 10 * i, t=1000 * i)
        try:
            fake.wait_orders(2, timeout=0.25)
            break
        except AssertionError:
            continue
    assert len(fake.received.orders) == 2
    stop_cleanly(bot)


def test_500_storm_on_cancel_is_retried_until_the_order_is_cancelled(fake, bot):
    """Each order is followed at once by a cancel; a refused cancel (5xx) is retried
    with backoff, so no order is left open by accident."""
    fake.default_policy = FillPolicy(shares=0)
    fake.force(*CANCEL, 500, "internal server error", times=2)
    buy_signal(fake, 1000, t=0)
    fake.wait_cancels(3)
    fake.wait_until(lambda: not fake.open_orders(), "the order to be cancelled")
    assert summary(stop_cleanly(bot))["position"] == 0


def test_rest_calls_never_exceed_the_rate(fake):
    """The bot never exceeds Alpaca's REST rate: every request, retries included,
    passes the limiter (here 3 per 0.5 s)."""
    class Granting(tt.RateLimiter):
        """The limiter, noting when it let each request leave (the fake's arrival
        times would add the machine's jitter to the test)."""
        granted: list[float] = []

        def take(self, now: float) -> float:
            wait = super().take(now)
            if wait <= 0:
                self.granted.append(now)
            return wait

    limiter = Granting(limit=3, window_s=0.5)
    cfg = tt.Config((SYMBOL,), 5 * LOT, fake.key_id, fake.secret_key, fake.url, fake.url, "iex")
    rest = tt.make_rest(cfg, limiter)
    for _ in range(7):
        rest.get_clock()
    assert fake.received.requests.count(("GET", "/v2/clock")) == 7
    assert len(limiter.granted) == 7                     # every request passed the limiter
    assert all(b - a >= 0.5 for a, b in zip(limiter.granted, limiter.granted[3:]))


# --------------------------------------------------------------- market hours
def test_waits_for_the_open(fake, run_bot):
    """Market hours: wait for the open (the clock endpoint)."""
    fake.hours_from_first_read(opens_in=2.5)
    bot = run_bot(ready=False)
    bot.wait_log("market closed: it opens in")
    assert fake.received.data_connections == 0
    fake.wait_ready(SYMBOL)
    stop_cleanly(bot)


def test_stops_new_orders_before_the_close_and_flattens(fake, run_bot):
    """Stop sending new orders a configurable number of minutes before the close;
    --flatten-at-close sells what the run bought."""
    fake.hours_from_first_read(closes_in=8)              # 5 s to connect and buy, even on a
    bot = run_bot("--stop-before-close", "0.05", "--flatten-at-close")  # busy machine; 3 s before
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    bot.wait_log("FLATTEN")
    buy_signal(fake, 1010, t=1000)                       # too late for new orders
    assert bot.wait_exit(timeout=10) == 0                # stops at the close by itself
    orders = fake.received.orders
    assert [(o["side"], o["type"]) for o in orders] == [("buy", "limit"), ("sell", "market")]
    s = summary(bot.output())
    assert (s["bought"], s["sold"], s["position"]) == (LOT, LOT, 0) and fake.position_qty(SYMBOL) == 0


# ------------------------------------------------------------------ watchdog
def test_silent_feed_is_reported_and_its_level_not_traded(fake, run_bot):
    """No market data for N seconds is logged as a warning, and the bot does not
    trade on the stale level."""
    bot = run_bot("--stale-seconds", "0.5", "--debug")
    level_t = arm(fake, 1000, t=0)
    bot.wait_log("no quotes for MU for", after=f"level MU 10.00/{tt.dollars(1000 + TICK)} armed")
    fake.push(trade(SYMBOL, 1000 + TICK, PRINT, at(level_t + AFTER_MS)))
    assert sentinel(fake, 0) == []
    assert limit_cents(fake.received.orders[0]) == SENTINEL_BID + TICK
    stop_cleanly(bot)


# ------------------------------------------------- streams that fail mid-way
def test_stream_closed_during_the_reconnect_handshake_is_retried(fake, bot):
    """Streams never die of a transient fault: any failure while connecting, signing
    in or subscribing is retried with backoff."""
    fake.cut_handshakes = {"data": 2, "trading": 2}
    fake.drop_trading_stream()
    fake.drop_data_stream()
    bot.wait_log("the trading stream reconnected", timeout=15)
    bot.wait_log("the market-data stream reconnected", timeout=15)
    assert fake.received.trading_connections >= 4 and fake.received.data_connections >= 4
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    assert_in_step(fake, stop_cleanly(bot), 0)


def test_malformed_frames_are_logged_and_skipped(fake, bot):
    """A malformed frame is logged and skipped, on either stream."""
    fake.send_garbage("data")
    fake.send_garbage("trading")
    bot.wait_log("malformed trading-stream frame")
    assert "malformed market-data frame" in bot.output()
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    out = stop_cleanly(bot)
    assert fake.received.data_connections == fake.received.trading_connections == 1
    assert_in_step(fake, out, 0)


def test_stream_that_drops_right_after_subscribing_is_not_hammered(fake, bot):
    """The backoff resets only after a connection has stayed up a while, so a stream
    that connects and drops at once is not hammered."""
    fake.drop_after_subscribe = 3
    fake.drop_data_stream()
    bot.wait_log("the market-data stream reconnected", timeout=15)
    fake.wait_until(lambda: fake.received.data_connections >= 5 and fake.subscribed(SYMBOL),
                    "the fifth connection to stay up", timeout=15)
    times = fake.received.data_connection_times
    gaps = [b - a for a, b in zip(times[1:], times[2:])]         # between reconnects
    assert len(gaps) == 3 and gaps[-1] >= 1.9, gaps              # 0.5-1, 1-2, 2-4 s
    stop_cleanly(bot)


def test_trading_stream_waits_for_listening_before_reconciling(fake, bot):
    """Wait for the trading stream's `listening` acknowledgement before reconciling."""
    fake.listen_delay_s = 1.0
    fake.drop_trading_stream()
    fake.wait_until(lambda: not fake.listening, "the trading stream to drop")
    bot.wait_log("the trading stream reconnected")
    assert fake.listening                       # acknowledged before the bot went on
    stop_cleanly(bot)


# ----------------------------------------------------- start-up REST faults
def test_transient_errors_at_start_up_are_retried(fake, run_bot):
    """Start-up and the wait for the open survive transient REST errors (5xx,
    timeouts): retried with backoff."""
    fake.force("GET", "/v2/account", 503, "service unavailable")
    fake.force("GET", "/v2/clock", 500, "internal server error", times=2)
    fake.force("GET", "/v2/orders", 502, "bad gateway")
    fake.force("GET", "/v2/positions", 500, "internal server error")
    fake.force("GET", "/v2/assets", 503, "service unavailable")
    bot = run_bot(ready=False)
    fake.wait_ready(SYMBOL, timeout=20)
    out = stop_cleanly(bot)
    assert out.count("retrying in") == 6
    assert_in_step(fake, out, 0)


def test_start_up_error_that_persists_ends_with_a_clear_message(fake, run_bot):
    """... then a clear fatal message, never a traceback."""
    fake.force("GET", "/v2/clock", 500, "internal server error", times=None)
    bot = run_bot(ready=False)
    assert bot.wait_exit(timeout=20) == 1
    out = bot.output()
    assert "cannot read the market clock" in out and "HTTP 500" in out
    assert_clean(out)
    assert fake.received.data_connections == fake.received.trading_connections == 0
