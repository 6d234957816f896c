"""Shared test helpers: the bot as a subprocess, and market scenarios.

Prices are integer cents and times are exchange nanoseconds chosen by the
test (moved by hand, never slept), as in STRATEGY.md.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from sim.alpaca import SECRET_KEY, FakeAlpaca, quote, trade
from sim.bot import Bot, clean_env

SYMBOL = "MU"
T0 = 1_795_000_000_000_000_000          # exchange time base (ns since the epoch)
MS = 1_000_000
SENTINEL_BID = 9000                      # far from every scenario's prices


def at(ms: float) -> int:
    """Exchange time `ms` milliseconds after T0."""
    return T0 + round(ms * MS)


def start_bot(fake: FakeAlpaca, tmp_path: Path, *args: str, symbol: str = SYMBOL,
              quantity: Optional[int] = 500, env: Optional[dict] = None,
              ready: bool = True, live: bool = True) -> Bot:
    """Start the bot against `fake` with the real CLI and environment variables.

    The fake is not Alpaca's paper endpoint, so the bot needs --live for it."""
    argv = ["--symbol", symbol, *([] if quantity is None else ["--quantity", str(quantity)]),
            *(["--live"] if live else []), *args]
    bot = Bot(argv, clean_env(**{**fake.env(), **(env or {})}), tmp_path)
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
def arm(fake: FakeAlpaca, bid: int, t: float, bid_size: int = 900, ask_size: int = 300,
        up: bool = True, symbol: str = SYMBOL) -> float:
    """Make (bid, bid+1) an armed level: a level one tick away, then this one.

    Returns the level time (ms)."""
    prev = bid - 1 if up else bid + 1
    fake.push(quote(symbol, prev, prev + 1, 100, 100, at(t)),
              quote(symbol, bid, bid + 1, bid_size, ask_size, at(t + 1)))
    return t + 1


def buy_signal(fake: FakeAlpaca, bid: int, t: float, symbol: str = SYMBOL) -> None:
    """An armed level with a bid-heavy book, then a 100-share print at its ask."""
    level_t = arm(fake, bid, t, bid_size=900, ask_size=300, symbol=symbol)
    fake.push(trade(symbol, bid + 1, 100, at(level_t + 60)))


def sell_signal(fake: FakeAlpaca, bid: int, t: float, symbol: str = SYMBOL) -> None:
    """An armed level with an ask-heavy book, then a 100-share print at its bid."""
    level_t = arm(fake, bid, t, bid_size=300, ask_size=900, up=False, symbol=symbol)
    fake.push(trade(symbol, bid, 100, at(level_t + 60)))


def sentinel(fake: FakeAlpaca, n_before: int, side: str = "buy", t: float = 900_000) -> list[dict]:
    """Prove what the bot did NOT send: a signal the bot must follow, far from
    every scenario price. Orders go out in decision order, so once the
    sentinel's order arrives, all earlier decisions have been sent too.

    Returns the orders received before the sentinel's (asserting it came
    last and that exactly `n_before` came before it)."""
    (buy_signal if side == "buy" else sell_signal)(fake, SENTINEL_BID, t)
    orders = fake.wait_orders(n_before + 1)
    last = orders[-1]
    expected = SENTINEL_BID + 1 if side == "buy" else SENTINEL_BID
    assert (last["side"], limit_cents(last)) == (side, expected), orders
    assert len(orders) == n_before + 1, orders
    return orders[:-1]


def limit_cents(order: dict) -> int:
    return round(float(order["limit_price"]) * 100)
