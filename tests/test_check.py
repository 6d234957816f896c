"""--check: a preflight for the first real run, trading nothing (README, "Trade on paper"),
end to end against the fake Alpaca: the checklist with its figures,
one order's life with --order, and a one-line advice for each failure."""
from __future__ import annotations

import signal
import sqlite3
import time
from decimal import Decimal

import pytest

from sim import replay
from sim.alpaca import quote
from tests.helpers import SYMBOL, assert_clean

POST = ("POST", "/v2/orders")


def check(fake, run_bot, *args: str, bid: int = 1000) -> tuple[int, str]:
    """Run --check, feeding fresh quotes (exchange time: now; `bid` in cents, the
    ask a cent above) until it exits."""
    bot = run_bot("--check", *args, ready=False)
    deadline = time.monotonic() + 30
    while bot.proc.poll() is None and time.monotonic() < deadline:
        if fake.subscribed(SYMBOL):
            fake.push(quote(SYMBOL, bid, bid + 1, 100, 100, time.time_ns()))
        time.sleep(0.05)
    code = bot.wait_exit()
    out = bot.output()
    assert_clean(out)
    return code, out


def test_check_passes_against_the_simulator_with_its_figures_and_sends_no_order(
        fake, run_bot, tmp_path):
    """--check runs every start-up check, then the checklist (keys, clock, symbols,
    REST's round trip, both streams, the quotes' age), and exits 0 only if all
    pass; no order is sent without --order."""
    code, out = check(fake, run_bot)
    assert code == 0, out
    for line in ("keys accepted by a server on this machine", "market open",
                 "symbol(s) exist, are active and tradable", "REST round trip",
                 "trading stream: signed in, listening", "market data (iex): signed in",
                 "quotes for 1 symbol(s)", "CHECK: all passed"):
        assert line in out, line
    assert POST not in fake.received.requests
    row = sqlite3.connect(tmp_path / "tick-taker.db").execute(
        "SELECT rest_p50_ms, data_age_p50_ms, order_round_trip_ms, passed FROM checks").fetchone()
    assert row[0] > 0 and row[1] is not None and row[2] is None and row[3] == 1


def test_check_with_order_places_one_far_limit_and_cancels_it(fake, run_bot):
    """--check --order also places one 1-share limit far from the market, waits for
    its `new` update, cancels it and waits for `canceled`: exactly one order."""
    code, out = check(fake, run_bot, "--order")
    assert code == 0, out
    [order] = fake.received.orders
    assert (order["qty"], order["side"], order["limit_price"]) == ("1", "buy", "5.00")
    assert fake.order_by_client_id(order["client_order_id"])["status"] == "canceled"
    assert "then cancelled" in out and fake.position_qty(SYMBOL) == 0


def test_check_order_on_a_sub_dollar_stock_is_never_marketable(fake, run_bot):
    """--check --order's limit is half the bid, never at or above it: under $1 in
    hundredths of a cent (Alpaca takes four decimals there), so nothing fills it."""
    code, out = check(fake, run_bot, "--order", bid=50)
    assert code == 0, out
    [order] = fake.received.orders
    assert Decimal(order["limit_price"]) == Decimal(50) / 200 < Decimal(50) / 100
    assert fake.order_by_client_id(order["client_order_id"])["status"] == "canceled"
    assert fake.position_qty(SYMBOL) == 0


def test_check_order_whose_answer_is_lost_is_found_and_cancelled(fake, run_bot):
    """--check --order never leaves its order open: a submit with no clear answer
    (created, then a 503) is looked up by client_order_id and cancelled."""
    fake.force(*POST, 503, "service unavailable", after=True)   # placed, then a 503
    code, out = check(fake, run_bot, "--order")
    assert "outcome unknown: looking it up" in out
    [order] = fake.received.orders
    assert fake.order_by_client_id(order["client_order_id"])["status"] == "canceled"
    assert code == 0, out


def test_check_stopped_by_ctrl_c_sends_no_order(fake, run_bot):
    """Nothing is sent after Ctrl+C, the check's order included: it stops, saying
    so, and exits non-zero (not every check ran)."""
    bot = run_bot("--check", "--order", symbol=f"{SYMBOL},AMD", ready=False)
    bot.wait_log("market data (iex): signed in")          # now waiting for both symbols' quotes
    fake.push(quote(SYMBOL, 1000, 1001, 100, 100, time.time_ns()))   # a bid to price an order
    bot.proc.send_signal(signal.SIGINT)
    assert bot.wait_exit() == 1
    out = bot.output()
    assert "stopped (Ctrl+C) before every check ran" in out
    assert POST not in fake.received.requests
    assert_clean(out)


def test_order_without_check_is_refused(fake, run_bot):
    """--order goes with --check: alone it is refused (exit 2), not a trading run."""
    bot = run_bot("--order", ready=False)
    assert bot.wait_exit() == 2
    assert "--order goes with --check" in bot.output()
    assert fake.received.requests == []


@pytest.mark.parametrize("fault, advice", [
    ("keys", "Alpaca refused the API keys"),
    ("feed", "your market-data plan does not include this feed (try --feed iex)"),
    ("symbol", "MU: Alpaca knows no such symbol"),
    ("406", "another program already holds this account's market-data connection"),
])
def test_check_failure_says_what_to_do_in_one_line(fake, run_bot, fault, advice):
    """Each failure says what to do in one line: the keys (with the key's prefix and
    the endpoint), the plan and feed, the symbol, another program's connection."""
    if fault == "keys":
        fake.refuse_auth = True
    elif fault == "feed":
        fake.data_auth_error = (409, "insufficient subscription")
    elif fault == "symbol":
        fake.assets[SYMBOL] = None
    else:
        fake.data_auth_error = (406, "connection limit exceeded")
    code, out = check(fake, run_bot)
    assert code == 1
    [line] = [line for line in out.splitlines() if "CHECK FAIL" in line]
    assert advice in line
    if fault == "keys":
        assert "key id PKFA..." in line
    assert fake.received.orders == []


def test_replay_takes_the_latency_the_last_check_measured(fake, run_bot, tmp_path,
                                                         monkeypatch):
    """`sim.replay --latency-ms measured`: the last check's quote age plus its
    order's round trip."""
    code, _ = check(fake, run_bot, "--order")
    assert code == 0
    monkeypatch.chdir(tmp_path)
    age, order = sqlite3.connect("tick-taker.db").execute(
        "SELECT data_age_p50_ms, order_round_trip_ms FROM checks").fetchone()
    assert replay.latencies("measured") == [max(0.0, round(age + order, 1))]
