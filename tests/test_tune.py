"""sim.tune: a grid of knob values replayed over a training range, the pick
chosen there only, then every variant and the original over a test range the
pick never saw (docs/replay.md, "Tune a knob"). Against the simulator's
made-up symbol-days: no account."""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import re
from fractions import Fraction
from pathlib import Path

import pytest

import tick_taker as tt
from sim import compare, replay, tune
from sim.alpaca.history import SYNTHETIC
from sim.bot import SCRIPT
from sim.compare import Figures

pytestmark = pytest.mark.timeout(300)    # two local clusters and a dozen replays
WINDOW = ["--start", "10:00", "--end", "10:15"]
TRAIN, TEST = "2026-11-23..2026-11-24", "2026-11-25"
DAY = dt.date(2026, 11, 25)
# Two knobs, two values each, from the shipped constants (a fork's knobs too).
GRID = [f"IMBALANCE_RATIO={tt.IMBALANCE_RATIO},{tt.IMBALANCE_RATIO * 2}",
        f"MIN_PRINT_SIZE={tt.MIN_PRINT_SIZE},{2 * tt.MIN_PRINT_SIZE}"]


@pytest.fixture
def alpaca(fake, monkeypatch, tmp_path):
    """The simulator serving made-up symbol-days, the keys in the environment."""
    monkeypatch.chdir(tmp_path)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    fake.serve_synthetic()
    return fake


def run(tmp_path: Path, *args: str) -> int:
    return tune.main([*args, "--quiet", "--jobs", "1", "--cache", str(tmp_path / "cache")])


def test_a_two_knob_grid_picks_the_training_best_and_tests_like_compare(alpaca, tmp_path,
                                                                       capsys):
    """The pick is the training range's best by --by (chosen there only); every
    variant's row over --test is what sim.compare gives for the same variant and days."""
    out = tmp_path / "tune"
    assert run(tmp_path, *GRID, "--symbol", SYNTHETIC[0], "--date", TRAIN, "--test", TEST,
               *WINDOW, "--by", "marked", "--out", str(out)) == 0
    text = capsys.readouterr().out
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    train = [r for r in rows if r["range"] == "train"]
    test = {r["variant"]: r for r in rows if r["range"] == "test"}
    assert len(train) == 5 and set(test) == {r["variant"] for r in train}
    best = max((r for r in train if r["variant"] != tune.ORIGINAL),
               key=lambda r: float(r["marked_usd"]))["variant"]
    assert re.search(rf"^\s+\* {re.escape(best)}\s", text, re.M)      # starred, both tables
    assert f"the pick ({best})" in text
    assert (out / "test-pnl.png").exists() and (out / "report.txt").read_text().strip()
    [pick] = [v for v in tune.variants(GRID, SCRIPT) if v.label == best]
    mine = tmp_path / "pick.py"
    mine.write_text(pick.text)
    assert compare.main([str(SCRIPT), str(mine), "--symbol", SYNTHETIC[0], "--date", TEST,
                         *WINDOW, "--quiet", "--jobs", "1", "--cache", str(tmp_path / "cache"),
                         "--out", str(tmp_path / "cmp")]) == 0
    side = (tmp_path / "cmp" / "compare.txt").read_text()
    orders = re.search(r"^\s+orders\s+(\S+)\s+(\S+)", side, re.M).groups()
    realized = re.search(r"^\s+realized P&L\s+(\S+)\s+(\S+)", side, re.M).groups()
    tested = text.split("Test range", 1)[1]
    for k, name in enumerate((tune.ORIGINAL, best)):
        row = re.search(rf"^\s+[* ] {re.escape(name)}\s+([\d,]+)\s+\S+\s+(\S+)", tested, re.M)
        assert (orders[k], realized[k]) == row.groups()
        assert int(orders[k].replace(",", "")) == int(test[name]["orders"])


def test_without_a_test_range_it_says_nothing_was_checked_out_of_sample():
    """With no --test, it says plainly that nothing was checked out of sample (and
    the pick is still the training range's best)."""
    versions = [tune.Variant(name, name, "") for name in ("A", "B", tune.ORIGINAL)]
    per_day = [[(Figures(orders=1, realized=Fraction(c)), []) for c in (100, 300, 500)]]
    args = argparse.Namespace(by="pnl", variants=versions[:2], date=(DAY, DAY), test=None)
    lines, rows = tune.in_and_out_of_sample(args, versions, [([DAY], per_day)], "")
    assert "nothing was checked out of sample" in lines[-1]
    assert [r[1] for r in rows] == ["A", "B", tune.ORIGINAL]
    assert re.search(r"^\s+\* B\s", "\n".join(lines), re.M)      # not the original's 500


@pytest.mark.parametrize("args, message", [
    ([*GRID, "--test", "2026-11-24..2026-11-26"], "overlaps --date"),
    (["NOT_A_KNOB=1"], "not a top-level constant"),
    (["MIN_PRINT_SIZE=1.5"], "not a value MIN_PRINT_SIZE can take"),
    (["REGULAR_CONDITIONS=@"], "only numbers"),
    ([f"MIN_PRINT_SIZE={','.join(map(str, range(1, 202)))}"], "at most 200"),
    ([*GRID, "--walk-forward", "1", "--test", TEST], "leave out --test"),
])
def test_bad_input_is_said_in_one_line(args, message, capsys):
    """Overlapping ranges, a knob that is not a top-level constant, a value of the
    wrong type, a grid over 200 variants: one line, exit 2, before anything runs."""
    with pytest.raises(SystemExit) as exit:
        tune.main([*args, "--symbol", SYNTHETIC[0], "--date", TRAIN])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_range_with_no_market_days_is_said_in_one_line(alpaca, tmp_path, capsys):
    """A range with no market days: one line, exit 2."""
    assert run(tmp_path, *GRID, "--symbol", SYNTHETIC[0], "--date", "2026-11-28..2026-11-29",
               "--out", str(tmp_path / "t")) == 2
    err = capsys.readouterr().err
    assert "no trading session" in err and len(err.strip().splitlines()) == 1


def test_walk_forward_picks_on_each_window_and_chains_the_next_windows_results(tmp_path):
    """--walk-forward N: each window's pick is chosen on its N days and judged on the
    next N; the picks' test results are chained against the original's."""
    days = [replay.Planned((), "", "sip", lambda: None, dt.date(2026, 11, d))
            for d in (23, 24, 25, 26)]
    # Realized cents per day: variant A wins days 23 and 25, B days 24 and 26.
    cents = {"A": (300, -100, 200, -50), "B": (-100, 400, -300, 100), tune.ORIGINAL: (0, 10, 20, 30)}
    versions = [tune.Variant(name, name, "") for name in cents]
    per_day = [[(Figures(orders=1, realized=Fraction(cents[v.label][i])), [])
                for v in versions] for i in range(len(days))]
    args = argparse.Namespace(walk_forward=1, by="pnl", variants=versions[:2],
                              date=(days[0].day, days[-1].day))
    lines, rows = tune.walk_forward(args, versions, days, per_day)
    picks = [r[1] for r in rows if r[1] != tune.ORIGINAL]
    assert picks == ["A", "B", "A"]          # trained on 23, 24, 25: each day's best
    # ... tested on 24, 25, 26: A on 24 (-$1), B on 25 (-$3), A on 26 (-$0.50)
    assert lines[-1].endswith("-$4.50 against +$0.60")
    assert "do NOT beat" in lines[-1]
