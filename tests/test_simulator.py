"""The simulated Alpaca run by hand (`python -m sim.alpaca`), as the README shows
it: it plays a tape as live market data, so `--check --order` passes against it
and the bot trades on screen; and it serves made-up symbol-days through the
historical routes, so a sweep needs no account, and says SYNTHETIC."""
from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sim import replay
from sim.alpaca import FakeAlpaca
from sim.alpaca.history import SYNTHETIC
from sim.bot import ROOT, SCRIPT

START_S = 30                       # for a process to start and say what it must, at most


class Output:
    """A child's output, read as it comes with a deadline (never a hang)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.lines, self.rest = proc, [], b""
        self.selector = selectors.DefaultSelector()
        self.selector.register(proc.stdout, selectors.EVENT_READ)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def until(self, pattern: str, timeout: float = START_S) -> re.Match:
        """The first line (read so far or next) that matches `pattern`."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for line in self.lines[seen:]:
                if (m := re.search(pattern, line)):
                    return m
            seen = len(self.lines)
            left = deadline - time.monotonic()
            assert left > 0, f"no line matching {pattern!r} within {timeout:g} s:\n" + \
                "".join(self.lines[-30:])
            if self.selector.select(left):
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"exited ({self.proc.wait()}) before {pattern!r}:\n" + \
                    "".join(self.lines[-30:])
                *done, self.rest = (self.rest + chunk).split(b"\n")
                self.lines += [line.decode() + "\n" for line in done]


@pytest.fixture
def simulator(tmp_path):
    """`python -m sim.alpaca --synthetic --speed 20`, and the variables it says
    to export."""
    proc = subprocess.Popen([sys.executable, "-m", "sim.alpaca", "--port", "0", "--synthetic",
                             "--speed", "20"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out = Output(proc)
        out.until(r"^playing ")
        env = dict(re.findall(r"^\s+export (\w+)=(\S+)$", out.text, re.M))
        assert set(env) >= {"APCA_API_KEY_ID", "APCA_API_BASE_URL", "APCA_API_DATA_URL"}
        yield env
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def bot(simulator: dict, cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), "--symbol", SYNTHETIC[0], "--live",
                             *args], cwd=cwd, env={**os.environ, **simulator},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_check_and_its_order_pass_against_the_simulator_playing_a_tape(simulator, tmp_path):
    """`python -m sim.alpaca --synthetic` plays a made-up tape as live market data:
    `--check --order` passes against it (quotes arrive, the far limit rests and is
    cancelled), exit 0."""
    check = bot(simulator, tmp_path, "--check", "--order")
    out = Output(check)
    out.until(r"CHECK: all passed")
    assert check.wait(timeout=START_S) == 0
    assert "CHECK FAIL" not in out.text
    assert re.search(r"CHECK ok +order: .* placed .* then cancelled", out.text)


def test_the_bot_trades_live_against_the_simulator_and_stops_cleanly(simulator, tmp_path):
    """A newcomer can watch the bot trade live before any account exists: it fills
    against the tape's quotes, and one Ctrl+C stops it with a summary, exit 0."""
    run = bot(simulator, tmp_path)
    out = Output(run)
    fill = out.until(rf"FILL (BUY|SELL) (\d+) {SYNTHETIC[0]} @ ")
    assert int(fill[2]) > 0
    run.send_signal(signal.SIGINT)
    out.until(rf"SUMMARY {SYNTHETIC[0]}: orders sent [1-9]")
    assert run.wait(timeout=START_S) == 0


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
