"""Safe to leave running: live trading only on purpose, a loss limit, inputs
checked before anything trades, secrets never shown, Ctrl+C at every stage,
a log file. End to end against the fake Alpaca, except where a unit test is
the honest tool (the redacting log formatter).
"""
from __future__ import annotations

import logging
import time

import pytest

import tick_taker as tt
from sim.alpaca import SECRET_KEY, FillPolicy, quote
from sim.bot import Bot, clean_env
from tests.helpers import (HEAVY, LIGHT, LOT, SYMBOL, TICK, assert_clean, assert_in_step, at,
                           buy_signal, stop_cleanly, summary)

ACCOUNT = ("GET", "/v2/account")


# ------------------------------------------------------------ live trading
def test_live_endpoint_without_live_refuses_before_any_request(fake, tmp_path):
    """Against the live endpoint (by URL, whatever the key looks like) the bot
    refuses to start without --live, naming the endpoint and the key id's start."""
    env = clean_env(APCA_API_KEY_ID="PKLOOKSLIKEPAPER000", APCA_API_SECRET_KEY=SECRET_KEY,
                    APCA_API_BASE_URL=tt.LIVE_URL, APCA_API_STREAM_URL=fake.url)
    bot = Bot(["--symbol", SYMBOL], env, tmp_path)
    assert bot.wait_exit() == 2
    out = bot.output()
    assert "refusing to start" in out and tt.LIVE_URL in out and "PKLO..." in out
    assert fake.received.requests == [] and fake.received.data_connections == 0
    assert_clean(out)


def test_endpoint_other_than_paper_without_live_sends_nothing(fake, run_bot):
    """... the bot refuses to start without --live: no stream opened, no order."""
    bot = run_bot(live=False, ready=False)
    assert bot.wait_exit() == 2
    assert "pass --live" in bot.output()
    assert fake.received.requests == [] and fake.received.orders == []
    assert fake.received.data_connections == fake.received.trading_connections == 0


def test_with_live_a_live_endpoint_is_announced_prominently(monkeypatch, caplog):
    """With --live it says `*** LIVE TRADING with real money ***` at start-up."""
    for name in ("APCA_API_BASE_URL", "APCA_API_STREAM_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APCA_API_KEY_ID", "AKLIVE")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "s")
    with caplog.at_level(logging.INFO, logger="tick_taker"):
        assert tt.live_gate(tt.make_config(tt.parse_args([])), live=True)
    assert "*** LIVE TRADING with real money" in caplog.text and tt.LIVE_URL in caplog.text


def test_with_live_the_simulator_is_named_as_such_and_trades(fake, bot):
    """On the simulator (a server on this machine) the bot says so instead of LIVE
    TRADING, and trades."""
    out = bot.output()
    assert "a server on this machine" in out and "simulated Alpaca" in out
    assert "LIVE TRADING" not in out
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    assert_in_step(fake, stop_cleanly(bot), 0)


def test_paper_endpoint_needs_no_flag(monkeypatch):
    """Paper needs nothing: Alpaca's paper endpoint passes the gate without --live."""
    for name in ("APCA_API_BASE_URL", "APCA_API_STREAM_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("APCA_API_KEY_ID", "PKPAPER")
    monkeypatch.setenv("APCA_API_SECRET_KEY", "s")
    assert tt.live_gate(tt.make_config(tt.parse_args([])), live=False)
    monkeypatch.setenv("APCA_API_KEY_ID", "AKLIVE")
    assert not tt.live_gate(tt.make_config(tt.parse_args([])), live=False)


# ---------------------------------------------------------------- inputs
@pytest.mark.parametrize("asset, message", [
    (None, "Alpaca knows no such symbol"),
    ({"status": "inactive"}, "is inactive at Alpaca"),
    ({"tradable": False}, "is not tradable at Alpaca"),
])
def test_symbol_alpaca_cannot_trade_stops_before_anything_trades(fake, run_bot, asset, message):
    """The symbol must exist and be tradable (/v2/assets via the SDK):
    unknown, inactive or non-tradable symbols stop with a clear message."""
    fake.assets[SYMBOL] = asset
    bot = run_bot(ready=False)
    assert bot.wait_exit() == 1
    out = bot.output()
    assert message in out and SYMBOL in out
    assert fake.received.data_connections == fake.received.trading_connections == 0
    assert fake.received.orders == []
    assert_clean(out)


@pytest.mark.parametrize("args", [
    ["--symbol", ""], ["--symbol", "SN AP"], ["--symbol", "SNAP,,MU"], ["--symbol", "TOOLONGSYM"],
    ["--rest-rate", "0"], ["--rest-rate", "1.5"], ["--rest-rate", "-3"],
    ["--stale-seconds", "0"], ["--stale-seconds", "-1"], ["--stale-seconds", "nan"],
    ["--stop-before-close", "-5"], ["--stop-before-close", "400"],
    ["--max-loss", "0"], ["--max-loss", "-10"], ["--max-loss", "ten"],
    ["--quantity", str(LOT + LOT // 2)], ["--quantity", "0"], ["--quantity", "abc"],
    ["--quantity", "100000000"], ["--feed", "nasdaq"],
])
def test_bad_flag_stops_before_anything_else_naming_the_flag(args, capsys):
    """Every numeric flag has a sane range checked by argparse; so has --symbol
    (the command line is read first: nothing is set up before it is valid)."""
    with pytest.raises(SystemExit) as stopped:
        tt.main(args)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and args[0] in err and "Traceback" not in err


def test_bad_flag_exits_2_before_any_request(fake, tmp_path):
    """... end to end: the real script exits 2 naming the flag, with no request sent."""
    bot = Bot(["--quantity", str(LOT + LOT // 2)], clean_env(**fake.env()), tmp_path)
    assert bot.wait_exit() == 2
    out = bot.output()
    assert "--quantity" in out and "Traceback" not in out
    assert fake.received.requests == []


# ------------------------------------------------------------- the loss limit
def test_loss_limit_in_a_falling_market_sells_out_and_stops(fake, run_bot):
    """--max-loss: when this run's P&L (realized + held shares marked at the live
    bid) reaches -DOLLARS: no new orders, cancel this run's open orders, sell what
    this run holds at market, then stop with a distinct exit code."""
    limit, paid = 5 * LOT, 1000 + TICK                   # cents: $5 for a lot of 100
    bot = run_bot("--max-loss", f"{limit / 100:g}")
    buy_signal(fake, 1000, t=0)                          # a lot bought at 10.01
    bot.wait_log(f"FILL BUY {LOT}")
    fake.push(quote(SYMBOL, 998, 999, HEAVY, LIGHT, at(500)))          # -3: still inside
    time.sleep(0.3)
    assert bot.proc.poll() is None
    fake.push(quote(SYMBOL, 995, 996, HEAVY, LIGHT, at(600)))          # -6: past -5
    assert bot.wait_exit() == tt.EXIT_LOSS_LIMIT
    out = bot.output()
    loss = LOT * (paid - 995)
    assert (f"LOSS LIMIT: this run's P&L {tt.signed_dollars(-loss)} reached "
            f"{tt.signed_dollars(-limit)} (--max-loss)") in out
    assert f"loss limit {tt.signed_dollars(-limit)}" in out and "the run stopped itself" in out
    assert [(o["side"], o["type"]) for o in fake.received.orders] == [("buy", "limit"),
                                                                       ("sell", "market")]
    s = assert_in_step(fake, out, 0)                     # flat at the fake, nothing open
    assert (s["position"], fake.position_qty(SYMBOL)) == (0, 0)
    assert s["realized"] == -loss / 100


def test_loss_limit_cancels_open_orders_before_selling(fake, run_bot):
    """... cancel this run's open orders (with retries), then sell at market."""
    bot = run_bot("--max-loss", f"{5 * LOT / 100:g}")
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    fake.default_policy = FillPolicy(shares=0)           # the next order rests ...
    fake.force("DELETE", "/v2/orders/{id}", 500, times=None)      # ... uncancellable for now
    buy_signal(fake, 1010, t=1000)
    bot.wait_log("refused")
    fake.faults.clear()
    fake.default_policy = FillPolicy()
    fake.push(quote(SYMBOL, 995, 996, HEAVY, LIGHT, at(5000)))
    assert bot.wait_exit(timeout=15) == tt.EXIT_LOSS_LIMIT
    assert [o["type"] for o in fake.received.orders] == ["limit", "limit", "market"]
    assert fake.open_orders() == [] and fake.position_qty(SYMBOL) == 0


# ------------------------------------------------------------------ secrets
def test_secret_with_surrounding_whitespace_works_and_is_never_printed(fake, run_bot):
    """Keys are stripped of whitespace; no secret in any output."""
    bot = run_bot("--debug", env={"APCA_API_SECRET_KEY": f"  {SECRET_KEY}\t\n"})
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    out = stop_cleanly(bot)
    assert SECRET_KEY not in out


def test_refused_secret_is_never_printed(fake, run_bot):
    """No secret in any output, whatever the error (refused auth)."""
    wrong = "wrong-secret-0123456789abcdef"
    bot = run_bot(env={"APCA_API_SECRET_KEY": wrong}, ready=False)
    assert bot.wait_exit() == 1
    out = bot.output()
    assert "refused the API keys" in out and wrong not in out


def test_secret_with_a_control_character_is_refused_without_printing_it(fake, run_bot):
    """A secret the HTTP library would reject as an invalid header stops the run
    with a clear message, never the library's error with the secret in it."""
    broken = "fake-secret\x01with-a-control-char"
    bot = run_bot(env={"APCA_API_SECRET_KEY": broken}, ready=False)
    assert bot.wait_exit() == 2
    out = bot.output()
    assert "contains spaces or control characters" in out
    assert "fake-secret" not in out and "with-a-control-char" not in out
    assert fake.received.requests == []


def test_log_formatter_redacts_the_secret_from_every_path(capsys):
    """A logging formatter redacts the secret key wherever it would appear: the
    message, its arguments, exception text and tracebacks, raw or escaped."""
    secret = "s3cr3t-\tvalue"
    formatter = tt.Redacting("%(message)s")
    tt.Redacting.hide(f" {secret} ")
    logger = logging.getLogger("redaction-test")
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    try:
        logger.error("header %s", secret)
        logger.error("invalid header value %r", f" {secret}")        # repr-escaped
        try:
            raise ValueError(f"Invalid leading whitespace in header value: {secret!r}")
        except ValueError:
            logger.exception("start-up failed")                       # with a traceback
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "[secret]" in err and "Traceback" in err
    assert "s3cr3t" not in err


# ------------------------------------------------------------------- Ctrl+C
def test_ctrl_c_during_a_hanging_start_up_call_exits_at_once_with_a_summary(fake, run_bot):
    """Ctrl+C works at every stage: during start-up calls it exits promptly with
    the summary."""
    fake.latency_s[ACCOUNT] = 30.0
    bot = run_bot(ready=False)
    fake.wait_until(lambda: ACCOUNT in fake.received.requests, "the account call")
    started = time.monotonic()
    assert bot.stop(timeout=5) == 0
    assert time.monotonic() - started < 2.0
    out = bot.output()
    assert "SUMMARY MU: orders sent 0" in out
    assert_clean(out)


def test_ctrl_c_while_waiting_for_the_open_exits_at_once(fake, run_bot):
    """... during the wait for the open; the wait is in words, its time labelled."""
    fake.open_at = time.time() + 3 * 3600 + 12 * 60 + 30
    bot = run_bot(ready=False)
    out = bot.wait_log("market closed: it opens in 3 h 12 min, at ")
    assert " ET (" in out and " UTC)" in out
    started = time.monotonic()
    assert bot.stop(timeout=5) == 0
    assert time.monotonic() - started < 2.0 and "SUMMARY" in bot.output()


def test_ctrl_c_during_reconnect_backoff_exits_at_once(fake, bot):
    """... during reconnect backoff."""
    fake.force("GET", "/stream", 503, "unavailable", times=None)
    fake.drop_trading_stream()
    bot.wait_log("reconnect failed")
    started = time.monotonic()
    assert bot.stop(timeout=5) == 0
    assert time.monotonic() - started < 2.0 and "SUMMARY" in bot.output()


# ----------------------------------------------------------------- log file
def test_log_file_holds_the_same_lines_as_the_terminal(fake, run_bot, tmp_path):
    """--log-file PATH: the same lines as stderr, for unattended runs."""
    path = tmp_path / "run.log"
    bot = run_bot("--log-file", str(path))
    buy_signal(fake, 1000, t=0)
    bot.wait_log(f"FILL BUY {LOT}")
    out = stop_cleanly(bot)
    assert path.read_text().splitlines() == out.splitlines()
    assert summary(path.read_text())["position"] == LOT
