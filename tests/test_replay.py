"""The replay of one real hour: the real bot, fed the tape through the fake's
websocket, sees exactly what the rules see (the counts themselves are pinned in
test_contract.py)."""
from __future__ import annotations

import re

from sim import replay
from sim.report import analyse
from sim.tape import Tape


def test_demo_replays_through_the_real_bot_and_writes_report_and_chart(tmp_path):
    """The bot sees every level change of the replayed tape, never holds more than
    --quantity or less than nothing, and its position and realized P&L (kept
    exactly, rounded only when printed) equal the fake's."""
    assert replay.main(["--minutes", "3", "--quantity", "300", "--quiet",
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
            assert 0 <= held <= 300


def test_the_same_replay_gives_the_same_orders_and_fills_every_run(tmp_path):
    """The replay waits after each print the bot may follow until the bot has acted
    on it and its order is done, so every run of the same data gives the same
    orders, fills and P&L (README, "Replay")."""
    did = []
    for run in ("first", "second"):
        assert replay.main(["--quiet", "--out", str(tmp_path / run)]) == 0
        report = (tmp_path / run / "report.txt").read_text()
        log = (tmp_path / run / "bot.log").read_text()
        fills = re.findall(r"FILL (?:BUY|SELL) \d+ MSFT @ \d+\.\d\d.*?position [+-]\d+\)", log)
        did.append((report.split("What the bot did", 1)[1], re.findall(r"SUMMARY.*", log), fills))
    assert did[0][2] and did[0] == did[1]
