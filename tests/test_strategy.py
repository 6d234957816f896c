"""Unit tests of the pure parts: Quote, Rule, Position, decide().

One test per rule of docs/strategy.md (quoted in each docstring), then
one per row of its defects table. Prices in integer cents and ticks, sizes in
lots, times in exchange ns moved by hand: all from the rule's constants, so a
fork's knobs pass them (tests/test_contract.py pins the shipped values).
"""
from __future__ import annotations

import json
import random
from decimal import Decimal
from fractions import Fraction

import pytest

import tick_taker as tt
from tests.helpers import AFTER_MS, HEAVY, LIGHT, MS, PRINT, Tracked
from tick_taker import LOT, Position, decide


T = tt.TICK_CENTS        # the tick: a level is (bid, bid + T); a move is one tick
BID, ASK = 1000, 1000 + T
QUANTITY = 5 * LOT


def make_quote(bid: int, ask: int, bid_size: int = 100, ask_size: int = 100,
               t_ms: float = 0, q: Tracked | None = None) -> Tracked:
    q = q or Tracked()
    q.on_quote(bid, ask, bid_size, ask_size, round(t_ms * MS))
    return q


def armed_level(bid: int = BID, bid_size: int = HEAVY, ask_size: int = LIGHT,
                up: bool = True) -> Tracked:
    """A level tracker (and its rule) whose level (bid, bid + T) was armed at t = 1 ms."""
    prev = bid - T if up else bid + T
    q = make_quote(prev, prev + T, t_ms=0)
    return make_quote(bid, bid + T, bid_size, ask_size, t_ms=1, q=q)


def print_at(q: Tracked, p: Position, price: int, size: int = PRINT, t_ms: float = 1 + AFTER_MS,
             conditions: list[str] | None = None):
    return decide(q, q.rule, p, tt.Trade(price, size, round(t_ms * MS), conditions))


def fill(p: Position, coid: str, event: str, filled: int, avg_cents: int = 1001) -> int:
    return p.on_update(coid, event, filled, Decimal(avg_cents))


def test_prices_become_integer_cents_at_the_edge():
    """All prices are handled as integer cents (convert once: round(price * 100))."""
    got = []
    cfg = tt.Config(("MU",), QUANTITY, "k", "s", "http://x", "http://x", "iex")
    stream = tt.DataStream(cfg, {"MU": lambda *q: got.append(q[:4])}, print,
                           lambda symbol, trade: got.append((trade.price_cents, trade.size)))
    stream.dispatch(json.loads(
        '[{"T":"q","S":"MU","bp":10.01,"ap":41.19,"bs":3,"as":4,"t":"2026-03-02T15:04:05Z"},'
        ' {"T":"t","S":"MU","p":0.29,"s":100,"t":"2026-03-02T15:04:05Z"}]'))
    assert got == [(1001, 4119, 3, 4), (29, 100)]


def test_rfc3339_times_become_exchange_nanoseconds():
    """Times are the exchange timestamps carried by the messages (nanoseconds)."""
    base = tt.parse_ns("2026-03-02T15:04:05Z")
    assert tt.parse_ns("2026-03-02T15:04:05.123456789Z") - base == 123_456_789
    assert tt.parse_ns("2026-03-02T15:04:05.2Z") - base == 200_000_000
    assert tt.parse_ns("2026-03-02T10:04:05-05:00") == base


def test_a_time_read_as_text_is_earlier_exactly_when_its_nanoseconds_are():
    """The journal: the mid 1 s and 10 s later (in exchange time: times compared as text first)."""
    rng = random.Random(20261202)
    base = tt.parse_ns("2026-03-02T15:04:05Z")
    for _ in range(2000):
        due = base + rng.randrange(3 * 10**9)
        t = due + rng.choice([-1, 0, 1, rng.randrange(-2 * 10**9, 2 * 10**9)])
        whole, frac = tt.stamp(t).split(".")                  # Alpaca trims trailing zeros
        text = rng.choice([tt.stamp(t), f"{whole}.{frac.rstrip('Z').rstrip('0')}Z"]).replace(".Z", "Z")
        second = tt.stamp(due)[:19]
        assert tt.earlier(text, due, second) == (t < due), (text, tt.stamp(due))
        assert tt.earlier(t, due, second) == (t < due)
    offset = "2026-03-02T10:04:04.9-05:00"                   # not UTC: parsed, not compared as text
    assert tt.earlier(offset, base, "2026-03-02T15:04:05") is True
    assert tt.earlier(offset, base - 10**9, "2026-03-02T15:04:04") is False


# ------------------------------------------------------------ level tracking
def test_live_quote_takes_every_quote():
    """On every quote: the live quote takes the quote's bid, ask, bid size and ask size."""
    q = make_quote(BID, ASK)
    make_quote(BID - 2 * T, ASK + 2 * T, 700, 200, q=q)
    assert (q.bid, q.ask, q.bid_size, q.ask_size) == (BID - 2 * T, ASK + 2 * T, 700, 200)


def test_one_cent_spread_with_both_sides_moved_is_a_level_change():
    """A level change: spread exactly one cent AND bid differs AND ask differs;
    the level time is the quote's time."""
    q = make_quote(BID, ASK, t_ms=0)
    assert q.on_quote(BID + T, ASK + T, 100, 100, 7 * MS)
    assert (q.level_bid, q.level_ask, q.level_time_ns) == (BID + T, ASK + T, 7 * MS)


def test_wide_spread_quote_is_not_a_level_change():
    """A quote that is not a level change (spread other than one cent) changes no level state."""
    q = armed_level()
    assert not q.on_quote(BID + 2 * T, BID + 4 * T, 100, 100, 9 * MS)
    assert (q.level_bid, q.level_ask, q.level_time_ns, q.armed) == (BID, ASK, 1 * MS, True)


def test_one_side_move_is_not_a_level_change():
    """A quote that is not a level change (only one side moved) changes no level state."""
    q = armed_level()
    assert not q.on_quote(BID, ASK, 5, 5, 9 * MS)         # same level, new sizes
    assert (q.level_time_ns, q.armed) == (1 * MS, True)


def test_first_level_is_never_armed():
    """The first level seen is never armed."""
    assert not make_quote(BID, ASK).armed


@pytest.mark.parametrize("new_bid", [BID + T, BID - T])
def test_one_cent_move_arms_the_level(new_bid):
    """The new level is armed only if it moved by exactly one cent on both sides,
    in the same direction (10.00/10.01 -> 10.01/10.02, or -> 9.99/10.00)."""
    q = make_quote(BID, ASK)
    make_quote(new_bid, new_bid + T, q=q)
    assert q.armed


@pytest.mark.parametrize("new_bid", [BID + 2 * T, BID - 2 * T, BID + 100 * T])
def test_jump_of_more_than_a_cent_is_not_armed(new_bid):
    """A jump of more than a cent (possible news) makes a level that is not armed."""
    q = armed_level(BID)
    make_quote(new_bid, new_bid + T, q=q)
    assert (q.level_bid, q.armed) == (new_bid, False)


def test_a_rule_that_remembers_sees_every_quote_after_the_tracker_took_it():
    """A rule that remembers may define on_quote(quote, t): called with every quote
    of the symbol, once the level tracker has taken it (README, "Change the strategy")."""
    seen = []

    class Remembers(tt.Rule):
        def on_quote(self, quote, t):
            seen.append((quote.bid, quote.ask, quote.level_bid, t))

    q = tt.Quote()
    on_quote = tt.feed(q, Remembers())
    assert on_quote(BID, ASK, 100, 100, 1) is True               # a level change, reported
    assert on_quote(BID, ASK + T, 100, 100, 2) is False
    assert seen == [(BID, ASK, BID, 1), (BID, ASK + T, BID, 2)]

    class Forgets(tt.Rule):              # (a fork's Rule may have a hook of its own)
        on_quote = None
    assert tt.feed(q, Forgets()) == q.on_quote                   # none: no call at all


# ------------------------------------------------------------------ decision
def test_bid_heavy_print_at_the_ask_buys_one_lot_at_the_ask():
    """Buy one lot with a limit at the level's ask when the trade printed at the ask,
    live bid size > 1.8 x live ask size."""
    intent = print_at(armed_level(BID, HEAVY, LIGHT), Position(QUANTITY), ASK)
    assert (intent.side, intent.limit_cents, intent.qty) == ("buy", ASK, LOT)


def test_ask_heavy_print_at_the_bid_sells_one_lot_at_the_bid():
    """Sell one lot with a limit at the level's bid when the trade printed at the bid,
    live ask size > 1.8 x live bid size, and held - pending sells >= 100."""
    p = Position(QUANTITY)
    p.held = LOT
    intent = print_at(armed_level(BID, LIGHT, HEAVY, up=False), p, BID)
    assert (intent.side, intent.limit_cents, intent.qty) == ("sell", BID, LOT)


def test_unarmed_level_sends_nothing():
    """Decision rule 1: the level is armed (no attempt has been made at it yet)."""
    q = make_quote(BID, ASK, HEAVY, LIGHT)
    assert print_at(q, Position(QUANTITY), ASK) is None


def test_widened_live_quote_sends_nothing():
    """Decision rule 2: the live quote is at the level; when the spread has widened,
    nothing is done."""
    q = armed_level(BID, HEAVY, LIGHT)
    make_quote(BID, ASK + T, HEAVY, LIGHT, t_ms=2, q=q)
    assert print_at(q, Position(QUANTITY), ASK) is None
    assert q.armed                                            # (nothing was attempted)


def test_print_inside_or_on_the_wrong_side_sends_nothing():
    """Buy only when the trade printed at the ask; sell only at the bid."""
    q = armed_level(BID, HEAVY, LIGHT)         # bid heavy: only a buy is possible
    assert print_at(q, Position(QUANTITY), BID) is None      # printed at the bid
    assert print_at(q, Position(QUANTITY), ASK + T) is None  # away from the level
    if T > 1:
        assert print_at(q, Position(QUANTITY), BID + 1) is None   # inside the spread


def test_never_sells_short():
    """Sell only when held - pending sells >= 100: it never sells short."""
    q = armed_level(BID, LIGHT, HEAVY, up=False)
    assert print_at(q, Position(QUANTITY), BID) is None
    p = Position(QUANTITY)
    p.held = LOT
    p.register("s1", "sell")
    assert print_at(q, p, BID) is None                       # the lot already being sold


def test_capacity_counts_held_and_pending_buys():
    """Buy only when held + pending buys + 100 <= --quantity."""
    q = armed_level()
    p = Position(3 * LOT)
    p.held = LOT
    p.register("b1", "buy")
    assert print_at(q, p, ASK) is not None                   # 1 + 1 + 1 lots <= 3
    p.register("b2", "buy")
    assert print_at(q, p, ASK) is None                       # 1 + 2 + 1 lots > 3


def test_trade_meeting_no_rule_leaves_the_level_armed():
    """A trade that meets no rule leaves the level armed."""
    q = armed_level(BID, HEAVY, LIGHT)
    assert print_at(q, Position(QUANTITY), ASK, t_ms=1) is None  # within the quote guard
    assert q.armed


# ------------------------------------------------------- which prints count
# The shipped rule excludes the first row and follows the second; which a bot
# follows is what its REGULAR_CONDITIONS says (the contract pins the set).
@pytest.mark.parametrize("codes", [["@", "Z"], [" ", "U"], ["@", "W"], [" ", "B"], ["4"],
                                   ["@", "T"], ["@", "I"], ["O"], ["Q"], ["M"], ["5"], ["6"],
                                   ["9"], ["X"], ["P"], ["C"], ["N"], ["R"], ["V"], ["7"],
                                   ["H"], ["@", "K"], ["?"],
                                   [" "], ["@"], ["F"], ["@", "F"], [" ", "F"], [], None])
def test_a_print_is_followed_only_if_every_code_is_a_regular_one(codes):
    """A print is followed only if every condition code in its `c` list is one of
    " ", "@", "F"; any other code excludes the print; a print with no `c` field
    counts as regular."""
    regular = codes is None or set(codes) <= tt.REGULAR_CONDITIONS
    intent = print_at(armed_level(), Position(QUANTITY), ASK, conditions=codes)
    assert (intent is not None) == regular


def test_excluded_print_leaves_the_level_armed():
    """A trade that meets no rule leaves the level armed."""
    q = armed_level()
    assert print_at(q, Position(QUANTITY), ASK, conditions=["@", "Z"]) is None
    assert q.armed


@pytest.mark.parametrize("bid_size, ask_size, price, held", [(HEAVY, 0, ASK, 0), (0, HEAVY, BID, LOT)])
def test_a_side_of_size_zero_sends_nothing(bid_size, ask_size, price, held):
    """Both live sizes are above zero (an empty side is not an infinite imbalance)."""
    p = Position(QUANTITY)
    p.held = held
    q = armed_level(BID, bid_size, ask_size, up=bid_size > 0)
    assert print_at(q, p, price) is None


# ------------------------------------------------------------------ odd lots
ODD = LOT * 2 // 5                          # an odd lot left by a partial fill (40 of 100)


@pytest.mark.parametrize("held, pending_sell, qty", [(ODD, 0, ODD), (LOT + ODD, LOT, ODD),
                                                     (2 * LOT + LOT // 2, 0, LOT),
                                                     (LOT, LOT, None), (0, 0, None)])
def test_sell_is_for_one_lot_or_the_odd_lot_that_is_left(held, pending_sell, qty):
    """Sell for min(100, held - pending sells) when that is at least 1: an odd lot
    left by a partial fill is sold by the next sell signal; never short."""
    p = Position(QUANTITY)
    p.held = held
    if pending_sell:
        p.register("s1", "sell", pending_sell)
    intent = print_at(armed_level(BID, LIGHT, HEAVY, up=False), p, BID)
    assert (intent and intent.qty) == qty


# ------------------------------------------------------------ data gaps
def test_forgotten_level_makes_the_next_level_a_first_level():
    """After a gap in market data, the level is forgotten: the next level seen is
    a first level, never armed (a one-cent move from a stale level is not a move)."""
    q = armed_level(BID)
    q.forget()
    assert not q.armed
    make_quote(BID + T, ASK + T, HEAVY, LIGHT, t_ms=5, q=q)      # one tick from the stale level
    assert (q.level_bid, q.armed) == (BID + T, False)
    make_quote(BID + 2 * T, ASK + 2 * T, HEAVY, LIGHT, t_ms=6, q=q)   # a real one-tick move
    assert q.armed


def test_level_change_with_an_unreadable_time_changes_nothing():
    """A level change is applied whole or not at all: a quote whose time cannot be
    read changes nothing."""
    q = armed_level(BID, HEAVY, LIGHT)
    before = {name: getattr(q, name) for name in tt.Quote.__slots__}
    with pytest.raises(ValueError):
        q.on_quote(BID + T, ASK + T, 50, 60, "not a time")
    assert {name: getattr(q, name) for name in tt.Quote.__slots__} == before


# ------------------------------------------------------------------ position
def test_partial_fills_move_the_cumulative_delta_from_pending_to_held():
    """On partial_fill and fill: the change in cumulative filled_qty since last seen
    moves from pending to held."""
    p = Position(QUANTITY)
    p.register("b1", "buy")
    first, then = LOT * 3 // 10, LOT * 3 // 4                # 30, then 75 of 100
    assert fill(p, "b1", "partial_fill", first) == first
    assert (p.held, p.pending_buys) == (first, LOT - first)
    assert fill(p, "b1", "partial_fill", then) == then - first
    assert (p.held, p.pending_buys) == (then, LOT - then)


def test_repeated_or_stale_update_changes_nothing():
    """A repeated or stale update changes nothing."""
    p = Position(QUANTITY)
    p.register("b1", "buy")
    most, less = LOT * 3 // 5, LOT * 2 // 5                  # 60, then a stale 40
    fill(p, "b1", "partial_fill", most)
    assert fill(p, "b1", "partial_fill", most) == 0
    assert fill(p, "b1", "partial_fill", less) == 0
    assert (p.held, p.pending_buys) == (most, LOT - most)


@pytest.mark.parametrize("event", ["canceled", "expired", "rejected", "done_for_day", "replaced"])
def test_every_terminal_event_applies_final_fill_then_releases_pending(event):
    """On any terminal event: apply the final filled_qty first, then release what is
    still pending for that order, and forget it."""
    p = Position(QUANTITY)
    p.register("b1", "buy")
    fill(p, "b1", "partial_fill", LOT // 5)
    fill(p, "b1", event, LOT * 7 // 20)
    assert (p.held, p.pending_buys, p.orders) == (LOT * 7 // 20, 0, {})


def test_realized_pnl_is_kept_exactly_and_rounded_only_when_printed():
    """Realized P&L uses the average cost of the shares held, kept exactly (as a
    fraction of cents), and is rounded to the cent only when printed."""
    p = Position(QUANTITY)
    for coid, cents in (("b1", 1001), ("b2", 1002), ("b3", 1002)):
        p.register(coid, "buy", 100)
        fill(p, coid, "fill", 100, avg_cents=cents)
    p.register("s1", "sell", 100)
    fill(p, "s1", "fill", 100, avg_cents=1004)
    assert p.realized_cents == Fraction(700, 3)             # 233 1/3 cents, not 234
    assert tt.signed_dollars(p.realized_cents) == "+$2.33"
    p.register("s2", "sell", 200)
    fill(p, "s2", "fill", 200, avg_cents=1001)
    assert p.realized_cents == Fraction(700, 3) - Fraction(400, 3) and p.cost_cents == 0


@pytest.mark.parametrize("cents, text", [(Fraction(1, 2), "+$0.01"), (Fraction(-1, 2), "-$0.01"),
                                         (Fraction(-149, 100), "-$0.01"), (Fraction(12345), "+$123.45"),
                                         (Fraction(0), "+$0.00")])
def test_pnl_is_rounded_half_away_from_zero_when_printed(cents, text):
    """... rounded to the cent only when printed."""
    assert tt.signed_dollars(cents) == text


@pytest.mark.parametrize("given, text", [("31.01", "31.01"), ("31.0100", "31.01"), ("31.0133", "31.0133"),
                                         ("31.015", "31.015"), ("31", "31.00"), ("0.2999", "0.2999")])
def test_a_fill_price_is_written_one_way_whichever_answer_reported_it(given, text):
    """Each fill is logged and journaled at its price in dollars, to the cent or finer."""
    assert tt.price_text(tt.exact_cents(given)) == text
    stream = tt.OrderUpdate.from_stream({"event": "fill", "price": given, "order": {
        "client_order_id": "c", "filled_qty": "100", "filled_avg_price": given}})
    assert tt.price_text(stream.price_cents) == tt.price_text(stream.filled_avg_cents) == text


def test_an_unreadable_execution_price_still_counts_its_shares():
    """Never lose track of a share: a fill whose own price cannot be read still counts."""
    update = tt.OrderUpdate.from_stream({"event": "fill", "price": "n/a", "order": {
        "client_order_id": "c", "filled_qty": "100", "filled_avg_price": "10.01"}})
    assert (update.price_cents, update.filled_qty, update.filled_avg_cents) == (None, 100, 1001)


def test_sells_subtract_and_realize_pnl_against_average_cost():
    """Buys add, sells subtract; realized P&L in cents against the average cost."""
    p = Position(QUANTITY)
    p.register("b1", "buy", 100)
    fill(p, "b1", "fill", 100, avg_cents=1001)
    p.register("b2", "buy", 100)
    fill(p, "b2", "fill", 100, avg_cents=1003)
    p.register("s1", "sell", 100)
    fill(p, "s1", "fill", 100, avg_cents=1005)
    assert (p.held, p.bought, p.sold, p.realized_cents) == (100, 200, 100, 300)


def test_submit_answered_4xx_releases_pending_at_once():
    """Submit answered 4xx (403, 422, ...): not placed; release its pending shares at once."""
    p = Position(LOT)
    p.register("b1", "buy")
    assert not p.can_buy()
    p.refused("b1")
    assert p.can_buy() and p.orders_sent == 0


def test_invariants_hold_over_random_updates():
    """Invariants at every moment: 0 <= held; held + pending buys <= --quantity;
    held - pending sells >= 0."""
    rng = random.Random(20261123)
    q, p = armed_level(), Position(4 * LOT)
    events = ["partial_fill", "fill", "canceled", "expired", "rejected", "new"]
    for i in range(3000):
        side = rng.choice(["buy", "sell"])
        if side == "buy":
            q = armed_level(BID, HEAVY, LIGHT)
            intent = print_at(q, p, ASK)
        else:
            q = armed_level(BID, LIGHT, HEAVY, up=False)
            intent = print_at(q, p, BID)
        if intent is not None:
            p.register(f"o{i}", intent.side, intent.qty)
        for coid, order in list(p.orders.items()):
            if rng.random() < 0.5:
                filled = rng.randint(order.filled, order.qty)
                fill(p, coid, rng.choice(events), filled)
        assert 0 <= p.held
        assert p.held + p.pending_buys <= p.quantity
        assert p.held - p.pending_sells >= 0


# ---------------------------------------------------- defects of the example
def test_fill_after_partial_fills_is_not_counted_twice():
    """Defect: a fill after partial_fills added the cumulative quantity again
    (100-share order counted as 140) -> cumulative-delta accounting."""
    p = Position(QUANTITY)
    p.register("b1", "buy")
    fill(p, "b1", "partial_fill", LOT * 2 // 5)
    fill(p, "b1", "fill", LOT)
    assert p.held == LOT


def test_update_for_unknown_order_changes_nothing():
    """Defect: an update for an unknown order raised KeyError after changing the
    total -> updates are matched by the bot's own ids; others ignored."""
    p = Position(QUANTITY)
    p.register("b1", "buy")
    assert fill(p, "manual-1", "fill", LOT) == 0
    assert (p.held, p.pending_buys, list(p.orders)) == (0, LOT, ["b1"])


def test_fill_before_the_rest_reply_is_counted_once():
    """Defect: bookkeeping ran after the cancel, so a refused cancel skipped it
    -> register before sending."""
    p = Position(QUANTITY)
    p.register("b1", "buy")                     # before the POST
    fill(p, "b1", "fill", LOT)                  # arrives before the POST returns
    fill(p, "b1", "fill", LOT)                  # and again, after
    assert (p.held, p.pending_buys, p.bought) == (LOT, 0, LOT)


@pytest.mark.parametrize("lots", [1, 5])
def test_quantity_is_reached_exactly(lots):
    """Defect: capacity test held + pending < quantity - 100 (--quantity 100 never
    bought, 500 stopped at 400) -> held + pending + 100 <= quantity."""
    p = Position(lots * LOT)
    for i in range(10):
        if print_at(armed_level(BID + 2 * T * i), p, ASK + 2 * T * i) is not None:
            p.register(f"b{i}", "buy")
            fill(p, f"b{i}", "fill", LOT)
    assert (p.held, p.bought) == (LOT * lots, LOT * lots)


def test_rejected_order_does_not_retry_at_the_same_level():
    """Defect: a rejected order left the level armed, so every print retried
    -> one attempt per level (an attempt disarms the level)."""
    q, p = armed_level(), Position(QUANTITY)
    intent = print_at(q, p, ASK)
    assert intent is not None
    q.disarm()                                  # what the bot does on every attempt
    p.register("b1", "buy")
    fill(p, "b1", "rejected", 0)
    assert print_at(q, p, ASK, t_ms=1 + AFTER_MS + 40) is None


def test_jump_to_a_one_cent_spread_does_not_arm():
    """Defect: any jump to a one-cent spread counted as a level change, against its
    own docstring -> one-cent moves only arm."""
    q = make_quote(BID, ASK + 2 * T)            # wide: no level yet
    make_quote(BID + T, ASK + T, HEAVY, LIGHT, q=q)
    assert not q.armed
    assert print_at(q, Position(QUANTITY), ASK + T) is None


def test_sizes_of_a_wide_quote_are_not_compared_with_the_level():
    """Defect: sizes of a wide quote were compared with the stale one-cent level
    -> live quote must be at the level."""
    q = armed_level(BID, 100, 100)
    make_quote(BID, ASK + T, HEAVY, LIGHT, t_ms=5, q=q)         # wide, bid heavy
    assert print_at(q, Position(QUANTITY), ASK) is None


def test_expired_order_releases_its_pending_shares():
    """Defect: only 4 terminal events released pending shares (expired blocked
    buying for good) -> every terminal event releases."""
    p = Position(LOT)
    p.register("b1", "buy")
    fill(p, "b1", "expired", 0)
    assert p.can_buy()


def test_pending_is_tracked_per_order_whatever_its_size():
    """Defect: capacity ignored a lot size other than 100 in remove_pending_order
    -> pending tracked per order."""
    p = Position(QUANTITY)
    p.register("b1", "buy", qty=LOT // 2)
    p.register("b2", "buy", qty=LOT)
    assert p.pending_buys == LOT + LOT // 2
    fill(p, "b1", "canceled", LOT // 5)
    assert (p.held, p.pending_buys) == (LOT // 5, LOT)


# ------------------------------------------------------------ configuration
def config(monkeypatch, argv: list[str], **env: str) -> tt.Config:
    for name in ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "APCA_API_BASE_URL",
                 "APCA_API_STREAM_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return tt.make_config(tt.parse_args(argv))


@pytest.mark.parametrize("key, base", [("PKABC", tt.PAPER_URL), ("AKABC", tt.LIVE_URL)])
def test_default_endpoint_is_paper_for_pk_keys_and_live_otherwise(monkeypatch, key, base):
    """Default base URL when none is given: paper for a key id starting with PK."""
    cfg = config(monkeypatch, [], APCA_API_KEY_ID=key, APCA_API_SECRET_KEY="s")
    assert (cfg.base_url, cfg.data_url) == (base, tt.DATA_STREAM_URL)


def test_flags_beat_the_environment(monkeypatch):
    """Precedence: flag > environment > .env > default."""
    cfg = config(monkeypatch, ["--key-id", "PKFLAG", "--base-url", "http://127.0.0.1:1/",
                               "--data-url", "http://127.0.0.1:2"],
                 APCA_API_KEY_ID="PKENV", APCA_API_SECRET_KEY="s",
                 APCA_API_BASE_URL="http://127.0.0.1:3", APCA_API_STREAM_URL="http://127.0.0.1:4")
    assert (cfg.key_id, cfg.base_url, cfg.data_url) == \
        ("PKFLAG", "http://127.0.0.1:1", "http://127.0.0.1:2")


def test_stream_urls_follow_the_sdk(monkeypatch):
    """An http(s):// stream URL means ws(s)://; data at <stream url>/v2/<feed>, trading
    at <base url>/stream."""
    cfg = config(monkeypatch, ["--feed", "sip"], APCA_API_KEY_ID="PK", APCA_API_SECRET_KEY="s")
    assert tt.DataStream(cfg, {}, print, print).url == "wss://stream.data.alpaca.markets/v2/sip"
    assert tt.TradingStream(cfg, print).url == "wss://paper-api.alpaca.markets/stream"


def test_secret_is_never_in_the_config_repr(monkeypatch):
    """Keys only from flags/env/.env; never echoed."""
    cfg = config(monkeypatch, [], APCA_API_KEY_ID="PK", APCA_API_SECRET_KEY="hunter2")
    assert "hunter2" not in repr(cfg)


def test_sub_penny_print_is_at_neither_the_bid_nor_the_ask():
    """Buy when the trade printed at the ask; sell at the bid: a midpoint print
    (10.005) must not round onto the bid (integer cents, converted at the edge)."""
    assert [tt.print_cents(p) for p in (10.01, 30.97, 10.005, 30.965)] == [1001, 3097, None, None]


# ------------------------------------------------------------------ restarts
def test_shares_held_before_the_run_count_toward_quantity():
    """Shares already held count toward --quantity (the bot never holds more in
    total), but the bot only ever sells shares it bought in this run."""
    p = Position(QUANTITY, preexisting=3 * LOT)
    q = armed_level()
    assert print_at(q, p, ASK) is not None
    p.register("b1", "buy")
    p.register("b2", "buy")
    assert not p.can_buy()                                   # 3 + 2 + 1 lots > 5
    assert print_at(armed_level(BID, LIGHT, HEAVY, up=False), p, BID) is None   # sells none


# ---------------------------------------------------------------- rate limits
def test_budget_books_submit_and_cancel_at_once_within_200_a_minute():
    """An order is sent only if the REST rate budget has room for its submit *and*
    its cancel right now, counting requests already reserved (200 a minute)."""
    limiter = tt.RateLimiter()
    for i in range(199):
        assert limiter.take(i * 0.1) == 0
    assert not limiter.reserve(2, 20.0)                      # an order needs two
    assert limiter.reserve(1, 20.0)                          # now 200 are booked
    assert limiter.take(20.0) == pytest.approx(40.0)         # the oldest leaves at 60 s
    assert limiter.reserve(2, 60.15)


def test_429_pauses_until_the_reset_or_backs_off_exponentially():
    """A 429 backs off: until Alpaca's reset when given, else 1, 2, 4 ... 60 s."""
    limiter = tt.RateLimiter()
    assert limiter.throttled(0.0, reset_in=5.0) == 5.0 and not limiter.reserve(1, 4.9)
    assert limiter.take(4.0) == pytest.approx(1.0)
    assert [limiter.throttled(0.0, None) for _ in range(3)] == [2.0, 4.0, 8.0]
    limiter.answered()
    assert limiter.throttled(0.0, None) == 1.0
    assert limiter.throttled(0.0, reset_in=500.0) == 60.0


def test_reconnect_backoff_doubles_with_jitter_up_to_30s():
    """Reconnect with exponential backoff and jitter (never the SDK's 10 ms loop)."""
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0)]:
        delays = [tt.backoff_s(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1
