"""The journal: every run's signals, orders, fills and terminal events in a
SQLite file, checked against the fake Alpaca's own books; killed bots,
shared files, and the report of a journal."""
from __future__ import annotations

import hashlib
import signal
import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import pytest

import tick_taker as tt
from sim import replay
from sim.bot import SCRIPT
from sim.alpaca import FakeAlpaca, FillPolicy, quote, trade
from sim.report import journal_report, main as report_main, read_journal
from tests.helpers import (AFTER_MS, HEAVY, LIGHT, LOT, MS, ODD, PRINT, SYMBOL, T0, TICK, arm, at,
                           buy_signal, push_signal, sell_signal, start_bot, stop_cleanly,
                           summary)


def rows(path: Path, sql: str, *params) -> list[dict]:
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql, params)]
    finally:
        db.close()


def test_journal_orders_and_fills_equal_the_fakes(fake, run_bot, tmp_path):
    """Every run records its signals (sent or why not), orders (ids, side, qty,
    limit, sent and answered times, outcome), fills, Alpaca's first word of
    each order and terminal events: they equal the fake's orders and fills."""
    bot = run_bot(quantity=2 * LOT)
    fake.policies = [FillPolicy(pieces=(ODD, LOT - ODD)), FillPolicy(shares=0)]
    buy_signal(fake, 1000, t=0)                          # filled in two executions
    bot.wait_log(f"(fill; position +{LOT})")
    buy_signal(fake, 1010, t=1000)                       # rests, cancelled
    bot.wait_log("CANCELED")
    fake.force("POST", "/v2/orders", 403, "insufficient buying power")
    buy_signal(fake, 1020, t=2000)                       # refused
    bot.wait_log("REJECTED")
    sell_signal(fake, 1030, t=3000)                      # sells the lot
    bot.wait_log(f"FILL SELL {LOT}")
    arm(fake, 1041, t=4000, up=False, bid_size=LIGHT, ask_size=HEAVY)
    fake.push(quote(SYMBOL, 1041, 1041 + TICK, LIGHT, HEAVY, at(4002)))
    push_signal(fake, "sell", [trade(SYMBOL, 1041, PRINT, at(4002 + AFTER_MS))])   # nothing to sell
    bot.wait_log("not followed: nothing to sell")
    buy_signal(fake, 1050, t=5000)                       # read after it: a buy, filled
    bot.wait_log(f"FILL BUY {LOT}", after=f"FILL SELL {LOT}")
    out = stop_cleanly(bot)
    db = tmp_path / "tick-taker.db"
    [run] = rows(db, "SELECT * FROM runs")
    assert run["exit_code"] == 0 and run["ended_at"] and run["symbols"] == SYMBOL
    orders = rows(db, "SELECT * FROM orders ORDER BY rowid")
    placed = {o["client_order_id"]: o for o in fake.orders.values()}
    assert [o["client_order_id"] for o in orders] == [o["client_order_id"]
                                                       for o in fake.received.orders]
    for o in orders:
        mine = placed.get(o["client_order_id"])
        if mine is None:                                 # the refused one: never at Alpaca
            assert o["outcome"].startswith("refused: HTTP 403") and o["order_id"] is None
            continue
        assert (o["order_id"], o["side"], o["qty"], o["filled_qty"]) == (
            mine["id"], mine["side"], int(mine["qty"]), int(mine["filled_qty"]))
        assert o["outcome"] in ("fill", "canceled") and o["sent_at"] <= o["answered_at"]
        assert o["limit_cents"] == round(Decimal(mine["limit_price"]) * 100)
    fills = rows(db, "SELECT * FROM fills ORDER BY rowid")
    assert [(f["side"], f["qty"], round(Decimal(f["price"]) * 100)) for f in fills] == [
        (side, n, p) for _, _, side, n, p in fake.executions]
    assert fills[-1]["position_after"] == fake.position_qty(SYMBOL) == summary(out)["position"]
    signals = rows(db, "SELECT * FROM signals ORDER BY seq")
    assert [s["why_not"] for s in signals] == [None, None, None, None, "nothing to sell", None]
    assert [s["client_order_id"] for s in signals if s["client_order_id"]] == [
        o["client_order_id"] for o in orders]
    events = rows(db, "SELECT event FROM events WHERE event != 'new' ORDER BY rowid")
    assert [e["event"] for e in events] == ["fill", "canceled", "refused: HTTP 403 "
                                            "insufficient buying power", "fill", "fill"]
    # Alpaca's first word of each order it placed, after the order was sent.
    news = rows(db, "SELECT o.client_order_id, o.sent_at, e.at FROM events e JOIN orders o "
                "USING (client_order_id) WHERE e.event = 'new' ORDER BY e.rowid")
    assert [n["client_order_id"] for n in news] == [o["client_order_id"] for o in orders
                                                    if o["client_order_id"] in placed]
    assert all(n["sent_at"] <= n["at"] for n in news)


def test_mid_one_and_ten_seconds_after_a_signal_is_recorded(fake, bot, tmp_path):
    """For each signal, the mid 1 s and 10 s later (exchange time)."""
    fake.default_policy = FillPolicy(shares=0)
    printed = buy_signal(fake, 1000, t=0)                # mid 10.005 (a one-cent level)
    fake.wait_cancels(1)
    ms = (printed["t"] - T0) / MS                        # the print's time (61 ms, unless
    fake.push(quote(SYMBOL, 1001, 1002, 100, 100, at(ms + 839)),     # mid 10.015 before +1 s
              quote(SYMBOL, 1003, 1004, 100, 100, at(ms + 1439)),    # 10.035 before +10 s
              quote(SYMBOL, 1005, 1006, 100, 100, at(ms + 10_439)),  # 10.055 after
              quote(SYMBOL, 1007, 1008, 100, 100, at(ms + 10_839)))  # a fork moved it)
    stop_cleanly(bot)
    [s] = rows(tmp_path / "tick-taker.db", "SELECT * FROM signals")
    assert (s["mid_cents"], s["mid_1s_cents"], s["mid_10s_cents"]) == (1000 + TICK / 2, 1001.5, 1003.5)


def test_an_older_journal_gains_the_script_of_each_new_run(fake, run_bot, tmp_path):
    """Every run keeps a copy of the script it ran (its SHA-256 in `runs`, its
    text in `scripts`), also in a journal an older tick_taker.py wrote."""
    old = tmp_path / "old.db"
    db = sqlite3.connect(old)
    db.executescript(tt.JOURNAL_SCHEMA)
    db.execute("ALTER TABLE runs DROP COLUMN script_sha256")   # as journals were before
    db.execute("DROP TABLE scripts")
    db.execute("INSERT INTO runs (run_id, started_at, symbols, quantity, endpoint, feed) "
               "VALUES ('earlier', '2026-12-01T15:00:00.000Z', 'MU', 500, 'x', 'iex')")
    db.commit()
    db.close()
    for _ in range(2):                                   # two runs: the text kept once
        stop_cleanly(run_bot("--journal", str(old)))
    text = SCRIPT.read_text()
    sha = hashlib.sha256(text.encode()).hexdigest()
    runs = rows(old, "SELECT run_id, script_sha256 FROM runs ORDER BY rowid")
    assert [r["script_sha256"] for r in runs] == [None, sha, sha]
    assert rows(old, "SELECT * FROM scripts") == [{"sha256": sha, "text": text}]


def test_killed_bot_leaves_a_readable_journal_up_to_the_last_second(fake, bot, tmp_path):
    """Writes never stall the loop; a crash (SIGKILL) loses at most the last second."""
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    sell_signal(fake, 1010, t=1000)
    bot.wait_log(f"FILL SELL {LOT}")
    time.sleep(1.2)                                      # a second: committed by now
    bot.proc.send_signal(signal.SIGKILL)
    bot.wait_exit()
    db = tmp_path / "tick-taker.db"
    assert rows(db, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]
    [run] = rows(db, "SELECT * FROM runs")
    assert run["ended_at"] is None                       # killed: no end recorded
    orders = rows(db, "SELECT * FROM orders")
    assert [(o["side"], o["outcome"]) for o in orders] == [("buy", "fill"), ("sell", "fill")]
    assert len(rows(db, "SELECT * FROM fills")) == 2


def test_two_bots_writing_one_journal_at_once_lose_nothing(tmp_path):
    """Several runs, and several bots, share one file safely: two bots writing
    one journal at once lose nothing."""
    shared = tmp_path / "shared.db"
    fakes = [FakeAlpaca().start(), FakeAlpaca().start()]
    bots = []
    try:
        for i, fake in enumerate(fakes):
            (tmp_path / str(i)).mkdir()
            bots.append(start_bot(fake, tmp_path / str(i), "--journal", str(shared)))
        for k in range(5):                               # interleaved orders on both
            for fake in fakes:
                buy_signal(fake, 1000 + 10 * k, t=1000 * k)
            for fake in fakes:
                fake.wait_until(lambda: fake.position_qty(SYMBOL) == LOT * (k + 1), "a fill")
        for bot in bots:
            stop_cleanly(bot)
        runs = rows(shared, "SELECT * FROM runs")
        assert len(runs) == 2 and all(r["exit_code"] == 0 for r in runs)
        for run, fake in zip(sorted(runs, key=lambda r: r["started_at"]), fakes):
            orders = rows(shared, "SELECT * FROM orders WHERE run_id = ?", run["run_id"])
            fills = rows(shared, "SELECT * FROM fills WHERE run_id = ?", run["run_id"])
            assert {o["client_order_id"] for o in orders} == {
                o["client_order_id"] for o in fake.received.orders}
            assert sum(f["qty"] for f in fills) == 5 * LOT
    finally:
        for bot in bots:
            bot.kill()
        for fake in fakes:
            fake.stop()


def test_report_of_a_journal_matches_the_replays_report(tmp_path, capsys):
    """One report for replay and live: the report of a run's journal matches the
    replay's report for the same run, and the replay's 'what the bot did' comes
    from the journal, which equals the fake's own books."""
    out = tmp_path / "out"
    assert replay.main(["--minutes", "3", "--quiet", "--out", str(out)]) == 0
    replayed = (out / "report.txt").read_text()
    capsys.readouterr()
    assert report_main(["--journal", str(out / "tick-taker.db"), "--last", "--out",
                        str(tmp_path)]) == 0
    from_journal = capsys.readouterr().out
    bot_table = replayed.split("What the bot did", 1)[1].split("The bot's own summary", 1)[0]
    assert bot_table.strip() in from_journal
    assert list(tmp_path.glob("chart-*.png"))
    jr = read_journal(out / "tick-taker.db")
    assert "nothing to sell" in journal_report(jr) or jr.signals


def test_replay_journal_equals_the_fakes_books(tmp_path):
    """The replay's 'what the bot did' (the bot's journal) equals the fake's
    books: orders, fills, position."""
    from sim.tape import Tape
    result = replay.run(Tape(replay.DATA, minutes=2), None, 3 * LOT, 5.0, tmp_path, progress=False)
    for symbol, book in result.books.items():
        mine = result.outcomes[symbol]
        assert [(o["client_order_id"], o["side"], int(o["filled_qty"])) for o in mine.orders] == [
            (o["client_order_id"], o["side"], int(o["filled_qty"])) for o in book.orders]
        assert [(s, n, p) for _, s, n, p in mine.executions] == [
            (s, n, p) for _, s, n, p in book.executions]


def test_no_journal_writes_no_file(fake, run_bot, tmp_path):
    """--no-journal keeps no journal."""
    bot = run_bot("--no-journal")
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    stop_cleanly(bot)
    assert not list(tmp_path.glob("*.db"))


def test_unwritable_journal_stops_with_a_clear_message(fake, run_bot, tmp_path):
    """A journal that cannot be opened: a clear message, no traceback, no trade."""
    bot = run_bot("--journal", str(tmp_path / "no" / "such" / "dir" / "j.db"), ready=False)
    assert bot.wait_exit() == 1
    out = bot.output()
    assert "cannot open the journal" in out and "Traceback" not in out
    assert fake.received.requests == []


@pytest.mark.parametrize("query", ["today's fills", "fill rate by side", "P&L by run"])
def test_readme_queries_run_on_a_journal(fake, bot, tmp_path, query):
    """docs/journal.md's sqlite3 queries for the common questions run as written."""
    import re
    from sim.bot import ROOT
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    sell_signal(fake, 1010, t=1000)
    bot.wait_log(f"FILL SELL {LOT}")
    stop_cleanly(bot)
    page = (ROOT / "docs" / "journal.md").read_text()
    block = re.search(rf"-- {re.escape(query)}\n(.*?)(?:\n--|\n```)", page, re.S)[1]
    found = rows(tmp_path / "tick-taker.db", block.replace("date('now')", "date('now')"))
    assert found
