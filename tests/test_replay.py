"""The replay of one real hour: the real bot, fed the tape through the fake's
websocket, sees exactly what the rules see (the counts themselves are pinned in
test_contract.py)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import tick_taker as tt
from sim import compare, replay
from sim.alpaca import EXPECTED_ORDER_S
from sim.benchmark import DENSE_MOVE_P, DENSE_PRINT_P
from sim.bot import SCRIPT
from sim.report import analyse
from sim.report import main as report_main
from sim.tape import Tape, synthetic_day
from tests.helpers import LOT


def test_demo_replays_through_the_real_bot_and_writes_report_and_chart(tmp_path):
    """The bot sees every level change of the replayed tape, never holds more than
    --quantity or less than nothing, and its position and realized P&L (kept
    exactly, rounded only when printed) equal the fake's."""
    assert replay.main(["--minutes", "3", "--quantity", str(3 * LOT), "--quiet",
                        "--out", str(tmp_path)]) == 0
    counts = analyse(Tape(replay.DATA, 3))["MSFT"]
    log = (tmp_path / "bot.log").read_text()
    assert f"market MSFT: {counts.level_changes} level changes, {counts.armed_levels} armed" in log
    report = (tmp_path / "report.txt").read_text()
    rules, did = report.split("What the rules find", 1)[1].split("What the bot did", 1)
    row = re.search(r"^\s+MSFT\s+([\d,]+)\s+([\d,]+)\s+(\d+)\s+(\d+)", rules, re.M)
    assert [int(x.replace(",", "")) for x in row.groups()] == [
        counts.level_changes, counts.armed_levels, len(counts.signals["buy"]),
        len(counts.signals["sell"])]
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"
    sent = int(re.search(r"orders sent (\d+),", log)[1])
    assert 0 < sent <= len(counts.signals["buy"]) + len(counts.signals["sell"])
    bot = re.search(r"position ([+-]\d+) shares, realized P&L ([+-]\$\d+\.\d\d)", log)
    fake = re.search(r"^\s+MSFT\s+\d+ \(\d+/\d+\)\s+\S+ \(\d+%\)\s+\d+ / \d+\s+([+-]\d+)\s+"
                     r"([+-]\$\d+\.\d\d)", did, re.M)
    assert bot.groups() == fake.groups()          # position, and P&L to the cent
    held = 0
    for line in log.splitlines():                 # every fill the bot logged, in order
        if m := re.search(r"position ([+-]\d+)\)", line):
            held = int(m[1])
            assert 0 <= held <= 3 * LOT


def busy_day(tmp_path: Path) -> Path:
    """A synthetic session dense in signals, in the bot's own ticks and print
    sizes (so a fork's rule signals on it too): 20,000 events in 4 minutes,
    about 200 signals."""
    path = tmp_path / "busy.csv"
    synthetic_day(path, 20_000, symbol="MSFT", move_p=DENSE_MOVE_P, print_p=DENSE_PRINT_P,
                  hours=4 / 60, tick=tt.TICK_CENTS, min_print=tt.MIN_PRINT_SIZE)
    return path


def test_the_same_replay_gives_the_same_orders_and_fills_every_run(tmp_path):
    """The replay waits after each print the bot may follow until the bot has acted
    on it and its order is done, so every run of the same data gives the same
    orders, fills and P&L (docs/replay.md)."""
    did, data = [], busy_day(tmp_path)
    for run in ("first", "second"):
        assert replay.main(["--quiet", "--data", str(data), "--out", str(tmp_path / run)]) == 0
        report = (tmp_path / run / "report.txt").read_text()
        log = (tmp_path / run / "bot.log").read_text()
        # (which update reported a fill, the order's POST reply or its stream
        # event, is a race of two sockets and no part of the outcome)
        fills = re.findall(r"FILL (BUY|SELL) (\d+) MSFT @ (\d+\.\d\d+) \(\w+; position ([+-]\d+)\)",
                           log)
        did_text = report.split("What the bot did", 1)[1].split("This run in", 1)[0]
        did.append((did_text, re.findall(r"SUMMARY.*", log), fills))
    assert did[0][2] and did[0] == did[1]


def test_replay_log_says_simulator_not_live_and_names_its_journal(tmp_path):
    """On the simulator the bot says so (never LIVE TRADING), takes the data's feed
    (no IEX warning on Nasdaq data), and the report gives the sim.report command
    for the run (README, "See what it would have done")."""
    assert replay.main(["--minutes", "1", "--quiet", "--out", str(tmp_path)]) == 0
    log = (tmp_path / "bot.log").read_text()
    assert "simulated Alpaca" in log and "LIVE TRADING" not in log and "feed iex" not in log
    report = (tmp_path / "report.txt").read_text()
    command = re.search(r"python -m sim\.report --journal (\S+) --run (\w+)", report)
    assert command and Path(command[1]) == tmp_path / "tick-taker.db"
    assert report_main(["--journal", command[1], "--run", command[2]]) == 0
    assert (tmp_path / f"chart-{command[2]}.png").exists()      # beside the journal


def fork(tmp_path: Path, line: str, name: str = "mine.py") -> Path:
    """A copy of tick_taker.py with one constant's line replaced, as a forker would."""
    name_ = line.split("=")[0].strip()
    text, n = re.subn(rf"^{name_} = .*$", line, SCRIPT.read_text(), count=1, flags=re.M)
    assert n == 1
    path = tmp_path / name
    path.write_text(text)
    return path


def test_compare_of_the_script_with_itself_finds_no_differences(tmp_path, capsys):
    """sim.compare ORIGINAL.py MINE.py replays both on the same data: a copy of the
    script compared with the script reports no differences."""
    copy = tmp_path / "original.py"
    copy.write_text(SCRIPT.read_text())
    assert compare.main([str(copy), str(SCRIPT), "--minutes", "1", "--quiet",
                         "--jobs", "1", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "no differences" in out and "the versions differ" not in out
    assert (tmp_path / "cmp" / "pnl.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_shows_a_forks_edit_side_by_side(tmp_path, capsys):
    """A fork whose smallest print no print reaches sends no order: sim.compare shows
    the original's orders against its 0, and the difference."""
    mine = fork(tmp_path, "MIN_PRINT_SIZE = 10 ** 9")
    assert compare.main([str(SCRIPT), str(mine), "--data", str(busy_day(tmp_path)), "--quiet",
                         "--jobs", "1", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    original = replay_orders(tmp_path / "cmp" / "1-tick_taker" / "bot.log")
    assert original > 0 and replay_orders(tmp_path / "cmp" / "2-mine" / "bot.log") == 0
    row = re.search(r"^\s+orders\s+(\d+)\s+(\d+)\s+(\S+)", out, re.M)
    assert row.groups() == (str(original), "0", f"{-original:+,}")
    assert "the versions differ" in out


def test_a_forks_lot_sets_the_replays_quantity_and_its_check(tmp_path, capsys):
    """--quantity defaults to the replayed bot's own (five of its LOT), and a
    --quantity that is not a multiple of its LOT is refused in its own words."""
    lot = 2 * tt.LOT
    mine = fork(tmp_path, f"LOT = {lot}")
    assert replay.main(["--bot", str(mine), "--minutes", "1", "--quiet",
                        "--out", str(tmp_path / "out")]) == 0
    assert f"--quantity {5 * lot}," in (tmp_path / "out" / "report.txt").read_text()
    for tool, args in ((replay.parse_args, ["--bot", str(mine)]),
                       (compare.parse_args, [str(SCRIPT), str(mine)])):
        with pytest.raises(SystemExit) as exit_:
            tool([*args, "--quantity", str(5 * tt.LOT)])
        assert exit_.value.code == 2
        assert f"must be a positive multiple of {lot}" in capsys.readouterr().err


def test_a_bot_too_slow_for_the_replay_is_said_in_the_report(tmp_path):
    """Orders the replay had to wait for (late), and any that never came, are said in
    the report when there are any: a bot that slow makes less faithful figures."""
    slow = tmp_path / "slow.py"                 # its first order leaves 3 s late
    main = '\nif __name__ == "__main__":\n'
    slow.write_text(SCRIPT.read_text().replace(main, f"""
_request = OrderDesk._request


async def _first_post_late(self, method, path, body=None, budgeted=False):
    if method == "POST" and not getattr(OrderDesk, "slept", False):
        OrderDesk.slept = True
        await asyncio.sleep({3 * EXPECTED_ORDER_S})
    return await _request(self, method, path, body, budgeted)


OrderDesk._request = _first_post_late
""" + main, 1))
    assert replay.main(["--bot", str(slow), "--data", str(busy_day(tmp_path)), "--quiet",
                        "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.txt").read_text()
    assert re.search(r"the replay waited for [1-9][\d,]* order\(s\)", report), report
    assert re.search(r"and [1-9][\d,]* never came within", report), report


def replay_orders(log: Path) -> int:
    return int(re.search(r"orders sent (\d+),", log.read_text())[1])


@pytest.mark.parametrize("args, message", [
    (["--minutes", "0"], "--minutes"),
    (["--minutes", "-5"], "--minutes"),
    (["--latency-ms", "-1"], "--latency-ms"),
    (["--symbol", "MU", "--date", "2026-11-27", "--start", "10:00", "--end", "09:30"],
     "is not after --start"),
    (["--data", "no-such-file.csv.gz"], "no such file"),
    (["--bot", "no-such-bot.py"], "no such file"),
    (["--quantity", str(tt.LOT + tt.LOT // 2)], f"must be a positive multiple of {tt.LOT}"),
])
def test_replay_refuses_bad_flags_plainly(args, message, capsys):
    """Bad flags: argparse's message naming the flag, exit 2, before anything runs."""
    with pytest.raises(SystemExit) as exit_:
        replay.parse_args(args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_replay_of_a_malformed_tape_says_so(tmp_path, capsys):
    """A tape that is not in the documented format: a clear error, no traceback."""
    bad = tmp_path / "bad.csv"
    bad.write_text("q,1,MSFT,100000,100100,100\n")
    assert replay.main(["--data", str(bad), "--quiet", "--out", str(tmp_path)]) == 2
    assert "is not a tape event" in capsys.readouterr().err


def test_latency_list_replays_once_per_latency_with_a_row_each(tmp_path, capsys):
    """--latency-ms 0,20: one bot run per latency on the same data and a report row
    for each; the first is the run the report's other tables show (docs/replay.md, "Fill
    assumptions"), and a later order meets a different book."""
    assert replay.main(["--latency-ms", "0,20", "--quiet", "--data", str(busy_day(tmp_path)),
                        "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.txt").read_text()
    rows = re.findall(r"^\s+(\d+) ms\s+(\d+)\s+(\S+ \(\d+%\))\s+(\d+ / \d+)\s+(\S+)\s+(\S+)$",
                      report.split("By order latency", 1)[1], re.M)
    assert [r[0] for r in rows] == ["0", "20"] and rows[0][1:] != rows[1][1:]
    did = re.search(r"^\s+MSFT\s+(\d+) \(\d+/\d+\)\s+(\S+ \(\d+%\))\s+(\d+) / (\d+)\s+[+-]\d+\s+"
                    r"(\S+)\s+(\S+)$", report.split("What the bot did", 1)[1], re.M)
    assert rows[0][1:] == (did[1], did[2], f"{did[3]} / {did[4]}", did[5], did[6])
    assert (tmp_path / "latency-20ms" / "bot.log").exists()
