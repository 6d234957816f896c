"""Several symbols on one connection, end to end: one data connection and one
trading stream, each symbol with its own level, position and --quantity;
shared rate budget, loss limit and shutdown."""
from __future__ import annotations

import time

import pytest

import tick_taker as tt
from sim.alpaca import quote, trade
from sim.benchmark import made_up_symbols
from tests.helpers import (AFTER_MS, HEAVY, LIGHT, LOT, MS, PRINT, TICK, arm, assert_clean, at,
                           buy_signal, limit_cents, push_signal, sell_signal, sentinel, start_bot,
                           stop_cleanly)

SYMBOLS = ("MU", "AMD", "SNAP")


@pytest.fixture
def three(fake, tmp_path):
    """Start the bot on three symbols with --quantity per symbol."""
    bots = []

    def start(*args: str, quantity: int = LOT, ready: bool = True):
        bot = start_bot(fake, tmp_path, *args, symbol=",".join(SYMBOLS), quantity=quantity,
                        ready=False)
        bots.append(bot)
        if ready:
            for symbol in SYMBOLS:
                fake.wait_ready(symbol)
        return bot

    yield start
    for bot in bots:
        bot.kill()


def orders_of(fake, symbol: str) -> list[dict]:
    return [o for o in fake.received.orders if o["symbol"] == symbol]


def summaries(out: str) -> dict[str, str]:
    return {line.split("SUMMARY ", 1)[1].split(":")[0]: line for line in out.splitlines()
            if "SUMMARY " in line}


def test_one_connection_subscribes_every_symbol(fake, three):
    """One data connection subscribing all symbols, one trading stream."""
    bot = three()
    assert fake.received.data_connections == fake.received.trading_connections == 1
    assert all(fake.subscribed(s) for s in SYMBOLS)
    stop_cleanly(bot)


def test_signals_on_each_symbol_are_independent(fake, three):
    """Per symbol its own Quote tracker and level: arming, one attempt per level."""
    bot = three(quantity=5 * LOT)
    arm(fake, 1000, t=0, symbol="MU")                    # MU armed at 10.00/10.01
    level_t = arm(fake, 5000, t=0, symbol="AMD")         # AMD armed at 50.00/50.01
    first = push_signal(fake, "buy", [trade("AMD", 5000 + TICK, PRINT, at(level_t + AFTER_MS))])
    fake.push(trade("AMD", 5000 + TICK, PRINT, first["t"] + 10 * MS),  # ... once per level
              trade("SNAP", 1000 + TICK, PRINT, first["t"] + 20 * MS))  # SNAP has no level: nothing
    fake.wait_orders(1)
    push_signal(fake, "buy", [trade("MU", 1000 + TICK, PRINT, first["t"] + 30 * MS)])  # still armed
    fake.wait_orders(2)
    orders = sentinel(fake, 2, t=5000)                   # nothing else was sent
    assert [(o["symbol"], limit_cents(o)) for o in orders] == [("AMD", 5000 + TICK),
                                                              ("MU", 1000 + TICK)]
    stop_cleanly(bot)


def test_quantity_is_per_symbol_and_fills_never_cross(fake, three):
    """--quantity is per symbol; a fill for one never changes another's position."""
    bot = three(quantity=LOT)
    buy_signal(fake, 1000, t=0, symbol="MU")
    bot.wait_log(f"FILL BUY {LOT} MU")
    buy_signal(fake, 1010, t=1000, symbol="MU")          # MU is full: nothing
    buy_signal(fake, 5000, t=2000, symbol="AMD")         # AMD has room
    bot.wait_log(f"FILL BUY {LOT} AMD")
    sell_signal(fake, 2000, t=3000, symbol="SNAP")       # SNAP holds nothing: never short
    sell_signal(fake, 1020, t=4000, symbol="MU")         # MU sells what it bought
    bot.wait_log(f"FILL SELL {LOT} MU")
    assert [(o["symbol"], o["side"]) for o in fake.received.orders] == [
        ("MU", "buy"), ("AMD", "buy"), ("MU", "sell")]
    out = stop_cleanly(bot)
    lines = summaries(out)
    assert "position +0 shares" in lines["MU"] and f"position +{LOT} shares" in lines["AMD"]
    assert "position +0 shares" in lines["SNAP"]
    assert f"SUMMARY TOTAL: orders sent 3, bought {2 * LOT}, sold {LOT}" in out
    assert [fake.position_qty(s) for s in SYMBOLS] == [0, LOT, 0]


def test_data_drop_resubscribes_every_symbol(fake, three):
    """A data drop resubscribes all symbols, and each level is forgotten."""
    bot = three()
    arm(fake, 1000, t=0, symbol="AMD")
    fake.drop_data_stream()
    fake.wait_until(lambda: fake.received.data_connections == 2
                    and all(fake.subscribed(s) for s in SYMBOLS), "all symbols resubscribed")
    fake.push(quote("AMD", 1000 + TICK, 1000 + 2 * TICK, HEAVY, LIGHT, at(100)),
              trade("AMD", 1000 + 2 * TICK, PRINT, at(100 + AFTER_MS)))
    buy_signal(fake, 3000, t=1000, symbol="SNAP")        # a fresh level trades
    [order] = fake.wait_orders(1)
    assert (order["symbol"], limit_cents(order)) == ("SNAP", 3000 + TICK)
    stop_cleanly(bot)


def test_restart_adopts_each_symbols_position(fake, three):
    """A restart adopts each symbol's position: shares held count toward that
    symbol's --quantity, and are never sold."""
    fake.hold("MU", 2 * LOT, 1000)
    fake.hold("AMD", 3 * LOT, 5000)
    bot = three(quantity=3 * LOT)
    out = bot.output()
    assert f"already holds +{2 * LOT} MU" in out and f"already holds +{3 * LOT} AMD" in out
    buy_signal(fake, 1000, t=0, symbol="MU")             # MU: room for one lot
    bot.wait_log(f"FILL BUY {LOT} MU")
    buy_signal(fake, 5000, t=1000, symbol="AMD")         # AMD: none
    buy_signal(fake, 1010, t=2000, symbol="MU")          # MU: none left
    sell_signal(fake, 5010, t=3000, symbol="AMD")        # AMD's old shares: never sold
    buy_signal(fake, 3000, t=4000, symbol="SNAP")        # sentinel: SNAP trades
    orders = fake.wait_orders(2)
    assert [(o["symbol"], o["side"]) for o in orders] == [("MU", "buy"), ("SNAP", "buy")]
    stop_cleanly(bot)


def test_quiet_symbol_is_not_a_dead_stream(fake, three):
    """The watchdog is per symbol: a quiet symbol has its level forgotten, the
    others keep trading."""
    bot = three("--stale-seconds", "0.5", quantity=5 * LOT)
    arm(fake, 1000, t=0, symbol="MU")
    level_t = arm(fake, 5000, t=0, symbol="AMD")
    deadline = time.monotonic() + 3
    while "no quotes for MU" not in bot.output() and time.monotonic() < deadline:
        fake.push(quote("AMD", 5000, 5000 + TICK, HEAVY, LIGHT, at(level_t + 1)))   # AMD stays alive
        time.sleep(0.1)
    out = bot.output()
    assert "no quotes for MU" in out and "no quotes for AMD" not in out
    assert "no quotes for any symbol" not in out
    fake.push(trade("MU", 1000 + TICK, PRINT, at(level_t + AFTER_MS)))  # MU: its level was forgotten
    push_signal(fake, "buy", [trade("AMD", 5000 + TICK, PRINT, at(level_t + AFTER_MS))])  # AMD: armed
    fake.wait_orders(1)
    [order] = sentinel(fake, 1, t=5000)                  # nothing else was sent
    assert order["symbol"] == "AMD"
    stop_cleanly(bot)


def test_symbol_limit_of_the_plan_is_explained(fake, three):
    """Alpaca's subscription limits (the free plan's symbol cap, error 405) give a
    clear message."""
    fake.subscribe_error = (405, "symbol limit exceeded")
    bot = three(ready=False)
    assert bot.wait_exit() == 1
    out = bot.output()
    assert "symbol limit exceeded" in out and "free plan: 30" in out
    assert fake.received.orders == []
    assert_clean(out)


# ------------------------------------------------------------ the whole market
def many(n: int) -> list[str]:
    return list(made_up_symbols(n))


START_REQUESTS = 20                        # REST requests before the streams, at most


def test_a_thousand_symbols_are_ready_fast_after_a_fixed_number_of_requests(fake, tmp_path):
    """The whole market on one connection: start-up asks Alpaca a fixed number of
    things (the account, the clock, the assets, the open orders, the positions),
    whatever the number of symbols; the subscription goes in frames of a safe size."""
    names = many(1000)
    fake.universe.update(names)
    fake.max_subscribe_symbols = 1000 // 2               # one message for all: refused
    (tmp_path / "symbols.txt").write_text("# the whole list\n" + "\n".join(names) + "\n")
    started = time.monotonic()
    bot = start_bot(fake, tmp_path, "--symbols-file", "symbols.txt", symbol=names[0],
                    ready=False)
    fake.wait_until(lambda: fake.listening and all(fake.subscribed(s) for s in names),
                    "1,000 symbols subscribed", timeout=15)
    assert time.monotonic() - started < 15
    assert len(fake.received.requests) <= START_REQUESTS, fake.received.requests
    out = stop_cleanly(bot)
    assert "1 symbol(s) named more than once" in out     # --symbol and the file's first
    assert sum("SUMMARY" in line for line in out.splitlines()) == 2   # total, quiet count
    assert "1000 of 1000 symbols never signalled" in out


def test_restart_holding_fifty_of_a_thousand_adopts_them_all(fake, tmp_path):
    """Restarts: shares already held count toward --quantity, for every symbol,
    read in one request; the summary lists the symbols that hold shares."""
    names = many(1000)
    fake.universe.update(names)
    for symbol in names[::20]:
        fake.hold(symbol, 100, 1000)
    bot = start_bot(fake, tmp_path, "--symbol", ",".join(names[1:]), symbol=names[0],
                    quantity=LOT, ready=False)
    fake.wait_until(lambda: fake.listening and fake.subscribed(names[-1]), "ready", timeout=15)
    out = stop_cleanly(bot)
    assert out.count("the account already holds +100") == 50
    assert out.count("held before this run, untouched: 100") == 50
    assert fake.received.requests.count(("GET", "/v2/positions")) == 1


def test_symbols_file_errors_name_the_line(tmp_path, capsys):
    """--symbols-file: one symbol a line, # comments; a bad line is refused, naming
    the file and the line."""
    path = tmp_path / "s.txt"
    path.write_text("MU  # memory\n\n# none here\nSN AP\n")
    with pytest.raises(SystemExit):
        tt.parse_args(["--symbols-file", str(path)])
    assert "line 4" in capsys.readouterr().err
    path.write_text("MU  # memory\nAMD\nMU\n")
    args = tt.parse_args(["--symbols-file", str(path), "--symbol", "SNAP"])
    assert (args.symbol, args.duplicates) == (["SNAP", "MU", "AMD"], 1)


def test_unknown_symbols_are_named_all_at_once(fake, run_bot):
    """Unknown symbols are named all at once, in one message, before anything trades."""
    fake.assets["QQQQ"] = fake.assets["ZZZZ"] = None
    bot = run_bot(symbol="MU,QQQQ,ZZZZ", ready=False)
    assert bot.wait_exit() == 1
    out = bot.output()
    assert "QQQQ: Alpaca knows no such symbol" in out and "ZZZZ: Alpaca knows no such" in out
    assert fake.received.data_connections == 0
