"""sim.drift: a run the bot traded "live" against the simulated Alpaca, then
replayed from the simulator's history with the script its journal kept, and
the two held side by side."""
from __future__ import annotations

import csv
import shutil
import sqlite3
import statistics
import time
from pathlib import Path

import pytest

import tick_taker as tt
from sim import drift
from sim.alpaca import OPEN_STATES, FakeAlpaca, FillPolicy, trade
from sim.replay import has_room
from tests.helpers import (AFTER_MS, HEAVY, LIGHT, MS, PRINT, QUANTITY, SYMBOL, T0, TICK, arming,
                           at, expect_signal, model_of, start_bot)

# Buys and sells at levels of their own: the last sell finds nothing left to sell.
SIDES = ("buy", "buy", "sell", "buy", "sell", "sell", "sell")
FIRST_BID = max(2000, 2 * tt.MIN_LEVEL_BID_CENTS) // TICK * TICK
AGREE = FillPolicy(before_reply=True, ioc=True)            # the replay's own fill model
NOTHING = FillPolicy(before_reply=True, ioc=True, shares=0)   # live fills nothing


def push_on_the_clock(fake: FakeAlpaca, messages: list[dict]) -> None:
    """Each message once the local clock has reached its time: live data is
    never stamped in the future (its time is the exchange's, as it printed)."""
    for m in messages:
        while (wait := m["t"] - time.time_ns()) > 0:
            time.sleep(wait / 1e9)
        fake.push(m)


def settled(fake: FakeAlpaca, bot, n_orders: int) -> None:
    """Until the bot's last order is done at the broker and the bot has taken
    its outcome (its log says so): the next signal is decided as in real time."""
    order = fake.order_by_client_id(fake.received.orders[n_orders - 1]["client_order_id"])
    fake.wait_until(lambda: order["status"] not in OPEN_STATES, "the order to be done")
    if int(order["filled_qty"]):          # a FILL line for each execution so far
        fake.wait_until(lambda: bot.output().count(" FILL ") >= len(fake.executions),
                        "the bot to log its fills", hopeless=fake.hopeless)
    else:
        bot.wait_log(f"{order['status'].upper()} {order['client_order_id']} (filled 0)")


def trade_live(fake: FakeAlpaca, tmp_path: Path, policy: FillPolicy, *args: str,
               symbols: tuple[str, ...] = (SYMBOL,)) -> str:
    """The bot, live against the simulator (fills by `policy`), follows a
    signal on each of SIDES in each of `symbols`; stopped with Ctrl+C.
    Returns its run id."""
    fake.default_policy = policy
    bot = start_bot(fake, tmp_path, *args, symbol=",".join(symbols), ready=False)
    for symbol in symbols:
        fake.wait_ready(symbol)
    for k, side in enumerate(SIDES):
        for symbol in symbols:
            signal_live(fake, bot, symbol, side, FIRST_BID + 10 * k * TICK)
    assert bot.stop() == 0, bot.output()
    return last_run(tmp_path)


def signal_live(fake: FakeAlpaca, bot, symbol: str, side: str, bid: int) -> None:
    """A `side` signal at the level (bid, bid + TICK), on the clock; then until
    the bot has followed it (its order done and taken) or said why not."""
    now = (time.time_ns() - T0) / MS              # the helpers' clock: ms after T0
    up = side == "buy"
    heavy, light = (HEAVY, LIGHT) if up else (LIGHT, HEAVY)
    price = bid + TICK if up else bid
    messages = expect_signal(side, [*arming(bid, now, heavy, light, up, symbol),
                                    trade(symbol, price, PRINT, at(now + 1 + AFTER_MS))],
                             model_of(fake))
    before = len(fake.received.orders)
    room = has_room(tt, QUANTITY, symbol, side, fake.position_qty(symbol))
    begun = len(bot.output())
    push_on_the_clock(fake, messages)
    if room:          # fails at once, with its reason, if the bot does not follow it
        fake.wait_until(lambda: len(fake.received.orders) > before, "the bot's order",
                        hopeless=lambda: fake.hopeless() or next(
                            (line for line in bot.output()[begun:].splitlines()
                             if " not followed" in line), None))
        settled(fake, bot, before + 1)
    else:
        bot.wait_log("not followed", after=f"{side.upper()} signal {symbol} @ "
                     f"{tt.dollars(price)}")


def last_run(tmp_path: Path) -> str:
    db = sqlite3.connect(tmp_path / tt.DEFAULT_JOURNAL)
    try:
        return db.execute("SELECT run_id FROM runs ORDER BY started_at DESC, rowid DESC").fetchone()[0]
    finally:
        db.close()


@pytest.fixture
def here(fake, monkeypatch, tmp_path):
    """sim.drift's downloads go to the simulator, as the bot's keys say."""
    monkeypatch.chdir(tmp_path)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    return tmp_path


def drift_of(tmp_path: Path, *args: str) -> tuple[str, list[dict]]:
    """sim.drift on the journal in tmp_path: its report and differences.csv."""
    out = tmp_path / "drift"
    code = drift.main(["--quiet", "--cache", str(tmp_path / "cache"), "--out", str(out), *args])
    assert code == 0
    with open(out / "differences.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert (out / "drift.png").stat().st_size > 0
    return (out / "report.txt").read_text(), rows


def figures(report: str, table_first: str) -> dict[str, list[str]]:
    """The rows of the report's table whose header starts with `table_first`."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(table_first))
    rows = {}
    for line in lines[start + 1:]:
        if not line.startswith("  ") or not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells[1:]
    return rows


def test_a_run_where_the_fill_models_agree_matches_every_order(fake, here):
    """"Is the replay honest?": a run whose fills the replay's model would give
    is matched order for order, fill for fill, in each symbol and in total."""
    symbols = (SYMBOL, "AMD")
    trade_live(fake, here, AGREE, symbols=symbols)
    report, rows = drift_of(here, "--latency-ms", "0")
    signals = figures(report, "symbol  signals: both")
    fills = figures(report, "symbol  filled: both")
    for name in (*symbols, "total"):
        mine = [o for o in fake.orders.values() if name in (o["symbol"], "total")]
        filled = sum(int(o["filled_qty"]) > 0 for o in mine)
        assert mine and filled
        n = len(SIDES) * (len(symbols) if name == "total" else 1)
        assert signals[name] == [str(n), "0", "0", str(len(mine)), "0", "0"], report
        assert fills[name][:4] == [str(filled), "0", "0", "same"], report
        assert fills[name][4] == fills[name][5] and fills[name][6] == "+$0.00", report
    assert rows == []


def test_the_run_latency_is_its_median_print_to_alpacas_word(fake, here):
    """"Is the replay honest?": by default the replay's latency is the run's own,
    its median time from a print to Alpaca's first word of the order."""
    run_id = trade_live(fake, here, AGREE)
    db = sqlite3.connect(here / tt.DEFAULT_JOURNAL)
    times = [(tt.parse_ns(at) - ns) / MS for ns, at in db.execute(
        "SELECT o.exchange_ns, MIN(e.at) FROM orders o JOIN events e USING (client_order_id) "
        "WHERE e.event = 'new' AND o.run_id = ? GROUP BY o.client_order_id", (run_id,))]
    db.close()
    assert len(times) == sum(1 for _ in fake.received.orders)
    report, _ = drift_of(here)
    expected = round(statistics.median(times), 1)
    assert f"order latency {expected:g} ms (the run's median" in report, report
    # Every signal is in both (a print is a signal whatever the position); the
    # orders may differ: at this latency a fill may meet the next scenario's book.
    signals = figures(report, "symbol  signals: both")[SYMBOL]
    assert signals[:3] == [str(len(SIDES)), "0", "0"], report


def test_a_live_model_that_fills_nothing_shows_fills_only_in_the_replay(fake, here):
    """"Is the replay honest?": live fills the replay's model would give, but that
    never came, show as orders filled only in the replay, and the sells that
    had nothing to sell live as orders only in the replay."""
    trade_live(fake, here, NOTHING)
    assert not any(int(o["filled_qty"]) for o in fake.orders.values())
    live_orders = len(fake.received.orders)
    report, rows = drift_of(here, "--latency-ms", "0")
    signals = figures(report, "symbol  signals: both")[SYMBOL]
    fills = figures(report, "symbol  filled: both")[SYMBOL]
    both, only_live, only_replay = (int(x) for x in signals[3:6])
    assert both == live_orders and only_live == 0 and only_replay >= 1, report
    assert fills[:3] == ["0", "0", str(both)], report
    assert fills[4] == "+$0.00" and fills[5] != "+$0.00", report
    kinds = [r["what"] for r in rows]
    assert sorted(kinds) == sorted(["filled only replay"] * both
                                   + ["order only replay"] * only_replay), rows
    assert all(r["replay_shares"] != "0" for r in rows if r["what"] == "filled only replay")


def test_bad_input_says_so_in_one_line_and_exits_2(fake, here, capsys):
    """"Is the replay honest?": a run with no orders, a journal from before the
    script was kept, and a window the plan has no data for each say so."""
    journal = here / tt.DEFAULT_JOURNAL

    def refused(*args: str) -> str:
        code = drift.main(["--quiet", "--cache", str(here / "cache"), "--out",
                           str(here / "drift"), *args])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        return err

    assert "no journal at" in refused("--journal", str(here / "none.db"))
    bot = start_bot(fake, here)
    assert bot.stop() == 0
    quiet = last_run(here)
    assert "sent an order" in refused()
    assert f"run {quiet} sent no orders" in refused("--run", quiet)
    fake.sip_delay_s = 900
    traded = trade_live(fake, here, AGREE, "--feed", "sip")
    assert "recent SIP" in refused()
    old = here / "old.db"
    shutil.copy(journal, old)
    db = sqlite3.connect(old)
    db.execute("ALTER TABLE runs DROP COLUMN script_sha256")
    db.execute("DROP TABLE scripts")
    db.commit()
    db.close()
    assert f"run {traded} was journaled before" in refused("--journal", str(old))
