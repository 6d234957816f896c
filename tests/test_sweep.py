"""Sweeps (docs/replay.md, "Sweeps: many symbols and days"): symbol-days replayed at
once, on a local Dask cluster or a running one, each with its own simulated
Alpaca and its own bot, give exactly the rows of one at a time."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import tick_taker as tt
from sim import compare, history, replay, sweep
from sim.alpaca.history import SYNTHETIC_NAME
from sim.bot import ROOT, SCRIPT
from sim.report import analyse
from sim.tape import Tape, synthetic_day
from tests.test_replay import fork

# A sweep starts Dask's workers and a bot per symbol-day: on a busy 2-core
# machine it may take minutes, which is not a hang. Only the first test runs
# two local workers (the rest need a sweep, not its parallelism: one worker,
# a process of imports fewer).
pytestmark = pytest.mark.timeout(300)

DAYS = ("2026-11-23", "2026-11-24")          # a Monday and a Tuesday
SYMBOLS = ("AAA", "BBB")
# Small symbol-days (the sweep, not the day, is tested), the first day the
# longest: run at once, the second finishes first, and the rows must still
# come in the days' order.
EVENTS = (8_000, 2_000)
START_S = 30                                 # for a scheduler and its workers to start


@pytest.fixture
def alpaca(fake, monkeypatch, tmp_path):
    """The fake serving two synthetic days of two symbols as Alpaca's history,
    with the keys in the environment (the sweep downloads here, as a user's would)."""
    monkeypatch.chdir(tmp_path)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    for i, day in enumerate(DAYS):
        for j, symbol in enumerate(SYMBOLS):
            path = tmp_path / f"{symbol}-{day}.csv"
            synthetic_day(path, EVENTS[i], symbol=symbol, seed=10 * i + j,
                          day=dt.date.fromisoformat(day))
            fake.load_history(Tape(path))
    return fake


@pytest.fixture
def cluster(tmp_path):
    """A Dask scheduler and a single-threaded worker on 127.0.0.1, started as
    docs/replay.md says (python -m dask, from the clone); its address."""
    file = tmp_path / "scheduler.json"
    # Each in a session of its own: stopped at the end with its workers, at once.
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--dashboard-address", "127.0.0.1:0",
                               "--scheduler-file", str(file)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, start_new_session=True,
                              stderr=open(tmp_path / "scheduler.log", "wb"))]
    try:
        deadline = time.monotonic() + START_S
        while not file.exists():
            assert procs[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        time.sleep(0.1)                       # (written in one go, but not atomically)
        address = json.loads(file.read_text())["address"]
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", address,
                                       "--nworkers", "1", "--nthreads", "1", "--host",
                                       "127.0.0.1", "--dashboard-address", "127.0.0.1:0"],
                                      cwd=ROOT, start_new_session=True,
                                      stdout=subprocess.DEVNULL,
                                      stderr=open(tmp_path / "workers.log", "wb")))
        yield address
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)


def run_sweep(tmp_path: Path, out: str, symbols: tuple[str, ...], *args: str) -> int:
    """sim.replay over both DAYS of `symbols`."""
    return replay.main(["--symbol", ",".join(symbols), "--date", f"{DAYS[0]}..{DAYS[1]}",
                        "--quiet", "--cache", str(tmp_path / "cache"),
                        "--out", str(tmp_path / out), *args])


def did(report: Path) -> str:
    """A report's "What the bot did" (the rest names its run and its seconds)."""
    return report.read_text().split("What the bot did", 1)[1].split("The bot's own", 1)[0]


def test_a_sweep_gives_the_same_rows_with_one_job_two_and_on_a_cluster(alpaca, cluster,
                                                                       tmp_path, capsys):
    """"Nothing is shared between symbol-days, so the rows and the total are the
    same whatever --jobs, and on a cluster."""
    symbol = SYMBOLS[0]                   # a range of two days: two symbol-days
    assert run_sweep(tmp_path, "one", (symbol,), "--jobs", "1") == 0
    assert "on 1 local worker" in capsys.readouterr().out
    assert run_sweep(tmp_path, "two", (symbol,), "--jobs", "2") == 0
    assert "on 2 local workers" in capsys.readouterr().out
    assert run_sweep(tmp_path, "cluster", (symbol,), "--cluster", cluster) == 0
    assert f"on the cluster at {cluster}" in capsys.readouterr().out
    rows = (tmp_path / "one" / "summary.txt").read_text()
    assert (tmp_path / "two" / "summary.txt").read_text() == rows
    assert (tmp_path / "cluster" / "summary.txt").read_text() == rows
    # A row per day, in order, each the figures of its own data and rule.
    table = [line.split() for line in rows.splitlines()[1:]]
    assert [r[:2] for r in table[:-1]] == [[d, symbol] for d in DAYS]
    assert table[-1][0] == "total"
    for day, _, events, signals, *_ in table[:-1]:
        [cached] = (tmp_path / "cache").glob(f"{symbol}_{day}_*.csv.gz")
        tape = Tape(cached)
        counts = analyse(tape)[symbol]
        assert int(events.replace(",", "")) == len(tape.events)
        assert int(signals) == len(counts.signals["buy"]) + len(counts.signals["sell"])
        for out in ("two", "cluster"):    # each day's own files came back
            assert did(tmp_path / out / day / "report.txt") == \
                did(tmp_path / "one" / day / "report.txt")
            assert (tmp_path / out / day / tt.DEFAULT_JOURNAL).exists()
            assert not list((tmp_path / out / day).glob("*-wal"))


def test_compare_sweeps_every_symbol_day_with_a_row_each_and_a_total(alpaca, tmp_path, capsys):
    """"sim.compare takes the same flags: a row per symbol-day (orders and P&L of
    each version, and the difference), then the total side by side." Made-up data
    (the simulator names its assets SYNTHETIC) is said so on top."""
    mine = fork(tmp_path, "MIN_PRINT_SIZE = 10 ** 9")       # follows no print: no order
    for symbol in SYMBOLS:
        alpaca.assets[symbol] = {"name": SYNTHETIC_NAME}
    assert compare.main([str(SCRIPT), str(mine), "--symbol", ",".join(SYMBOLS), "--date",
                         DAYS[0], "--quiet", "--jobs", "1", "--cache", str(tmp_path / "cache"),
                         "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert out.startswith(replay.SYNTHETIC_DATA)
    rows = re.findall(r"^\s+(\S+ \S+)\s+([\d,]+)\s+([\d,]+)\s+\S+\s+\S+\s+\S+$", out, re.M)
    assert [label for label, _, _ in rows] == [f"{DAYS[0]} {s}" for s in SYMBOLS]
    assert all(theirs == "0" for _, _, theirs in rows)
    total = re.search(r"^total\n.*\n\s+orders\s+([\d,]+)\s+(\d+)", out, re.M)
    assert total.groups() == (f"{sum(int(o.replace(',', '')) for _, o, _ in rows):,}", "0")
    for symbol in SYMBOLS:                # each version's own files, per symbol-day
        for version in ("1-tick_taker", "2-mine"):
            assert (tmp_path / "cmp" / version / symbol / "report.txt").exists()


def test_together_replays_each_days_symbols_through_one_bot(alpaca, tmp_path):
    """"--together replays each day's symbols through one bot, as the bot trades
    them live"."""
    assert run_sweep(tmp_path, "out", SYMBOLS, "--together", "--jobs", "1") == 0
    table = [line.split() for line in
             (tmp_path / "out" / "summary.txt").read_text().splitlines()[1:-1]]
    assert [r[:2] for r in table] == [[d, ",".join(SYMBOLS)] for d in DAYS]
    log = (tmp_path / "out" / DAYS[0] / "bot.log").read_text()
    assert all(f"SUMMARY {s}:" in log for s in SYMBOLS)


def test_a_bad_tape_stops_the_sweep_in_one_line(alpaca, tmp_path, capsys):
    """"The first failure (a bad tape, a bot that does not start) stops the sweep
    and is said in one line."""
    cache = tmp_path / "cache"
    cache.mkdir()
    day = dt.date.fromisoformat(DAYS[0])
    session = history.Session(day, dt.datetime.combine(day, dt.time(9, 30), history.ET),
                              dt.datetime.combine(day, dt.time(16), history.ET))
    for symbol in SYMBOLS:                 # what a disk error might leave in the cache
        path = history.cache_file(cache, [symbol], session, "sip")
        path.write_bytes(b"q,1,AAA,not a price\n")
    assert replay.main(["--symbol", ",".join(SYMBOLS), "--date", DAYS[0], "--quiet", "--jobs",
                        "1", "--cache", str(cache), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert re.search(rf"replay: .*{re.escape(str(cache))}/[AB]{{3}}_{DAYS[0]}", err)


def test_a_worker_at_another_commit_refuses_the_work(tmp_path):
    """"each from a clone of this repository at the same commit (a worker from
    another commit refuses the work, saying so)"."""
    day = replay.load(replay.Planned((), "the bundled hour", "sip", lambda: replay.DATA))
    job = replay.Job(replay.Script.of(SCRIPT), replay.Settings(None, None, (5.0,), 1), tmp_path,
                     code="not-" + sweep.CODE)
    with pytest.raises(tt.FatalError, match="same commit"):
        replay.replay_day(day, job)


def test_a_cluster_address_with_no_scheduler_is_said_plainly(tmp_path, capsys):
    """A --cluster address where no scheduler answers: a clear error, exit code 2."""
    import dask
    import distributed  # noqa: F401 (its defaults in dask's config before the override:
    #                     set() undoes on exit what it found missing, imports included)
    with socket.socket() as s:            # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert replay.main(["--quiet", "--cluster", f"tcp://127.0.0.1:{port}",
                            "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no Dask scheduler answered" in err and "Traceback" not in err


def test_ctrl_c_to_the_sweeps_own_process_leaves_no_bot_and_no_folder(alpaca, tmp_path):
    """"Ctrl+C stops it too, and every bot with it", even sent to the sweep's own
    process alone (not the terminal's whole group): no bot keeps running, and no
    replay folder is left in the temporary directory."""
    # Its temporary folder, short: a local cluster's fork server puts its
    # socket there (sim/sweep.py, start_method).
    scratch = Path(tempfile.mkdtemp(prefix="tt-"))
    log = tmp_path / "sweep.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim.replay", "--symbol", SYMBOLS[0], "--date",
         f"{DAYS[0]}..{DAYS[1]}", "--speed", "1", "--quiet", "--jobs", "1", "--cache",
         str(tmp_path / "cache"), "--out", str(tmp_path / "out")], cwd=ROOT,
        env={**os.environ, "TMPDIR": str(scratch)}, stdout=open(log, "wb"),
        stderr=subprocess.STDOUT, start_new_session=True)        # a group of its own
    try:
        deadline = time.monotonic() + START_S
        while not any("subscribed" in p.read_text() for p in scratch.rglob("bot.log")):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no bot started"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)                          # this process only
        assert proc.wait(timeout=START_S) == 130, log.read_text()
        deadline = time.monotonic() + 10        # its processes end as it does (or soon after)
        while (left := working_in(scratch)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert left == [], f"still running in {scratch}: {left}"
        assert list(scratch.glob("tick-taker-*")) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(scratch, ignore_errors=True)


def working_in(folder: Path) -> list[str]:
    """The command lines of the processes whose working folder is under `folder`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if Path(os.readlink(proc / "cwd")).is_relative_to(folder):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError):
            continue
    return found
