"""The last money edges (docs/order-life.md with "When things go wrong",
README "Risks"): an order created after it was written off (its room kept, its fills
counted whenever they come), the open-order listing's pages, the loss limit at every
moment, a market order that waited, signals during a shutdown the bot began,
SIGHUP, wash-trade refusals, sub-dollar quotes, and the small ones (a journal
row SQLite refuses, an odd sign-in reply, fills reported before the end).
End to end against the fake Alpaca, except where a unit test is the honest
tool (the journal's writer, the Position).
"""
from __future__ import annotations

import signal
import sqlite3
import threading
import time
from decimal import Decimal

import pytest

import tick_taker as tt
from sim.alpaca import FillPolicy, quote, trade
from tests.helpers import (AFTER_MS, HEAVY, LIGHT, LOT, ODD, PRINT, SYMBOL, TICK, arming,
                           assert_in_step, at, buy_signal, push_signal, sell_signal, sentinel,
                           stop_cleanly)

POST = ("POST", "/v2/orders")
DELETE = ("DELETE", "/v2/orders/{id}")


def run_id(out: str) -> str:
    """This run's id, from its first order's client_order_id in the log."""
    return out.split("[tick-taker-", 1)[1].split("-", 1)[0]


# ------------------------------------------------- an order written off, then created
def test_order_written_off_then_created_late_is_tracked_and_cancelled(fake, run_bot):
    """An update for an order already written off (released as never placed, then
    created late after all) is this run's order: it is tracked again, its fills
    count, and it is cancelled."""
    bot = run_bot(quantity=LOT)
    fake.force(*POST, 503, "service unavailable")         # answered, not created (yet)
    buy_signal(fake, 1000, t=0)
    bot.wait_log("never placed", timeout=15)
    fake.policies = [FillPolicy(shares=LOT // 2, before_reply=True)]   # half fills at once
    late = fake.place_late(fake.received.orders[0])
    bot.wait_log("exists after all")
    fake.wait_until(lambda: fake.order_by_client_id(late["client_order_id"])["status"]
                    == "canceled", "the late order to be cancelled")
    out = stop_cleanly(bot)
    s = assert_in_step(fake, out, 0, quantity=LOT)
    assert (s["bought"], s["position"]) == (LOT // 2, fake.position_qty(SYMBOL)) == (LOT // 2, LOT // 2)


def test_a_buy_not_found_keeps_its_room_so_a_late_fill_never_passes_quantity(fake, run_bot):
    """An order not found once its submit can no longer be in flight is taken as never
    placed, but its shares keep their room for the rest of the run: created late and
    filled, it leaves the position within --quantity."""
    bot = run_bot(quantity=LOT)
    fake.force(*POST, 503, "service unavailable")         # answered, not created (yet)
    buy_signal(fake, 1000, t=0)
    bot.wait_log("never placed", timeout=15)
    buy_signal(fake, 1010, t=1000)                        # its room is still held
    bot.wait_log("not followed: no room to buy")
    fake.policies = [FillPolicy(before_reply=True, marketable_only=False)]   # filled whole
    late = fake.place_late(fake.received.orders[0])                        # created now
    bot.wait_log(f"FILL BUY {LOT}")
    fake.wait_until(lambda: late["status"] == "filled", "the late order to fill")
    s = assert_in_step(fake, stop_cleanly(bot), 0, quantity=LOT)
    assert (s["position"], len(fake.received.orders)) == (LOT, 1)


def test_a_sell_not_found_keeps_its_shares_so_a_late_fill_never_sells_short(fake, run_bot):
    """An order not found ... its shares keep their room: a sell's shares are not sold
    again, so a late fill never leaves the account short."""
    bot = run_bot(quantity=LOT)
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    fake.force(*POST, 503, "service unavailable")
    sell_signal(fake, 1010, t=1000)
    bot.wait_log("never placed", timeout=15)
    sell_signal(fake, 1020, t=2000)                       # the shares are still spoken for
    bot.wait_log("not followed: nothing to sell")
    fake.policies = [FillPolicy(before_reply=True)]
    late = fake.place_late(fake.received.orders[1])
    bot.wait_log(f"FILL SELL {LOT}")
    fake.wait_until(lambda: late["status"] == "filled", "the late order to fill")
    s = assert_in_step(fake, stop_cleanly(bot), 0, quantity=LOT)
    assert (s["position"], fake.position_qty(SYMBOL), len(fake.received.orders)) == (0, 0, 2)


@pytest.mark.parametrize("then", ["reconnect", "ctrl_c"])
def test_a_late_fill_while_the_trading_stream_is_down_is_counted(fake, run_bot, then):
    """An order not found is looked up again when the trading stream reconnects and at
    shutdown: created and filled while the stream was down, its fill still counts."""
    bot = run_bot(quantity=LOT)
    fake.force(*POST, 503, "service unavailable")
    buy_signal(fake, 1000, t=0)
    bot.wait_log("never placed", timeout=15)
    fake.force("GET", "/stream", 503, "service unavailable", times=None)   # stays down
    fake.drop_trading_stream()
    bot.wait_log("reconnect failed")
    fake.policies = [FillPolicy(before_reply=True)]       # filled with nobody listening
    late = fake.place_late(fake.received.orders[0])
    assert late["status"] == "filled"
    if then == "reconnect":
        fake.faults.clear()
        bot.wait_log(f"FILL BUY {LOT}")
    s = assert_in_step(fake, stop_cleanly(bot), 0, quantity=LOT)
    assert (s["bought"], s["position"]) == (LOT, LOT)


def test_ctrl_c_cancels_an_open_order_of_this_run_the_bot_did_not_know(fake, bot):
    """Ctrl+C: ... then the broker's open orders are listed and any whose
    client_order_id carries this run's prefix is cancelled too."""
    buy_signal(fake, 1000, t=0)
    out = bot.wait_log("FILL BUY")
    stray = fake.resting_order(SYMBOL, "buy", LOT, 900, f"tick-taker-{run_id(out)}-99")
    out = stop_cleanly(bot)
    assert "open at Alpaca though the bot did not know it" in out
    assert fake.order_by_client_id(stray["client_order_id"])["status"] == "canceled"
    assert fake.open_orders_of_run() == []


def test_ctrl_c_retries_a_refused_cancel_of_an_order_it_did_not_know(fake, bot):
    """Ctrl+C: ... any open order with this run's prefix is cancelled too, its cancel
    retried until it is terminal (never one unchecked request)."""
    buy_signal(fake, 1000, t=0)
    out = bot.wait_log("FILL BUY")
    stray = fake.resting_order(SYMBOL, "buy", LOT, 900, f"tick-taker-{run_id(out)}-99")
    fake.force(*DELETE, 500, "internal error")           # its first cancel is refused
    out = stop_cleanly(bot)
    assert "open at Alpaca though the bot did not know it" in out
    assert fake.order_by_client_id(stray["client_order_id"])["status"] == "canceled"
    assert fake.received.cancels.count(stray["id"]) == 2


def test_earlier_runs_orders_sharing_a_time_across_a_page_are_all_cancelled(fake, run_bot):
    """At start, open orders of earlier runs are cancelled: every one, listed in pages
    of 500 that overlap (orders may share a submission time across a page's edge)."""
    old = [fake.resting_order(SYMBOL, "buy", LOT, 900, f"tick-taker-old-{n}") for n in (2, 1)]
    old[1]["submitted_at"] = old[0]["submitted_at"]       # the same time, either side
    for n in range(tt.ORDERS_PAGE - 1):                   # newer: the rest of the first page
        fake.resting_order("ZZZ", "buy", 1, 100, f"manual-{n}")
    bot = run_bot()
    for order in old:
        assert fake.order_by_client_id(order["client_order_id"])["status"] == "canceled"
    stop_cleanly(bot)


# ----------------------------------------------------------------- the loss limit
def test_loss_limit_is_checked_when_a_signal_is_decided(fake, run_bot):
    """The loss limit holds at every moment: consulted when a signal is decided, not
    only on a timer (one frame that drops the bid past it and then signals buys nothing)."""
    bot = run_bot("--max-loss", f"{5 * LOT / 100:g}")   # $5 for a lot of 100
    buy_signal(fake, 1000, t=0)                          # a lot bought at 10.01
    bot.wait_log(f"FILL BUY {LOT}")
    # One frame: the bid falls to 9.94 (-$7 marked), a fresh level arms, a buy signal.
    push_signal(fake, "buy", [*arming(994, 1000), trade(SYMBOL, 994 + TICK, PRINT,
                                                        at(1001 + AFTER_MS))])
    assert bot.wait_exit() == tt.EXIT_LOSS_LIMIT
    out = bot.output()
    assert "not followed: loss limit" in out
    assert [(o["side"], o["type"]) for o in fake.received.orders] == [("buy", "limit"),
                                                                       ("sell", "market")]
    assert assert_in_step(fake, out, 0)["position"] == 0


def test_a_held_symbol_without_a_bid_is_marked_at_its_last_good_bid(fake, run_bot):
    """Held shares are marked at the live bid, or at the last good bid when the quote
    shows none: a symbol without a bid never turns the limit off (nor is it a loss)."""
    bot = run_bot("--max-loss", f"{5 * LOT / 100:g}", symbol="MU,AMD", ready=False)
    for symbol in ("MU", "AMD"):
        fake.wait_ready(symbol)
    buy_signal(fake, 1000, t=0, symbol="MU")             # MU: 100 at 10.01 (bid 10.00)
    bot.wait_log(f"FILL BUY {LOT} MU")
    fake.push(quote("MU", 0, 1002, 0, LIGHT, at(100)))   # MU shows no bid (IEX: bp 0)
    buy_signal(fake, 5000, t=1000, symbol="AMD")         # not a -$1,001 loss: AMD still buys
    bot.wait_log(f"FILL BUY {LOT} AMD")
    fake.push(quote("AMD", 4990, 4991, HEAVY, LIGHT, at(2000)))   # AMD -$11, MU -$1
    bot.wait_log("LOSS LIMIT")
    fake.push(quote("MU", 1000, 1000 + TICK, LIGHT, LIGHT, at(3000)))   # a bid: MU's sell fills
    assert bot.wait_exit() == tt.EXIT_LOSS_LIMIT
    out = bot.output()
    loss = LOT * (TICK + (5000 + TICK - 4990))           # cents: MU at its last bid, AMD at 49.90
    assert f"LOSS LIMIT: this run's P&L {tt.signed_dollars(-loss)}" in out
    assert fake.position_qty("MU") == fake.position_qty("AMD") == 0


def test_the_loss_limit_marks_at_every_quotes_good_bid(fake, run_bot):
    """Held shares are marked at the last good bid the stream carried, quote by quote:
    one frame that drops the bid past the limit and then shows no bid trips it."""
    bot = run_bot("--max-loss", f"{5 * LOT / 100:g}")
    buy_signal(fake, 1000, t=0)                          # a lot bought at 10.01
    bot.wait_log(f"FILL BUY {LOT}")
    fake.push(quote(SYMBOL, 990, 990 + 2 * TICK, HEAVY, LIGHT, at(100)),   # -$11 marked ...
              quote(SYMBOL, 0, 990 + 2 * TICK, 0, LIGHT, at(101)))         # ... then no bid
    bot.wait_log("LOSS LIMIT")
    fake.push(quote(SYMBOL, 990, 990 + TICK, HEAVY, LIGHT, at(200)))       # its sell fills
    assert bot.wait_exit() == tt.EXIT_LOSS_LIMIT
    assert assert_in_step(fake, bot.output(), tt.EXIT_LOSS_LIMIT)["position"] == 0


# -------------------------------------------------------- a market order that waited
def limiter_paused_by_a_429(fake, bot, reset_s: float) -> None:
    """Hold 100, then a 429 on the next submit: no new order for `reset_s`."""
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    fake.rate_reset_s = reset_s
    fake.force(*POST, 429, "rate limit exceeded")
    buy_signal(fake, 1010, t=1000)
    bot.wait_log("HTTP 429")


def test_market_order_that_waited_is_in_flight_from_when_it_leaves(fake, run_bot):
    """An order's in-flight time starts when its request leaves, not when it was
    registered: a 404 just after a long wait for the rate limiter does not write it off."""
    bot = run_bot("--max-loss", f"{5 * LOT / 100:g}")
    limiter_paused_by_a_429(fake, bot, reset_s=7)
    fake.latency_s[POST] = 3.0                           # created after the bot gave up waiting
    fake.push(quote(SYMBOL, 995, 996, HEAVY, LIGHT, at(5000)))   # -$6: the limit trips
    assert bot.wait_exit(timeout=25) == tt.EXIT_LOSS_LIMIT
    out = bot.output()
    assert "never placed" not in out
    assert assert_in_step(fake, out, 0)["position"] == fake.position_qty(SYMBOL) == 0


def test_nothing_is_sent_after_ctrl_c_even_an_order_that_was_waiting(fake, run_bot):
    """An order is never sent after Ctrl+C, by any path: a flatten's market order
    still waiting for the rate limiter is not sent at all."""
    bot = run_bot("--max-loss", f"{5 * LOT / 100:g}")
    limiter_paused_by_a_429(fake, bot, reset_s=4)
    fake.push(quote(SYMBOL, 995, 996, HEAVY, LIGHT, at(5000)))   # the limit trips: flatten
    bot.wait_log("FLATTEN")
    bot.proc.send_signal(signal.SIGINT)
    assert bot.wait_exit(timeout=10) == tt.EXIT_LOSS_LIMIT
    time.sleep(0.5)
    assert [o["type"] for o in fake.received.orders] == ["limit", "limit"]   # no market sell
    assert "not sent: stopping" in bot.output()
    assert assert_in_step(fake, bot.output(), 0)["position"] == LOT


# ------------------------------------------------------------------ signals
def test_first_ctrl_c_during_a_shutdown_the_bot_began_stops_cleanly(fake, run_bot):
    """The first Ctrl+C always means "stop cleanly", whoever began the shutdown
    (here the close): the cancels go on, a summary, exit 0."""
    fake.hours_from_first_read(closes_in=4)              # time to connect and order first
    bot = run_bot("--stop-before-close", "0")
    fake.default_policy = FillPolicy(shares=0)           # the order rests ...
    fake.force(*DELETE, 500, times=None)                 # ... and cannot be cancelled yet
    buy_signal(fake, 1000, t=0)
    bot.wait_log("the market closed: stopping", timeout=10)   # the bot began to stop
    bot.proc.send_signal(signal.SIGINT)                  # the user's first Ctrl+C
    time.sleep(0.3)
    fake.faults.clear()                                  # now the cancel goes through
    assert bot.wait_exit(timeout=15) == 0
    out = bot.output()
    assert "exiting now" not in out and "SUMMARY MU" in out
    assert fake.open_orders() == []


def test_sighup_stops_like_ctrl_c(fake, bot):
    """SIGHUP (the terminal closes) stops cleanly: cancels, a summary, exit 0."""
    fake.default_policy = FillPolicy(shares=0)
    fake.latency_s[DELETE] = 0.5
    buy_signal(fake, 1000, t=0)
    fake.wait_until(lambda: DELETE in fake.received.requests, "the cancel to start")
    assert bot.stop(signal.SIGHUP) == 0
    out = bot.output()
    assert "SIGHUP: stopping cleanly" in out and "SUMMARY MU" in out
    assert fake.open_orders() == []


# ------------------------------------------------------------ flatten, wash trades
def test_flatten_cancels_this_runs_open_orders_before_it_sells(fake, run_bot):
    """A flatten (--flatten-at-close) first cancels this run's open orders and waits
    until they are terminal, then sells at market (Alpaca refuses a sell that could
    trade against our own open buy: a potential wash trade)."""
    fake.wash_trade_check = True
    fake.hours_from_first_read(closes_in=8)              # 5 s to connect and order twice
    bot = run_bot("--stop-before-close", "0.05", "--flatten-at-close")  # 3 s before
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    fake.default_policy = FillPolicy(shares=0)           # the next buy rests ...
    fake.force(*DELETE, 500, times=None)                 # ... its cancel refused for now
    buy_signal(fake, 1010, t=1000)
    bot.wait_log("to the close: no new orders", timeout=10)   # the flatten begins
    time.sleep(0.5)
    fake.faults.clear()                                  # the buy can be cancelled now
    fake.default_policy = FillPolicy()
    bot.wait_log("FLATTEN", timeout=10)
    assert bot.wait_exit(timeout=10) == 0                # stops at the close by itself
    out = bot.output()
    assert "wash trade" not in out
    assert [(o["side"], o["type"]) for o in fake.received.orders][-1] == ("sell", "market")
    assert assert_in_step(fake, out, 0)["position"] == fake.position_qty(SYMBOL) == 0


def test_wash_trade_refusal_of_a_flatten_is_retried(fake, run_bot):
    """Alpaca's wash-trade refusal (403, "potential wash trade") of a flatten (here
    the loss limit's) is retried until the close, logged in words."""
    bot = run_bot("--max-loss", f"{5 * LOT / 100:g}")
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    fake.force(*POST, 403, "potential wash trade detected. use complex orders", times=2)
    fake.push(quote(SYMBOL, 995, 996, HEAVY, LIGHT, at(5000)))   # -$6: the limit trips
    assert bot.wait_exit(timeout=15) == tt.EXIT_LOSS_LIMIT
    out = bot.output()
    assert out.count("refused as a potential wash trade") == 2
    assert assert_in_step(fake, out, 0)["position"] == fake.position_qty(SYMBOL) == 0


# ------------------------------------------------------------ sub-dollar quotes
def test_quotes_under_a_dollar_make_no_level_and_the_bot_says_why(fake, run_bot):
    """A quote whose bid or ask is not a whole number of cents, or whose bid is under
    $1, makes no level: 0.1195/0.1251 is no "one-cent level", and a print at 0.14 is
    no signal; the log says once why the symbol stays idle."""
    bot = run_bot()
    fake.push(quote(SYMBOL, 11.95, 12.51, HEAVY, LIGHT, at(0)),
              quote(SYMBOL, 12.95, 13.51, HEAVY, LIGHT, at(1)),
              quote(SYMBOL, 13.2, 14.0, HEAVY, LIGHT, at(2)),
              trade(SYMBOL, 14, PRINT, at(2 + AFTER_MS)))
    idle = f"quotes under ${tt.MIN_LEVEL_BID_CENTS / 100:g}"
    bot.wait_log(idle)
    assert sentinel(fake, 0) == []
    fake.push(quote(SYMBOL, 11.95, 12.51, HEAVY, LIGHT, at(950_000)))
    time.sleep(1.2)                                      # the watchdog looks once a second
    assert stop_cleanly(bot).count(idle) == 1


# ------------------------------------------------------------- the small ones
def test_journal_keeps_writing_after_a_row_sqlite_refuses(tmp_path):
    """The journal writer survives any sqlite3.Error: the row is left out (told
    once), every other row is kept."""
    path = tmp_path / "j.db"
    journal = tt.Journal(path)
    row = ("c1", "r1", "MU", "buy", 100, "limit", 1001, None, "2026-12-05T14:30:00.000Z")
    journal.add(tt.J_ORDER, *row)
    journal.add(tt.J_ORDER, *row)                        # the same primary key: refused
    journal.add(tt.J_ORDER, "c2", *row[1:])
    time.sleep(tt.JOURNAL_FLUSH_S * 2.5)                 # a flush with the bad row went by
    journal.add(tt.J_ORDER, "c3", *row[1:])              # a later batch is still written
    journal.close()
    ids = [r[0] for r in sqlite3.connect(path).execute(
        "SELECT client_order_id FROM orders ORDER BY rowid")]
    assert ids == ["c1", "c2", "c3"]


def test_bots_opening_one_fresh_journal_at_once_all_open_it(tmp_path):
    """Opening a fresh journal retries while another bot holds it (two switching a
    new file to WAL at once: SQLite refuses one at once, without waiting)."""
    for round_ in range(30):
        path = tmp_path / f"j{round_}.db"
        start, errors = threading.Barrier(3), []

        def open_it() -> None:
            start.wait()
            try:
                tt.Journal(path).close()
            except tt.FatalError as exc:
                errors.append(str(exc))
        threads = [threading.Thread(target=open_it) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], f"round {round_}: {errors}"


def test_sign_in_reply_of_an_unexpected_shape_is_retried(fake, run_bot):
    """A sign-in reply of an unexpected shape ({"data": null}) is a transient stream
    error, retried; refused keys stay fatal."""
    fake.odd_sign_in_replies = 1
    bot = run_bot()                                      # ready: it retried and signed in
    assert "unexpected sign-in reply" in bot.output()
    assert fake.received.trading_connections == 2
    stop_cleanly(bot)


def test_fills_reported_before_the_end_count_at_once():
    """Fills count from any update that carries a larger cumulative filled_qty,
    terminal or not (a `pending_cancel` look-up with shares filled)."""
    p = tt.Position(5 * LOT)
    p.register("b1", "buy")
    assert p.on_update("b1", "pending_cancel", ODD, Decimal(1001), "id-1") == ODD
    assert (p.held, p.pending_buys) == (ODD, LOT - ODD)
    assert p.on_update("b1", "canceled", ODD, Decimal(1001)) == 0
    assert (p.held, p.pending_buys) == (ODD, 0)
