"""Shared test helpers: the bot as a subprocess, and market scenarios.

Prices are integer cents and times are exchange nanoseconds chosen by the
test (moved by hand, never slept), as in STRATEGY.md.
"""
from __future__ import annotations

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
LIGHT = 3 * tt.LOT                       # the light side: room to fill a whole lot
HEAVY = math.floor(LIGHT * tt.IMBALANCE_RATIO) * 2 + 1   # outweighs LIGHT, with a margin
PRINT = max(tt.MIN_PRINT_SIZE, 1)        # a print the rule follows
GUARD_MS = tt.QUOTE_GUARD_NS / MS        # prints within this of the level are ignored
AFTER_MS = GUARD_MS + 10                 # a print this long after the level is followed
QUANTITY = 5 * tt.LOT                    # the bot's --quantity in these tests


def at(ms: float) -> int:
    """Exchange time `ms` milliseconds after T0."""
    return T0 + round(ms * MS)


def start_bot(fake: FakeAlpaca, tmp_path: Path, *args: str, symbol: str = SYMBOL,
              quantity: Optional[int] = QUANTITY, env: Optional[dict] = None,
              ready: bool = True, live: bool = True) -> Bot:
    """Start the bot against `fake` with the real CLI and environment variables.

    The fake is not Alpaca's paper endpoint, so the bot needs --live for it."""
    argv = ["--symbol", symbol, *([] if quantity is None else ["--quantity", str(quantity)]),
            *(["--live"] if live else []), *args]
    fake.universe.update(symbol.split(","))      # assets Alpaca lists (GET /v2/assets)
    bot = Bot(argv, clean_env(**{**fake.env(), **(env or {})}), tmp_path)
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


def assert_in_step(fake: FakeAlpaca, out: str, code: int, quantity: int = 500,
                   symbol: str = SYMBOL, held_before: int = 0) -> dict:
    """After any fault: the bot's position equals the fake's, no order of the run
    is open at the fake when the bot exited 0, the fake never held more than
    --quantity, and no order was sent late. Returns the bot's summary."""
    s = summary(out)
    assert s["position"] + held_before == fake.position_qty(symbol), out
    if code == 0:
        assert fake.open_orders_of_run() == [], out
    assert fake.peak_position.get(symbol, 0) <= quantity
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
    prev = bid - 1 if up else bid + 1
    return [quote(symbol, prev, prev + tt.TICK_CENTS, LIGHT, LIGHT, at(t)),
            quote(symbol, bid, bid + tt.TICK_CENTS, bid_size, ask_size, at(t + 1))]


def buy_signal(fake: FakeAlpaca, bid: int, t: float, symbol: str = SYMBOL) -> None:
    """An armed level with a bid-heavy book, then a print the rule follows at its ask."""
    messages = [*arming(bid, t, HEAVY, LIGHT, True, symbol),
                trade(symbol, bid + tt.TICK_CENTS, PRINT, at(t + 1 + AFTER_MS))]
    fake.push(*expect_signal("buy", messages))


def sell_signal(fake: FakeAlpaca, bid: int, t: float, symbol: str = SYMBOL) -> None:
    """An armed level with an ask-heavy book, then a print the rule follows at its bid."""
    messages = [*arming(bid, t, LIGHT, HEAVY, False, symbol),
                trade(symbol, bid, PRINT, at(t + 1 + AFTER_MS))]
    fake.push(*expect_signal("sell", messages))


def expect_signal(side: str, messages: list[dict]) -> list[dict]:
    """The scenario's messages, once the shipped rule itself (tick_taker's
    Quote and signal_side, in this process) agrees that their last print is a
    `side` signal: a set-up the rule does not follow fails here at once,
    saying so, instead of a wait for an order that cannot come."""
    q = tt.Quote()
    for m in messages[:-1]:
        q.on_quote(round(m["bp"] * 100), round(m["ap"] * 100), m["bs"], m["as"], m["t"])
    p = messages[-1]
    verdict = tt.signal_side(q, tt.Trade(round(p["p"] * 100), p["s"], p["t"], p.get("c")))
    assert verdict == side, (
        f"this scenario is no {side} signal under tick_taker.signal_side() (it says "
        f"{verdict}): level {q.level_bid}/{q.level_ask} armed={q.armed}, sizes "
        f"{q.bid_size}/{q.ask_size}, print {p['s']} @ {p['p']}; build the set-up from the "
        "rule's constants (tests/helpers.py)")
    return messages


def sentinel(fake: FakeAlpaca, n_before: Optional[int], side: str = "buy",
             t: float = 900_000) -> list[dict]:
    """Prove what the bot did NOT send: a signal the bot must follow, far from
    every scenario price. Orders go out in decision order, so once the
    sentinel's order arrives, all earlier decisions have been sent too.

    Returns the orders received before the sentinel's (asserting it came
    last and, unless `n_before` is None, that exactly that many came before it)."""
    (buy_signal if side == "buy" else sell_signal)(fake, SENTINEL_BID, t)
    expected = SENTINEL_BID + tt.TICK_CENTS if side == "buy" else SENTINEL_BID
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
