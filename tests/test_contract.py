"""The shipped rule, pinned: its constants, its thresholds, and what it finds
and does on the bundled hour of MSFT.

This is the one file a fork is expected to fail. Every other test builds its
scenarios from the constants at the top of tick_taker.py (tests/helpers.py),
so they pass whatever the knobs say; the tests here pin the values and the
boundaries docs/strategy.md gives. If you changed the rule on
purpose, each failure below says so: update the pinned figure with your
edit (and docs/strategy.md, which your users read).
"""
from __future__ import annotations

import re
from decimal import Decimal

import pytest

import tick_taker as tt
from sim import replay
from sim.alpaca import quote, trade
from sim.report import analyse
from sim.tape import Tape
from tests.helpers import SYMBOL, Tracked, arm, at, sentinel, stop_cleanly, summary

PINNED = ("this pins the shipped rule (docs/strategy.md): if you changed the rule "
          "on purpose, update it with your edit")
MS = 1_000_000


def decide_on(bid_size: int, ask_size: int, side: str = "buy", size: int = 100,
              after_ms: float = 60) -> str | None:
    """The rule's verdict on a print at an armed 10.00/10.01 level reached at
    t = 1 ms, with these live sizes: a buy printing at the ask, a sell at the
    bid."""
    q = Tracked()
    prev = 999 if side == "buy" else 1001
    q.on_quote(prev, prev + 1, 100, 100, 0)
    q.on_quote(1000, 1001, bid_size, ask_size, 1 * MS)
    price = 1001 if side == "buy" else 1000
    return q.verdict(tt.Trade(price, size, round((1 + after_ms) * MS)))


# ----------------------------------------------------------------- constants
def test_constants_are_the_shipped_ones():
    """Constants: lot 100 shares, smallest print 100 shares, ratio 1.8, quote guard
    50 ms, tick 1 cent."""
    assert (tt.LOT, tt.MIN_PRINT_SIZE, tt.IMBALANCE_RATIO, tt.QUOTE_GUARD_NS,
            tt.TICK_CENTS) == (100, 100, Decimal("1.8"), 50 * MS, 1), PINNED


def test_no_level_from_a_bid_under_a_dollar():
    """A quote whose bid is under $1 makes no level (the rule is about one-cent
    levels: stocks under $1 quote in hundredths of a cent)."""
    assert tt.MIN_LEVEL_BID_CENTS == 100, PINNED


def test_regular_conditions_are_the_shipped_ones():
    """A print is followed only if every condition code in its `c` list is one of
    " ", "@", "F"."""
    assert tt.REGULAR_CONDITIONS == {" ", "@", "F"}, PINNED


# ----------------------------------------------------------- the thresholds
@pytest.mark.parametrize("bid_size, follows", [(540, False), (541, True), (180, False)])
def test_buy_needs_bid_size_over_1_8_times_ask_size(bid_size, follows):
    """Buy when live bid size > 1.8 x live ask size (strictly more: 540 vs 300 is not)."""
    assert (decide_on(bid_size, 300) == "buy") == follows, PINNED


@pytest.mark.parametrize("ask_size, follows", [(540, False), (541, True)])
def test_sell_needs_ask_size_over_1_8_times_bid_size(ask_size, follows):
    """Sell when live ask size > 1.8 x live bid size (strictly more)."""
    assert (decide_on(300, ask_size, side="sell") == "sell") == follows, PINNED


@pytest.mark.parametrize("after_ms, follows", [(10, False), (50, False), (50.000001, True)])
def test_print_must_come_more_than_50ms_after_the_level(after_ms, follows):
    """Decision rule 3: the trade's time is more than 50 ms after the level time."""
    assert (decide_on(900, 300, after_ms=after_ms) == "buy") == follows, PINNED


@pytest.mark.parametrize("size, follows", [(99, False), (100, True), (1000, True)])
def test_print_must_be_at_least_100_shares(size, follows):
    """Decision rule 4: the trade's size is at least the smallest print (100)."""
    assert (decide_on(900, 300, size=size) == "buy") == follows, PINNED


def test_back_at_the_level_after_a_widening_the_next_print_is_followed():
    """Decision rule 2: when the spread has widened, nothing is done; the level
    stays armed, so back at the level the next print is followed (the shipped
    rule remembers nothing of the widening)."""
    q = Tracked()
    for bid, ask, t_ms in ((999, 1000, 0), (1000, 1001, 1), (1000, 1002, 2), (1000, 1001, 3)):
        q.on_quote(bid, ask, 900, 300, t_ms * MS)
    assert q.verdict(tt.Trade(1001, 100, 61 * MS)) == "buy", PINNED


@pytest.mark.parametrize("first", [tt.Trade(1001, 100, 20 * MS), tt.Trade(1001, 100, 61 * MS, ["Z"])])
def test_a_print_the_rule_declines_leaves_the_level_to_the_next(first):
    """A trade that meets no rule leaves the level armed: the next print at it is
    followed (a print inside the quote guard, an excluded condition)."""
    q = Tracked()
    q.on_quote(999, 1000, 100, 100, 0)
    q.on_quote(1000, 1001, 900, 300, 1 * MS)
    assert q.verdict(first) is None, PINNED
    assert q.verdict(tt.Trade(1001, 100, 62 * MS)) == "buy", PINNED


# -------------------------------------------------- the thresholds, end to end
@pytest.mark.parametrize("bid_size, sent", [(540, False), (541, True)])
def test_bot_buys_only_when_bid_size_exceeds_1_8_times_ask_size(fake, bot, bid_size, sent):
    """Buy ... when live bid size > 1.8 x live ask size (the real bot, on the wire)."""
    level_t = arm(fake, 1000, t=0, bid_size=bid_size, ask_size=300)
    fake.push(trade(SYMBOL, 1001, 100, at(level_t + 60)))
    assert len(sentinel(fake, None)) == int(sent), PINNED


@pytest.mark.parametrize("after_ms, sent", [(50, False), (51, True)])
def test_bot_follows_a_print_only_more_than_50ms_after_the_level(fake, bot, after_ms, sent):
    """The trade's time is more than 50 ms after the level time (the real bot)."""
    level_t = arm(fake, 1000, t=0, bid_size=900, ask_size=300)
    fake.push(trade(SYMBOL, 1001, 100, at(level_t + after_ms)))
    assert len(sentinel(fake, None)) == int(sent), PINNED


@pytest.mark.parametrize("size, sent", [(99, False), (100, True)])
def test_bot_follows_prints_of_at_least_100_shares(fake, bot, size, sent):
    """The trade's size is at least the smallest print (100) (the real bot)."""
    level_t = arm(fake, 1000, t=0, bid_size=900, ask_size=300)
    fake.push(trade(SYMBOL, 1001, size, at(level_t + 60)))
    assert len(sentinel(fake, None)) == int(sent), PINNED


def test_bot_logs_the_imbalance_that_decided_an_order(fake, bot):
    """BUY 100 MU @ 10.01 (level n, bid 900 > 1.8x300): the log says why."""
    assert decide_on(900, 300) == "buy", PINNED
    fake.push(quote(SYMBOL, 999, 1000, 100, 100, at(0)),
              quote(SYMBOL, 1000, 1001, 900, 300, at(1)), trade(SYMBOL, 1001, 100, at(61)))
    fake.wait_orders(1)
    out = bot.wait_log(f"BUY {tt.LOT} MU @ 10.01")
    assert "BUY 100 MU @ 10.01 (level 2, bid 900 > 1.8x300" in out, PINNED
    stop_cleanly(bot)


# ------------------------------------------------------------ the bundled hour
def test_rules_find_the_pinned_counts_in_the_bundled_hour():
    """Level changes, armed levels and signals by side on the bundled MSFT hour
    (README, "See what it would have done"): 526, 519, 190 buy, 164 sell."""
    counts = analyse(Tape(replay.DATA))["MSFT"]
    assert (counts.level_changes, counts.armed_levels) == (526, 519), PINNED
    assert (len(counts.signals["buy"]), len(counts.signals["sell"])) == (190, 164), PINNED


def test_bot_trades_the_bundled_hour_to_the_pinned_figures(tmp_path):
    """The bundled hour replays to 316 orders, 35 % filled, a realized loss of
    $64.16 before fees, every run (README, "See what it would have done")."""
    assert replay.main(["--quiet", "--out", str(tmp_path)]) == 0
    s = summary((tmp_path / "bot.log").read_text())
    report = (tmp_path / "report.txt").read_text()
    filled = re.search(r"^\s+MSFT\s+\d+ \(\d+/\d+\)\s+\S+ \((\d+)%\)", report, re.M)
    assert (s["orders"], int(filled[1]), s["realized"]) == (316, 35, -64.16), PINNED
