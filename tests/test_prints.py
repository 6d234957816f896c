"""Which prints count, the odd lot, the forgotten level and the exact P&L,
end to end: the real bot against the fake Alpaca, judged by the orders the
fake receives (a sentinel signal proves that nothing was sent before it).
"""
from __future__ import annotations

from fractions import Fraction

import pytest

from sim.alpaca import NO_FIELD, FillPolicy, cancel_error, correction, quote, trade
import tick_taker as tt
from tests.helpers import (AFTER_MS, HEAVY, LIGHT, LOT, ODD, PRINT, SYMBOL, TICK, arm,
                           assert_in_step, at, buy_signal, limit_cents, push_signal, sell_signal,
                           sentinel, stop_cleanly)

# One representative print per class the shipped rule excludes ("Which prints count").
# Which of them a bot follows is what its REGULAR_CONDITIONS says (a fork may follow
# odd lots, say): every code one of them.
EXCLUDED_SHIPPED = {
    "out of sequence": ["@", "Z"],
    "extended hours sold out of sequence": [" ", "U"],
    "average price (tape C)": ["@", "W"],
    "average price (tapes A/B)": [" ", "B"],
    "derivatively priced": ["4", "W"],
    "form T / extended hours": ["@", "T"],
    "odd lot": ["@", "I"],
    "opening print": ["@", "O"],
    "official open": ["Q"],
    "official close": ["M"],
    "reopening print": ["5"],
    "closing print": ["@", "6"],
    "corrected consolidated close": ["9"],
    "cross": ["X"],
    "prior reference price": ["@", "P"],
    "cash / next day / seller": ["C", "N", "R"],
    "contingent": ["V"],
    "qualified contingent": [" ", "7"],
    "price variation": ["H"],
    "a code not listed": ["@", "K"],
}
REGULAR_SHIPPED = {"regular tape A/B": [" "], "sweep tape C": ["@", "F"], "sweep": ["F"],
                   "no c field": NO_FIELD}
CLASSES = {**EXCLUDED_SHIPPED, **REGULAR_SHIPPED}


def counts(conditions) -> bool:
    """docs/strategy.md, "Which prints count": every code the print carries is a regular one."""
    return conditions is NO_FIELD or set(conditions) <= tt.REGULAR_CONDITIONS


EXCLUDED = {name: codes for name, codes in CLASSES.items() if not counts(codes)}
REGULAR = {name: codes for name, codes in CLASSES.items() if counts(codes)}


def test_print_with_an_excluded_condition_is_not_followed(fake, bot):
    """A print is followed only if every condition code in its `c` list is one of
    " ", "@", "F"; any other code excludes the print."""
    # One bot, one armed level per excluded class (each its own price), then
    # the sentinel: any order before it names the class that was followed.
    at_price = {}
    for k, (name, conditions) in enumerate(EXCLUDED.items()):
        bid = 1000 + 10 * k
        level_t = arm(fake, bid, t=1000 * k)
        fake.push(trade(SYMBOL, bid + TICK, PRINT, at(level_t + AFTER_MS), conditions))
        at_price[bid + TICK] = name
    followed = [at_price.get(limit_cents(o)) for o in sentinel(fake, None)]
    assert followed == [], f"followed despite its conditions: {followed}"


@pytest.mark.parametrize("message", [correction, cancel_error], ids=["correction", "cancel"])
def test_corrections_and_cancels_never_trigger(fake, bot, message):
    """Trade corrections ("T":"c") and cancels ("T":"x") on the stream never
    trigger anything."""
    level_t = arm(fake, 1000, t=0)
    fake.push(message(SYMBOL, 1000 + TICK, 3 * PRINT, at(level_t + AFTER_MS)))
    assert sentinel(fake, 0) == []


def test_regular_prints_are_followed(fake, bot):
    """Regular sale (" ", "@"), intermarket sweep ("F"); a print with no `c` field
    counts as regular."""
    for k, conditions in enumerate(REGULAR.values()):   # one bot, a level each
        bid = 1000 + 10 * k
        level_t = arm(fake, bid, t=1000 * k)
        push_signal(fake, "buy", [trade(SYMBOL, bid + TICK, PRINT, at(level_t + AFTER_MS),
                                        conditions)])
    orders = fake.wait_orders(len(REGULAR))              # (each its own request: in any order)
    assert sorted((o["side"], limit_cents(o)) for o in orders) == [
        ("buy", 1000 + 10 * k + TICK) for k in range(len(REGULAR))], list(REGULAR)


def test_empty_ask_side_never_buys(fake, bot):
    """Both live sizes must be above zero (a zero ask is not "bid 900 > 1.8 x 0")."""
    level_t = arm(fake, 1000, t=0, bid_size=HEAVY, ask_size=0)
    fake.push(trade(SYMBOL, 1000 + TICK, PRINT, at(level_t + AFTER_MS)))
    assert sentinel(fake, 0) == []


def test_empty_bid_side_never_sells(fake, bot):
    """Both live sizes must be above zero (a zero bid is not "ask 900 > 1.8 x 0")."""
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    level_t = arm(fake, 1010, t=1000, bid_size=0, ask_size=HEAVY, up=False)
    fake.push(trade(SYMBOL, 1010, PRINT, at(level_t + AFTER_MS)))
    assert sentinel(fake, 1) == [fake.received.orders[0]]


def test_odd_lot_left_by_a_partial_fill_is_sold_by_the_next_sell_signal(fake, bot):
    """Sells are for min(100, held - pending sells) when that is at least 1: an odd
    lot left by a partial fill (40 bought) is sold by the next sell signal."""
    fake.policies = [FillPolicy(shares=ODD)]             # 40 fill, the rest is cancelled
    buy_signal(fake, 1000, t=0)
    bot.wait_log("CANCELED")
    sell_signal(fake, 1010, t=1000)
    sell = fake.wait_orders(2)[1]
    assert (sell["side"], int(sell["qty"]), limit_cents(sell)) == ("sell", ODD, 1010)
    bot.wait_log(f"FILL SELL {ODD}")
    s = assert_in_step(fake, stop_cleanly(bot), 0)
    assert (s["bought"], s["sold"], s["position"]) == (ODD, ODD, 0)


def test_level_is_forgotten_after_the_data_stream_reconnects(fake, bot):
    """After a gap in market data (the stream reconnected) the level is forgotten:
    the next level seen is a first level, never armed."""
    arm(fake, 1000, t=0)                                 # level 10.00/10.01
    fake.drop_data_stream()
    fake.wait_until(lambda: fake.received.data_connections == 2 and fake.subscribed(SYMBOL),
                    "the data stream to reconnect")
    fake.push(quote(SYMBOL, 1000 + TICK, 1000 + 2 * TICK, HEAVY, LIGHT, at(100)),  # a tick from the stale level
              trade(SYMBOL, 1000 + 2 * TICK, PRINT, at(100 + AFTER_MS)))
    assert sentinel(fake, 0) == []


def test_level_is_forgotten_after_the_watchdog_fires(fake, run_bot):
    """After a gap in market data (no data for the watchdog's time) the level is
    forgotten: a one-cent move measured from a stale level is not a move."""
    bot = run_bot("--stale-seconds", "0.5")
    arm(fake, 1000, t=0)
    bot.wait_log("no quotes for MU for")
    fake.push(quote(SYMBOL, 1000 + TICK, 1000 + 2 * TICK, HEAVY, LIGHT, at(100)),
              trade(SYMBOL, 1000 + 2 * TICK, PRINT, at(100 + AFTER_MS)))
    assert sentinel(fake, 0) == []


def test_quote_whose_time_cannot_be_read_changes_nothing(fake, bot):
    """A level change is applied whole or not at all: a quote whose time cannot be
    read changes nothing (and the rest of its frame is read)."""
    level_t = arm(fake, 1000, t=0)                       # armed level 10.00/10.01
    push_signal(fake, "buy", [
        quote(SYMBOL, 1000 + TICK, 1000 + 2 * TICK, HEAVY, LIGHT, "2026-13-45T99:99:99Z"),
        trade(SYMBOL, 1000 + TICK, PRINT, at(level_t + AFTER_MS))])   # still at the armed level
    [order] = fake.wait_orders(1)
    assert (order["side"], limit_cents(order)) == ("buy", 1000 + TICK)
    assert "skipped unreadable market data" in bot.output()


def test_realized_pnl_is_exact_and_rounded_only_when_printed(fake, bot):
    """Realized P&L uses the average cost of the shares held, kept exactly (as a
    fraction of cents), and is rounded to the cent only when printed."""
    for i, bid in enumerate((1000, 1001, 1001)):         # buys at 10.01, 10.02, 10.02
        buy_signal(fake, bid, t=1000 * i)
        fake.wait_until(lambda: fake.position_qty(SYMBOL) == LOT * (i + 1), "a fill")
    sell_signal(fake, 1004, t=5000)                      # sells a lot at 10.04
    bot.wait_log(f"FILL SELL {LOT}")
    s = assert_in_step(fake, stop_cleanly(bot), 0)
    cost = Fraction(sum(price * n for _, _, side, n, price in fake.executions if side == "buy"))
    exact = LOT * (Fraction(1004) - cost / (3 * LOT))    # cents: 233 1/3 for a lot of 100
    assert s["realized"] == pytest.approx(float(round(exact) / 100))
    assert exact.denominator != 1                        # (a fraction of a cent: rounded at print)
