"""End to end: the real tick_taker.py, as a subprocess with the real CLI and
environment, against the fake Alpaca on 127.0.0.1. The bot is judged by what
the fake receives (orders, cancels) and by what it prints.

Negative cases ("nothing is sent") end with a sentinel signal the bot must
follow: orders leave in decision order, so when the sentinel's order is the
only one received, nothing was sent before it.
"""
from __future__ import annotations

import signal

import pytest

from sim.alpaca import FillPolicy, quote, trade
from sim.bot import ROOT
from tests.helpers import (AFTER_MS, GUARD_MS, HEAVY, LIGHT, LOT, MS, ODD, PRINT, SYMBOL, TICK, Bot,
                           assert_clean, assert_in_step, at, arm, buy_signal, clean_env,
                           limit_cents, push_signal, sell_signal, sentinel, stop_cleanly,
                           summary, warnings)

# ------------------------------------------------------------- the strategy
def test_buy_signal_sends_a_day_limit_for_one_lot_at_the_ask_then_cancels_it(fake, bot):
    """Buy one lot with a limit at the level's ask ... Each order is a `day` limit
    order (100 shares), followed at once by a cancel of that order."""
    fake.default_policy = FillPolicy(shares=0)          # rests: the cancel really cancels
    buy_signal(fake, 1000, t=0)
    [order] = fake.wait_orders(1)
    assert (order["symbol"], order["side"], order["type"], order["time_in_force"],
            int(order["qty"]), limit_cents(order)) == (SYMBOL, "buy", "limit", "day", LOT, 1000 + TICK)
    assert order["client_order_id"].startswith("tick-taker-")
    [cancelled] = fake.wait_cancels(1)
    assert fake.order_by_client_id(order["client_order_id"])["id"] == cancelled
    assert summary(stop_cleanly(bot))["position"] == 0


def test_started_as_python_tick_taker_py_it_trades_and_stops_cleanly(fake, run_bot):
    """Run from a terminal with --symbol and --quantity; stopped with one Ctrl+C
    (the rest of the suite forks its bots from a process that imported their
    libraries once: this one is a fresh `python tick_taker.py`)."""
    bot = run_bot(fresh=True)
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    assert_in_step(fake, stop_cleanly(bot), 0)


def test_sell_signal_sells_one_lot_at_the_bid_from_shares_bought(fake, bot):
    """Sell one lot with a limit at the level's bid when the trade printed at the bid,
    live ask size > 1.8 x live bid size, and held - pending sells >= 100."""
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    sell_signal(fake, 1010, t=1000)
    orders = fake.wait_orders(2)
    assert [(o["side"], limit_cents(o)) for o in orders] == [("buy", 1000 + TICK), ("sell", 1010)]
    bot.wait_log(f"FILL SELL {LOT}")
    s = summary(stop_cleanly(bot))
    gain = LOT * (1010 - (1000 + TICK)) / 100                 # (10.10 - 10.01) a share
    assert (s["bought"], s["sold"], s["position"], s["realized"]) == (LOT, LOT, 0, pytest.approx(gain))
    assert fake.position_qty(SYMBOL) == 0


def test_never_sells_short(fake, bot):
    """Sell ... held - pending sells >= 100 (it never sells short)."""
    sell_signal(fake, 1000, t=0)
    assert sentinel(fake, 0) == []
    stop_cleanly(bot)


def test_first_level_is_never_armed(fake, bot):
    """The first level seen is never armed."""
    fake.push(quote(SYMBOL, 1000, 1000 + TICK, HEAVY, LIGHT, at(0)),
              trade(SYMBOL, 1000 + TICK, PRINT, at(AFTER_MS + 50)))
    assert sentinel(fake, 0) == []


def test_jump_of_more_than_a_cent_is_not_armed(fake, bot):
    """A jump of more than a cent (possible news) makes a level that is not armed."""
    fake.push(quote(SYMBOL, 1000, 1000 + TICK, LIGHT, LIGHT, at(0)),
              quote(SYMBOL, 1000 + 2 * TICK, 1000 + 3 * TICK, HEAVY, LIGHT, at(1)),
              trade(SYMBOL, 1000 + 3 * TICK, PRINT, at(1 + AFTER_MS)))
    assert sentinel(fake, 0) == []


def test_one_side_move_does_not_rearm_or_reset_the_level(fake, bot):
    """A quote that is not a level change (only one side moved) changes no level state."""
    level_t = arm(fake, 1000, t=0)
    ask = 1000 + TICK
    push_signal(fake, "buy", [
        quote(SYMBOL, 1000, ask + TICK, HEAVY, LIGHT, at(level_t + GUARD_MS * 0.6)),  # ask alone
        quote(SYMBOL, 1000, ask, HEAVY, LIGHT, at(level_t + GUARD_MS * 0.8)),  # back: no change
        trade(SYMBOL, ask, PRINT, at(level_t + GUARD_MS + 1))])  # just past the level's guard
    [order] = fake.wait_orders(1)
    assert limit_cents(order) == ask


def test_widened_live_quote_sends_nothing(fake, bot):
    """The live quote is at the level ... when the spread has widened, nothing is done."""
    level_t = arm(fake, 1000, t=0)
    fake.push(quote(SYMBOL, 1000, 1000 + 2 * TICK, HEAVY, LIGHT, at(level_t + 10)),
              trade(SYMBOL, 1000 + TICK, PRINT, at(level_t + AFTER_MS)))
    assert sentinel(fake, 0) == []


def test_one_attempt_per_level(fake, bot):
    """An attempt (an order sent, whatever its outcome) disarms the level."""
    level_t = arm(fake, 1000, t=0)
    first = push_signal(fake, "buy", [trade(SYMBOL, 1000 + TICK, PRINT, at(level_t + AFTER_MS))])
    fake.push(trade(SYMBOL, 1000 + TICK, PRINT, first["t"] + 10 * MS),
              trade(SYMBOL, 1000 + TICK, 3 * PRINT, first["t"] + 20 * MS))
    assert len(sentinel(fake, 1)) == 1


def test_quantity_100_buys_one_lot(fake, run_bot):
    """Buy ... held + pending buys + 100 <= --quantity (the example's --quantity 100
    never bought)."""
    bot = run_bot(quantity=LOT)
    buy_signal(fake, 1000, t=0)
    bot.wait_log("FILL BUY")
    for i in range(1, 3):
        buy_signal(fake, 1000 + 10 * i, t=1000 * i)
    assert len(sentinel(fake, 1, side="sell")) == 1
    bot.wait_log("FILL SELL")
    assert summary(stop_cleanly(bot))["bought"] == LOT


def test_quantity_500_reaches_500(fake, bot):
    """held + pending buys + 100 <= --quantity (the example's 500 stopped at 400)."""
    for i in range(7):
        buy_signal(fake, 1000 + 10 * i, t=1000 * i)
        if i < 5:                                 # each fills against its own book
            fake.wait_until(lambda: fake.position_qty(SYMBOL) == LOT * (i + 1), "a fill")
    assert len(sentinel(fake, 5, side="sell")) == 5
    bot.wait_log("FILL SELL")
    s = summary(stop_cleanly(bot))
    assert (s["orders"], s["bought"], s["position"]) == (6, 5 * LOT, 4 * LOT)


# ------------------------------------------------------------ the accounting
def test_partial_fill_40_then_fill_holds_100(fake, bot):
    """On partial_fill and fill: the change in cumulative filled_qty moves from
    pending to held (the example counted 140)."""
    fake.policies = [FillPolicy(pieces=(ODD, LOT - ODD))]
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"(fill; position +{LOT})")
    s = summary(stop_cleanly(bot))
    assert (s["bought"], s["position"]) == (LOT, fake.position_qty(SYMBOL)) == (LOT, LOT)


def test_fill_before_the_rest_reply_is_counted_once_and_needs_no_cancel(fake, bot):
    """Before an order is sent it is registered ... so an update that arrives before
    the REST call returns is counted (a terminal order needs no cancel)."""
    fake.policies = [FillPolicy(before_reply=True)]
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    out = stop_cleanly(bot)
    assert fake.received.cancels == [] and warnings(out) == []
    assert assert_in_step(fake, out, 0)["position"] == LOT


def test_cancel_refused_because_the_order_filled_is_normal(fake, bot):
    """A cancel refused because the order already filled is normal, not an error."""
    fake.latency_s[("DELETE", "/v2/orders/{id}")] = 0.3     # the fill wins the race
    buy_signal(fake, 1000, t=0)
    out = bot.wait_log("cancel of")
    assert "not needed" in out and warnings(out) == []
    assert assert_in_step(fake, stop_cleanly(bot), 0)["position"] == LOT


def test_expired_order_releases_its_pending_shares(fake, run_bot):
    """On any terminal event (... expired ...): release what is still pending
    (the example's `expired` blocked buying for good)."""
    bot = run_bot(quantity=LOT)
    fake.policies = [FillPolicy(shares=0, cancel_event="expired")]
    buy_signal(fake, 1000, t=0)
    bot.wait_log("EXPIRED")
    buy_signal(fake, 1010, t=1000)
    orders = fake.wait_orders(2)
    assert [limit_cents(o) for o in orders] == [1000 + TICK, 1010 + TICK]


def test_update_for_an_order_this_run_did_not_place_is_ignored(fake, run_bot):
    """Updates for orders this run did not place (another symbol, a manual order, an
    earlier run) are ignored and never change the position."""
    bot = run_bot("--debug", quantity=LOT)
    for symbol in (SYMBOL, "AAPL"):
        fake.send_update(fake.foreign_order(symbol), "fill", qty=str(LOT), price="10.00",
                         position_qty=str(LOT))
    bot.wait_log("ignoring fill")
    buy_signal(fake, 1000, t=0)                  # still room for one lot
    [order] = fake.wait_orders(1)
    bot.wait_log("FILL BUY")
    assert summary(stop_cleanly(bot))["position"] == LOT


def test_next_order_is_sent_while_a_cancel_is_in_flight(fake, bot):
    """Order I/O never blocks the event loop: quotes and trades keep flowing while
    an order is in flight (the example froze for two REST round trips)."""
    fake.default_policy = FillPolicy(shares=0)
    fake.latency_s[("DELETE", "/v2/orders/{id}")] = 1.5     # each cancel takes 1.5 s
    buy_signal(fake, 1000, t=0)
    [first] = fake.wait_orders(1)
    fake.wait_cancels(1)                                     # the first cancel is stuck
    buy_signal(fake, 1010, t=1000)
    second = fake.wait_orders(2, timeout=1.0)[1]             # ... yet the next order goes out
    assert limit_cents(second) == 1010 + TICK
    assert fake.order_by_client_id(first["client_order_id"])["status"] == "new"
    assert_in_step(fake, stop_cleanly(bot), 0)


def test_first_order_goes_over_the_connection_opened_before_the_market_data(fake, bot):
    """The order connection is "opened before the market data is subscribed (so
    even the first signal pays for no new connection)"."""
    buy_signal(fake, 1000, t=0)
    fake.wait_orders(1)
    got = fake.received
    first = got.requests.index(("POST", "/v2/orders"))
    opened = [i for i, key in enumerate(got.requests[:first]) if key == ("GET", "/v2/clock")
              and got.request_ports[i] == got.request_ports[first]]
    assert opened, "the first order opened a connection of its own"
    assert got.request_times[opened[0]] < got.data_connection_times[0]
    assert_in_step(fake, stop_cleanly(bot), 0)


# ----------------------------------------------------------------- the faults
def test_403_on_submit_keeps_running_without_phantom_shares(fake, run_bot):
    """If sending the order fails, release its pending shares at once."""
    bot = run_bot(quantity=LOT)
    fake.force("POST", "/v2/orders", 403, "insufficient buying power")
    buy_signal(fake, 1000, t=0)
    bot.wait_log("REJECTED")
    buy_signal(fake, 1010, t=1000)
    assert [limit_cents(o) for o in fake.wait_orders(2)] == [1000 + TICK, 1010 + TICK]
    bot.wait_log("FILL BUY")
    s = summary(stop_cleanly(bot))
    assert (s["orders"], s["position"]) == (1, fake.position_qty(SYMBOL)) == (1, LOT)


def test_ctrl_c_cancels_an_order_whose_fill_is_late(fake, bot):
    """One Ctrl+C: stop the streams, cancel this run's open orders, print a summary."""
    fake.default_policy = FillPolicy(shares=0)
    fake.latency_s[("DELETE", "/v2/orders/{id}")] = 0.5
    buy_signal(fake, 1000, t=0)
    fake.wait_until(lambda: fake.received.requests.count(("DELETE", "/v2/orders/{id}")),
                    "the cancel to start")
    out = stop_cleanly(bot)
    assert fake.open_orders() == []
    assert summary(out) == {"orders": 1, "bought": 0, "sold": 0, "position": 0, "realized": 0}


def test_sigterm_stops_like_ctrl_c(fake, bot):
    """One Ctrl+C (SIGINT, and SIGTERM too): ... exit 0."""
    assert bot.stop(signal.SIGTERM) == 0
    assert "SUMMARY" in bot.output()


def test_second_ctrl_c_exits_at_once(fake, bot):
    """A second Ctrl+C exits at once. No traceback either way."""
    fake.default_policy = FillPolicy(shares=0)
    fake.force("DELETE", "/v2/orders/{id}", 500, times=None)     # the order stays open
    buy_signal(fake, 1000, t=0)
    bot.wait_log("refused")
    bot.proc.send_signal(signal.SIGINT)
    bot.wait_log("cancel of", after="stopping")
    rc = bot.stop(timeout=3)
    assert rc == 130 and "exiting now" in bot.output()
    assert_clean(bot.output())


# ---------------------------------------------------------------- start-up
def test_refused_keys_exit_nonzero_with_a_clear_message(fake, run_bot):
    """Refused keys end the run with a clear message and a non-zero exit, no
    traceback, no reconnect loop."""
    fake.refuse_auth = True
    bot = run_bot(ready=False)
    assert bot.wait_exit() == 1
    out = bot.output()
    assert "refused the API keys" in out
    assert_clean(out)
    assert fake.received.requests == [("GET", "/v2/account")]
    assert fake.received.data_connections == fake.received.trading_connections == 0


def test_data_stream_connection_limit_is_explained_and_retried(fake, run_bot):
    """406 at start-up: explained plainly, retried with backoff (a crashed run's
    connection takes a while to clear), not a 10 ms reconnect loop."""
    fake.data_auth_error = (406, "connection limit exceeded")
    fake.data_auth_error_times = 2
    bot = run_bot(ready=False)
    fake.wait_ready(SYMBOL, timeout=15)
    out = bot.output()
    assert out.count("another program already holds") == 2 and "retrying in" in out
    assert fake.received.data_connections == 3
    assert_clean(stop_cleanly(bot))


def test_missing_keys_exit_nonzero_naming_the_variables(fake, tmp_path):
    """With no keys, exit non-zero at once with a message naming
    APCA_API_KEY_ID/APCA_API_SECRET_KEY and .env.example."""
    env = {k: v for k, v in fake.env().items() if "KEY" not in k}
    bot = Bot(["--symbol", SYMBOL, "--live"], clean_env(**env), tmp_path)
    assert bot.wait_exit() == 2
    out = bot.output()
    assert all(s in out for s in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", ".env.example"))
    assert "Traceback" not in out and fake.received.requests == []


def test_placeholder_keys_from_env_example_are_refused_plainly(fake, tmp_path):
    """A .env copied from .env.example but not filled in: a clear message, no request."""
    example = (ROOT / ".env.example").read_text()
    (tmp_path / ".env").write_text(example)
    bot = Bot(["--symbol", SYMBOL, "--live"],
              clean_env(APCA_API_BASE_URL=fake.url, APCA_API_STREAM_URL=fake.url), tmp_path)
    assert bot.wait_exit() == 2
    out = bot.output()
    assert "placeholders of .env.example" in out and fake.received.requests == []
    assert_clean(out)


def test_env_file_supplies_keys_but_never_overrides_the_environment(fake, tmp_path):
    """Precedence: flag > environment > a .env file (never overriding the real
    environment) > default."""
    (tmp_path / ".env").write_text(f"APCA_API_KEY_ID={fake.key_id}\n"
                                   f"APCA_API_SECRET_KEY={fake.secret_key}\n"
                                   f"APCA_API_BASE_URL=http://127.0.0.1:9\n")
    env = clean_env(APCA_API_BASE_URL=fake.url, APCA_API_STREAM_URL=fake.url)
    bot = Bot(["--symbol", SYMBOL, "--live"], env, tmp_path)
    fake.wait_ready(SYMBOL)
    stop_cleanly(bot)


def test_flags_override_the_environment(fake, tmp_path):
    """Precedence: flag > environment."""
    env = clean_env(APCA_API_KEY_ID="PKWRONG", APCA_API_SECRET_KEY="wrong",
                    APCA_API_BASE_URL="http://127.0.0.1:9", APCA_API_STREAM_URL="http://127.0.0.1:9")
    bot = Bot(["--symbol", SYMBOL, "--live", "--key-id", fake.key_id, "--secret-key", fake.secret_key,
               "--base-url", fake.url, "--data-url", fake.url], env, tmp_path)
    fake.wait_ready(SYMBOL)
    stop_cleanly(bot)


def test_blocked_account_refuses_to_start(fake, run_bot):
    """Refuse to start when the account says trading is blocked."""
    fake.account_extra = {"trading_blocked": True}
    bot = run_bot(ready=False)
    assert bot.wait_exit() == 1
    assert "trading_blocked" in bot.output() and fake.received.data_connections == 0


def test_removed_pdt_fields_are_read_only_if_present(fake, run_bot):
    """Alpaca removed pattern_day_trader and daytrade_count in July 2026: read such
    fields only if present."""
    fake.account_extra = {"pattern_day_trader": False, "daytrade_count": 2}
    bot = run_bot()
    assert "daytrade_count: 2" in bot.wait_log("daytrade_count")
    stop_cleanly(bot)
