"""The simulated Alpaca run by hand (`python -m sim.alpaca`), as the README shows
it: it plays a tape as live market data, so `--check --order` passes against it
and the bot trades on screen; and it serves made-up symbol-days through the
historical routes, so a sweep needs no account, and says SYNTHETIC."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from sim import replay
from sim.alpaca import FakeAlpaca
from sim.alpaca.history import SYNTHETIC
from sim.bot import ROOT, Bot, clean_env

START_S = 30                       # for a process to start and say what it must, at most


@pytest.fixture
def simulator(tmp_path):
    """`python -m sim.alpaca --synthetic --speed 20`, and the variables it says
    to export."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    sim = Bot(["-m", "sim.alpaca", "--port", "0", "--synthetic", "--speed", "20"],
              clean_env(PYTHONPATH=path), tmp_path, command=[sys.executable],
              log_name="simulator.log")
    try:
        out = sim.wait_log("\nplaying ", timeout=START_S)
        env = dict(re.findall(r"^\s+export (\w+)=(\S+)$", out, re.M))
        assert set(env) >= {"APCA_API_KEY_ID", "APCA_API_BASE_URL", "APCA_API_DATA_URL"}
        yield env
    finally:
        sim.kill()


def bot(simulator: dict, cwd: Path, *args: str) -> Bot:
    """The real tick_taker.py on SYNTH1, pointed at the simulator as its output says."""
    return Bot(["--symbol", SYNTHETIC[0], "--live", *args], clean_env(**simulator), cwd)


def test_check_and_its_order_pass_against_the_simulator_playing_a_tape(simulator, tmp_path):
    """`python -m sim.alpaca --synthetic` plays a made-up tape as live market data:
    `--check --order` passes against it (quotes arrive, the far limit rests and is
    cancelled), exit 0."""
    check = bot(simulator, tmp_path, "--check", "--order")
    out = check.wait_log("CHECK: all passed", timeout=START_S)
    assert check.wait_exit(timeout=START_S) == 0
    assert "CHECK FAIL" not in out
    assert re.search(r"CHECK ok +order: .* placed .* then cancelled", out)


def test_the_bot_trades_live_against_the_simulator_and_stops_cleanly(simulator, tmp_path):
    """A newcomer can watch the bot trade live before any account exists: it fills
    against the tape's quotes, and one Ctrl+C stops it with a summary, exit 0."""
    run = bot(simulator, tmp_path)
    # " FILL ", not "FILL ...": a sell signal before the first buy is "not
    # followed: nothing to sell", which must not end the wait (see Bot.wait_log).
    out = run.wait_log(" FILL ", timeout=START_S)
    assert re.search(rf"FILL (BUY|SELL) [1-9]\d* {SYNTHETIC[0]} @ ", out)
    assert run.stop(timeout=START_S) == 0
    assert re.search(rf"SUMMARY {SYNTHETIC[0]}: orders sent [1-9]", run.output())


def test_made_up_symbol_days_replay_without_an_account_and_say_synthetic(fake, monkeypatch,
                                                                         tmp_path):
    """The simulator serves made-up symbol-days (the same data for the same symbol
    and day) through the historical routes; a replay of one says SYNTHETIC in its
    report, and its bot trades it."""
    monkeypatch.chdir(tmp_path)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    fake.serve_synthetic()
    assert replay.main(["--symbol", SYNTHETIC[0], "--date", "2026-11-23", "--start", "10:00",
                        "--end", "10:20", "--quiet", "--cache", str(tmp_path / "cache"),
                        "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.txt").read_text()
    assert replay.SYNTHETIC_DATA in report.splitlines()[0]
    assert re.search(rf"SUMMARY {SYNTHETIC[0]}: orders sent [1-9]",
                     (tmp_path / "out" / "bot.log").read_text())
    again = FakeAlpaca()                      # another simulator, the same symbol-day
    again.serve_synthetic()
    for server in (fake, again):
        server._make_up(SYNTHETIC[0], *fake_window(fake))
    assert again.history[SYNTHETIC[0]] == fake.history[SYNTHETIC[0]]


def fake_window(fake: FakeAlpaca) -> tuple[int, int]:
    """The span of the symbol-days `fake` made up so far (ns)."""
    times = [i["t"] for i in fake.history[SYNTHETIC[0]]["quotes"]]
    return min(times), max(times)
