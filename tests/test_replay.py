"""The replay of one real hour: the rules' counts are pinned, and the real bot,
fed the tape through the fake's websocket, sees exactly what the rules see."""
from __future__ import annotations

import re

from sim import replay
from sim.tape import Tape


def test_rules_find_the_same_counts_in_the_hour_every_run():
    """Level changes, armed levels and signals by side depend on the data and the
    rules alone (STRATEGY.md: levels, arming, decision)."""
    counts = replay.analyse(Tape(replay.DATA))
    assert (counts.level_changes, counts.armed_levels) == (526, 519)
    assert (len(counts.signals["buy"]), len(counts.signals["sell"])) == (214, 195)


def test_demo_replays_through_the_real_bot_and_writes_report_and_chart(tmp_path):
    """The bot sees every level change of the replayed tape, never holds more than
    --quantity or less than nothing, and its position and realized P&L (kept
    exactly, rounded only when printed) equal the fake's."""
    assert replay.main(["--minutes", "3", "--quantity", "300", "--out", str(tmp_path)]) == 0
    tape = Tape(replay.DATA, 3)
    counts = replay.analyse(tape)
    log = (tmp_path / "bot.log").read_text()
    assert f"market MSFT: {counts.level_changes} level changes, {counts.armed_levels} armed" in log
    report = (tmp_path / "report.txt").read_text()
    assert f"level changes          {counts.level_changes}" in report
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"
    sent = int(re.search(r"orders sent (\d+),", log)[1])
    assert 0 < sent <= len(counts.signals["buy"]) + len(counts.signals["sell"])
    bot_position = int(re.search(r"position ([+-]\d+) shares", log)[1])
    fake_position = int(re.search(r"final position\s+([+-]\d+) shares", report)[1])
    assert bot_position == fake_position
    # the bot's realized P&L, exact until printed, equals the fake's fills' to the cent
    bot_realized = re.search(r"realized P&L ([+-]\$\d+\.\d\d)", log)[1]
    assert f"realized P&L           {bot_realized}" in report
    held = 0
    for line in log.splitlines():                 # every fill the bot logged, in order
        if m := re.search(r"position ([+-]\d+)\)", line):
            held = int(m[1])
            assert 0 <= held <= 300
