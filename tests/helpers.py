"""Shared test helpers: the bot as a subprocess, and market scenarios.

Prices are integer cents and times are exchange nanoseconds chosen by the
test (moved by hand, never slept), as in docs/strategy.md.
"""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Optional

import tick_taker as tt
from sim.alpaca import SECRET_KEY, FakeAlpaca, quote, trade
from sim.bot import Bot, clean_env

SYMBOL = "MU"
T0 = 1_795_000_000_000_000_000          # exchange time base (ns since the epoch)
MS = 1_000_000
SENTINEL_BID = 9000                      # far from every scenario's prices

# Sizes and times a signal needs, derived from the rule's constants, so that a
# fork that changes a knob (IMBALANCE_RATIO, MIN_PRINT_SIZE, QUOTE_GUARD_NS,
# LOT) still signals in every scenario that must signal. Only
# tests/test_contract.py pins the shipped values.
LOT = tt.LOT
TICK = tt.TICK_CENTS                     # a level is (bid, bid + TICK); a move is one tick
ODD = LOT * 2 // 5                       # a partial fill's share of a lot (40 of 100)
LIGHT = 3 * tt.LOT                       # the light side: room to fill a whole lot
HEAVY = math.floor(LIGHT * tt.IMBALANCE_RATIO) * 2 + 1   # outweighs LIGHT, with a margin
PRINT = max(tt.MIN_PRINT_SIZE, 1)        # a print the rule follows
GUARD_MS = tt.QUOTE_GUARD_NS / MS        # prints within this of the level are ignored
AFTER_MS = GUARD_MS + 10                 # a print this long after the level is followed
QUANTITY = 5 * tt.LOT                    # the bot's --quantity in these tests


def at(ms: float) -> int:
    """Exchange time `ms` milliseconds after T0."""
    return T0 + round(ms * MS)


# ------------------------------------------ the rule, as the bot runs it
class Tracked(tt.Quote):
    """A level tracker fed as the bot feeds it (the twin of tick_taker.feed,
    as a Quote the tests can read and feed directly): each quote to the
    Quote, then to the symbol's own Rule, which a fork may make remember.
    `verdict(trade)` asks that rule."""

    def __init__(self) -> None:
        super().__init__()
        self.rule = tt.Rule()

    def on_quote(self, bid: int, ask: int, bid_size: int, ask_size: int, t: tt.ExchangeTime) -> bool:
        changed = super().on_quote(bid, ask, bid_size, ask_size, t)
        if self.rule.on_quote is not None:
            self.rule.on_quote(self, t)
        return changed

    def verdict(self, trade: tt.Trade) -> Optional[str]:
        return self.rule.signal_side(self, trade)

    def state(self) -> str:
        return (f"level {self.level_bid}/{self.level_ask} armed={self.armed}, live "
                f"{self.bid}/{self.ask} sizes {self.bid_size}/{self.ask_size}")


def as_trade(m: dict) -> tt.Trade:
    """A trade message as the bot's core sees it."""
    return tt.Trade(round(m["p"] * 100), m["s"], m["t"], m.get("c"))


class RuleModel:
    """The bot's rule run in this process on everything pushed to the fake
    since the bot started (tick_taker's own Quote and Rule, one per symbol),
    so a scenario can ask what the bot's rule will say of a print, memory
    and all, before it is sent. An attempt disarms the level, as in the bot
    (it assumes each signal is followed)."""

    def __init__(self) -> None:
        self.symbols: dict[str, Tracked] = {}

    def of(self, symbol: str) -> Tracked:
        return self.symbols.setdefault(symbol, Tracked())

    def see(self, messages: list[dict]) -> None:
        for m in messages:
            try:
                if m["T"] == "q":
                    self.of(m["S"]).on_quote(round(m["bp"] * 100), round(m["ap"] * 100),
                                             m["bs"], m["as"], m["t"])
                elif m["T"] == "t" and tt.print_cents(m["p"]) is not None:   # (not sub-penny)
                    q = self.of(m["S"])
                    if q.verdict(as_trade(m)) is not None:
                        q.disarm()
            except (KeyError, TypeError, ValueError):   # the bot skips it too
                continue


def model_of(fake: FakeAlpaca, fresh: bool = False) -> RuleModel:
    """The fake's RuleModel (a fresh one for a new bot: it starts with none)."""
    model = getattr(fake, "rule_model", None)
    if model is None:
        model = fake.rule_model = RuleModel()
        fake.on_push.append(lambda messages: fake.rule_model.see(messages))
    elif fresh:
        model = fake.rule_model = RuleModel()
    return model


def start_bot(fake: FakeAlpaca, tmp_path: Path, *args: str, symbol: str = SYMBOL,
              quantity: Optional[int] = QUANTITY, env: Optional[dict] = None,
              ready: bool = True, live: bool = True, fresh: bool = False) -> Bot:
    """Start the bot against `fake` with the real CLI and environment variables
    (forked from the suite's zygote, or `fresh`: `python tick_taker.py ...`).

    The fake is not Alpaca's paper endpoint, so the bot needs --live for it."""
    argv = ["--symbol", symbol, *([] if quantity is None else ["--quantity", str(quantity)]),
            *(["--live"] if live else []), *args]
    fake.universe.update(symbol.split(","))      # assets Alpaca lists (GET /v2/assets)
    model_of(fake, fresh=True)                   # the new bot's rule has seen nothing
    bot = Bot(argv, clean_env(**{**fake.env(), **(env or {})}), tmp_path, fresh=fresh)
    fake.watchers.append(bot.why_stuck)          # an awaited order that cannot come: fail now
    if ready:
        try:
            fake.wait_ready(symbol)
        except AssertionError:
            bot.kill()
            raise AssertionError(f"bot not ready; output:\n{bot.output()}")
    return bot


# ------------------------------------------------------- what the bot printed
SUMMARY = re.compile(r"SUMMARY (\w+): orders sent (\d+), bought (\d+), sold (\d+), "
                     r"position ([+-]\d+) shares, realized P&L ([+-])\$(\d+\.\d\d)")


def summary(output: str) -> dict:
    m = SUMMARY.search(output)
    assert m, f"no summary in:\n{output}"
    sign = -1 if m[6] == "-" else 1
    return {"orders": int(m[2]), "bought": int(m[3]), "sold": int(m[4]),
            "position": int(m[5]), "realized": sign * float(m[7])}


def stop_cleanly(bot) -> str:
    """One Ctrl+C: exit 0 within a few seconds, a summary, no traceback, no secret."""
    rc = bot.stop(timeout=5)
    out = bot.output()
    assert rc == 0, out
    assert_clean(out)
    return out


def warnings(out: str) -> list[str]:
    """Warning and error lines, but for the expected IEX-feed and --live ones."""
    return [line for line in out.splitlines()
            if ("WARNING" in line or "ERROR" in line) and "feed iex" not in line
            and "LIVE TRADING" not in line]


def assert_clean(out: str) -> None:
    assert "Traceback" not in out, out
    assert SECRET_KEY not in out


PROMPT_S = 1.0          # no order reaches Alpaca more than this after its triggering print


def assert_prompt(fake: FakeAlpaca) -> None:
    """Every limit order reached the fake within PROMPT_S of a print of its
    symbol at its limit price (the print that triggered it): none queued or late."""
    prints = fake.received.prints
    for order, arrived in zip(fake.received.orders, fake.received.order_times):
        if order.get("type") != "limit":
            continue                                  # flatten: not a signal's order
        cents = limit_cents(order)
        assert any(sym == order["symbol"] and price == cents and 0 <= arrived - sent <= PROMPT_S
                   for sent, sym, price in prints), (order, arrived, prints[-5:])


def assert_in_step(fake: FakeAlpaca, out: str, code: int, quantity: int = QUANTITY,
                   symbol: str = SYMBOL, held_before: int = 0) -> dict:
    """After any fault: the bot's position equals the fake's, no order of the run
    is open at the fake when the bot exited 0, the fake never held more than
    --quantity nor went short, and no order was sent late. Returns the bot's
    summary."""
    s = summary(out)
    assert s["position"] + held_before == fake.position_qty(symbol), out
    if code == 0:
        assert fake.open_orders_of_run() == [], out
    assert fake.peak_position.get(symbol, 0) <= quantity
    assert fake.low_position.get(symbol, 0) >= 0
    assert_prompt(fake)
    assert_clean(out)
    return s


# --------------------------------------------------------------- scenarios
def arm(fake: FakeAlpaca, bid: int, t: float, bid_size: int = HEAVY, ask_size: int = LIGHT,
        up: bool = True, symbol: str = SYMBOL) -> float:
    """Make (bid, bid+1) an armed level: a level one tick away, then this one.

    Returns the level time (ms)."""
    fake.push(*arming(bid, t, bid_size, ask_size, up, symbol))
    return t + 1


def arming(bid: int, t: float, bid_size: int = HEAVY, ask_size: int = LIGHT,
           up: bool = True, symbol: str = SYMBOL) -> list[dict]:
    """The two quotes that make (bid, bid+1) an armed level at t + 1 ms."""
    prev = bid - TICK if up else bid + TICK
    return [quote(symbol, prev, prev + TICK, LIGHT, LIGHT, at(t)),
            quote(symbol, bid, bid + TICK, bid_size, ask_size, at(t + 1))]


def buy_signal(fake: FakeAlpaca, bid: int, t: float, symbol: str = SYMBOL) -> dict:
    """An armed level with a bid-heavy book, then a print the rule follows at
    its ask; returns that print."""
    messages = [*arming(bid, t, HEAVY, LIGHT, True, symbol),
                trade(symbol, bid + TICK, PRINT, at(t + 1 + AFTER_MS))]
    return push_signal(fake, "buy", messages)


def sell_signal(fake: FakeAlpaca, bid: int, t: float, symbol: str = SYMBOL) -> dict:
    """An armed level with an ask-heavy book, then a print the rule follows at
    its bid; returns that print."""
    messages = [*arming(bid, t, LIGHT, HEAVY, False, symbol),
                trade(symbol, bid, PRINT, at(t + 1 + AFTER_MS))]
    return push_signal(fake, "sell", messages)


def push_signal(fake: FakeAlpaca, side: str, messages: list[dict]) -> dict:
    """Push the scenario in one frame, once the bot's rule agrees that its
    last print is a `side` signal (see expect_signal); returns that print."""
    fake.push(*expect_signal(side, messages, model_of(fake)))
    return messages[-1]


# A rule that remembers may decline a print that comes too soon after something
# it saw (a wide spread, its last signal): the print is then tried this much
# later, the quotes unchanged, until the rule follows it.
LATER_MS = (0, 10, 20, 50, 100, 200, 300, 500, 1_000, 2_000, 5_000, 10_000, 30_000)


def expect_signal(side: str, messages: list[dict], model: Optional[RuleModel] = None
                  ) -> list[dict]:
    """The scenario's messages, once the bot's own rule (tick_taker's Quote
    and Rule in this process, having seen everything the bot saw: `model`)
    agrees that their last print is a `side` signal. If a fork's rule that
    remembers declines it, the print is moved later (LATER_MS) until the rule
    follows it. A set-up the rule never follows fails here at once, saying
    so, instead of a wait for an order that cannot come."""
    base = model.of(messages[-1]["S"]) if model is not None else Tracked()
    first = messages[-1]
    for later_ms in LATER_MS:
        q = copy.deepcopy(base)
        shadow = RuleModel()
        shadow.symbols[first["S"]] = q
        shadow.see(messages[:-1])                # as the bot reads them (a bad one skipped)
        p = {**first, "t": first["t"] + later_ms * MS}
        verdict = q.verdict(as_trade(p))
        if verdict == side:
            messages[-1] = p
            return messages
        if not q.armed or not q.at_level():
            break                           # no later print can help
    raise AssertionError(
        f"this scenario is no {side} signal under tick_taker's Rule.signal_side() (it says "
        f"{verdict}): {q.state()}, print {first['s']} @ {first['p']}; build the set-up from "
        "the rule's constants (tests/helpers.py)")


def sentinel(fake: FakeAlpaca, n_before: Optional[int], side: str = "buy",
             t: float = 900_000) -> list[dict]:
    """Prove what the bot did NOT send: a signal the bot must follow, far from
    every scenario price. Orders go out in decision order, so once the
    sentinel's order arrives, all earlier decisions have been sent too.

    Returns the orders received before the sentinel's (asserting it came
    last and, unless `n_before` is None, that exactly that many came before it)."""
    (buy_signal if side == "buy" else sell_signal)(fake, SENTINEL_BID, t)
    expected = SENTINEL_BID + TICK if side == "buy" else SENTINEL_BID
    # The bot's own word that it will not follow the sentinel ends the wait at once.
    sign = f"{side.upper()} signal {SYMBOL} @ {tt.dollars(expected)} not followed"
    orders = fake.wait_until(lambda: [o for o in fake.received.orders
                                      if limit_cents(o) == expected and o["side"] == side],
                             "the sentinel's order", hopeless=lambda: fake.hopeless(sign))
    orders = list(fake.received.orders)
    last = orders[-1]
    assert (last["side"], limit_cents(last)) == (side, expected), orders
    assert n_before is None or len(orders) == n_before + 1, orders
    return orders[:-1]


def limit_cents(order: dict) -> int:
    return round(float(order["limit_price"]) * 100)
