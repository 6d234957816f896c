"""An order's life under answers that are lost, late or lies, end to end.

Each test makes the fake Alpaca answer badly on purpose and ends by comparing
the bot's summary with the fake's books (`assert_in_step`): the same
position, no order of the run left open when the bot exits 0, never more
than --quantity held at the fake, no order sent more than 1 s after its
triggering print.
"""
from __future__ import annotations

import signal

from sim.alpaca import DROP, FillPolicy
from tests.helpers import LOT, assert_in_step, buy_signal, sentinel, stop_cleanly, summary

POST = ("POST", "/v2/orders")
CANCEL = ("DELETE", "/v2/orders/{id}")
LOOKUP = ("GET", "/v2/orders:by_client_order_id")


# ------------------------------------------------------------------ the submit
def test_5xx_after_the_order_was_placed_counts_its_fill(fake, bot):
    """Submit answered 5xx: the outcome is unknown. The order stays registered and
    pending (it may exist and fill); any trade update for it resolves it."""
    fake.force(*POST, 500, "internal server error", after=True)   # placed, then a 500
    buy_signal(fake, 1000, t=0)                                  # ... and it fills
    out = bot.wait_log(f"FILL BUY {LOT}")
    assert "outcome unknown" in out
    s = assert_in_step(fake, stop_cleanly(bot), 0)
    assert (s["bought"], s["position"]) == (LOT, LOT)


def test_5xx_after_the_order_was_placed_still_gets_its_cancel(fake, bot):
    """An update for an order whose id was unknown supplies the id, and its due
    cancel is sent (it never rests as a day order)."""
    fake.default_policy = FillPolicy(shares=0)                   # it rests
    fake.force(*POST, 502, "bad gateway", after=True)
    buy_signal(fake, 1000, t=0)
    [cancelled] = fake.wait_cancels(1)
    assert fake.orders[cancelled]["status"] == "canceled"
    s = assert_in_step(fake, stop_cleanly(bot), 0)
    assert (s["orders"], s["position"]) == (1, 0)


def test_submit_answered_after_the_timeout_and_created_late_is_found_and_cancelled(fake, bot):
    """Timed out: unknown, resolved by client_order_id with REST look-ups repeated
    with backoff; a 404 while the submit may still be in flight releases nothing."""
    fake.default_policy = FillPolicy(shares=0)
    fake.latency_s[POST] = 3.0                  # the bot gives up at 2 s; created at 3 s
    buy_signal(fake, 1000, t=0)
    [cancelled] = fake.wait_cancels(1, timeout=15)
    assert fake.orders[cancelled]["status"] == "canceled"
    assert fake.received.requests.count(LOOKUP) >= 2             # a 404 first, then found
    out = stop_cleanly(bot)
    assert "never placed" not in out
    assert_in_step(fake, out, 0)


def test_404_means_never_placed_only_out_of_flight_and_the_room_stays_held(fake, run_bot):
    """A 404 from the look-up counts as "never placed" only once the submit can no
    longer be in flight (well past the request timeout); even then its shares keep
    their room (it may yet be created late), and it is looked up again at shutdown."""
    bot = run_bot(quantity=LOT)
    fake.force(*POST, 503, "service unavailable")               # never created
    buy_signal(fake, 1000, t=0)
    bot.wait_log("outcome unknown")
    buy_signal(fake, 1010, t=1000)              # no room: the unknown lot may exist
    bot.wait_log("not followed: no room to buy")
    bot.wait_log("never placed", timeout=15)
    lookups = fake.received.requests.count(LOOKUP)
    assert lookups >= 2                         # a 404 while it may be in flight: still unknown
    buy_signal(fake, 1020, t=2000)              # never placed, and still no room
    bot.wait_log("not followed: no room to buy", after="never placed")
    s = assert_in_step(fake, stop_cleanly(bot), 0, quantity=LOT)
    assert (s["orders"], s["position"], len(fake.received.orders)) == (1, 0, 1)
    assert fake.received.requests.count(LOOKUP) > lookups       # and once more at shutdown


def test_connection_lost_on_submit_is_unknown_not_refused(fake, bot):
    """The connection failed: the outcome is unknown, never taken as "not placed"."""
    fake.force(*POST, DROP, after=True)          # placed, then the connection is cut
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    out = stop_cleanly(bot)
    assert "REJECTED" not in out
    assert assert_in_step(fake, out, 0)["position"] == LOT


# ------------------------------------------------------------------ the cancel
def test_refused_cancels_are_retried_until_the_order_is_terminal(fake, bot):
    """Cancel refused with 429/5xx: retried with backoff until the order is terminal;
    an order of this run never rests as a day order."""
    fake.default_policy = FillPolicy(shares=0)
    fake.force(*CANCEL, 500, "internal server error", times=5)
    buy_signal(fake, 1000, t=0)
    fake.wait_cancels(6, timeout=15)
    fake.wait_until(lambda: not fake.open_orders(), "the order to be cancelled")
    assert fake.received.requests.count(CANCEL) == 6
    s = assert_in_step(fake, stop_cleanly(bot), 0)
    assert (s["orders"], s["position"]) == (1, 0)


def test_cancel_that_times_out_is_retried(fake, bot):
    """Cancel timed out: retried with backoff until the order is terminal."""
    fake.default_policy = FillPolicy(shares=0)
    fake.latency_s[CANCEL] = 2.5                 # past the bot's 2 s: no answer
    buy_signal(fake, 1000, t=0)
    fake.wait_cancels(1)
    del fake.latency_s[CANCEL]
    fake.wait_until(lambda: not fake.open_orders(), "the order to be cancelled", timeout=15)
    assert_in_step(fake, stop_cleanly(bot), 0)


# ------------------------------------------------------------------- Ctrl+C
def test_ctrl_c_retries_a_refused_cancel_until_the_order_is_cancelled(fake, bot):
    """Ctrl+C: every order of this run still open is cancelled, with retries,
    until each is terminal."""
    fake.default_policy = FillPolicy(shares=0)
    fake.force(*CANCEL, 500, times=None)                        # refused while it runs
    buy_signal(fake, 1000, t=0)
    bot.wait_log("refused")
    fake.force(*CANCEL, 503, times=2)                           # ... and twice more after
    bot.proc.send_signal(signal.SIGINT)
    assert bot.wait_exit(timeout=12) == 0
    assert fake.open_orders() == []
    assert_in_step(fake, bot.output(), 0)


def test_ctrl_c_lists_an_order_it_cannot_cancel_and_exits_nonzero(fake, bot):
    """Orders still open at the deadline are listed and the exit code is non-zero."""
    fake.default_policy = FillPolicy(shares=0)
    fake.force(*CANCEL, 500, times=None)
    buy_signal(fake, 1000, t=0)
    [order] = fake.wait_orders(1)
    bot.wait_log("refused")
    bot.proc.send_signal(signal.SIGINT)
    code = bot.wait_exit(timeout=15)
    out = bot.output()
    assert code == 3
    assert f"may still be open at Alpaca: {order['client_order_id']}" in out
    assert_in_step(fake, out, code)


def test_no_order_is_queued_or_sent_after_ctrl_c(fake, run_bot):
    """An order is sent only if the REST rate budget has room for its submit and its
    cancel right now; otherwise the signal is skipped (not queued, not sent late),
    and never after Ctrl+C."""
    bot = run_bot("--rest-rate", "8")           # start-up takes 6: room for one order
    buy_signal(fake, 1000, t=0)
    fake.wait_cancels(1)
    buy_signal(fake, 1010, t=1000)              # no room: skipped
    bot.wait_log("not followed: REST rate budget")
    out = stop_cleanly(bot)
    assert len(fake.received.orders) == 1
    cancel_at = fake.received.request_times[fake.received.requests.index(CANCEL)]
    post_at = fake.received.request_times[fake.received.requests.index(POST)]
    assert cancel_at - post_at < 0.5            # the cancel's budget was booked with it
    assert assert_in_step(fake, out, 0)["orders"] == 1


def test_unknown_order_at_ctrl_c_is_resolved_before_exit(fake, bot):
    """Ctrl+C with an order whose outcome is unknown: it is resolved (found and
    cancelled) before the bot exits."""
    fake.default_policy = FillPolicy(shares=0)
    fake.latency_s[POST] = 3.0
    buy_signal(fake, 1000, t=0)
    bot.wait_log("outcome unknown")
    bot.proc.send_signal(signal.SIGINT)
    assert bot.wait_exit(timeout=15) == 0
    assert fake.open_orders() == [] and len(fake.orders) == 1
    assert summary(bot.output())["orders"] == 1
    assert_in_step(fake, bot.output(), 0)


def test_sentinel_still_trades_after_faults(fake, bot):
    """Faults on one order leave the bot trading: the next signal is followed."""
    fake.force(*POST, 500, after=True)
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    assert len(sentinel(fake, 1)) == 1
    assert_in_step(fake, stop_cleanly(bot), 0)
