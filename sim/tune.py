"""Tune a knob honestly: pick on the training days, judge on days the pick
never saw.

    python -m sim.tune IMBALANCE_RATIO=1.5,1.8,2.4,3.0 [MIN_PRINT_SIZE=100,300 ...] \\
        --symbol SNAP,MU,AMD --date 2026-10-01..2026-10-31 --test 2026-11-02..2026-11-27 \\
        [--bot PATH] [--by pnl|marked|hit] [--jobs N | --cluster tcp://HOST:8786] [--out DIR]
    python -m sim.tune KNOB=... --symbol ... --date FIRST..LAST --walk-forward N

Each variant is the script (tick_taker.py, or --bot PATH: your fork) with the
named top-level constants set, every combination of the values given (at
most MAX_VARIANTS). Every variant replays every symbol-day of --date (the
training range) as a task of a sweep (sim.replay's machinery: --jobs,
--cluster, the same rows whatever runs them), and a row per variant says
what it did there: orders, fill rate, realized P&L and P&L marked to the mid,
and the hit rate of its signals (the mid moved their way within 1 s). The
pick is the training range's best by --by (realized P&L, marked P&L, or hit
rate), chosen on the training range only. Then every variant, and the script
unmodified, replays --test, and a row each says how they did on days the pick
was not chosen on, with one line: does the pick still beat the original out
of sample? Without --test nothing is checked out of sample, and the output
says so. --walk-forward N (instead of --test) cuts --date's trading days into
consecutive windows of N: each window's pick, chosen on its N days, is judged
on the next N, and the picks' results are chained against the original's.

--out (default tune-report) gets report.txt, summary.csv (a row per variant
and range), test-pnl.png (each variant's P&L over the test range) and each
replay's report, chart, log and journal (VARIANT/train/DAY/SYMBOL,
VARIANT/test/...; VARIANT is v01, v02, ... in the report's order, or
original). The original replays the training range too, as a reference
row: it is never the pick. Downloads are cached as sim.replay's are: a second run
downloads nothing.
"""
from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import itertools
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any, Optional

import tick_taker as tt
from sim import compare, history, replay, sweep
from sim.bot import SCRIPT, load_rules
from sim.compare import Figures, combined, compare_chart, share
from sim.report import table

MAX_VARIANTS = 200
BY = {"pnl": "realized P&L", "marked": "P&L marked to mid", "hit": "hit rate (1 s)"}
ORIGINAL = "original"                # the unmodified script's row in the test table


class TuneError(ValueError):
    """Bad input, said in one line (exit 2)."""


@dataclass(frozen=True)
class Variant:
    """The script with some top-level constants set."""
    label: str                       # "IMBALANCE_RATIO=2.4 MIN_PRINT_SIZE=300", or ORIGINAL
    folder: str                      # its folder under --out: v01, v02, ... or original
    text: str                        # its source


def parse_value(name: str, raw: str, shipped: Any) -> str:
    """`raw` as Python source for `name`, of the shipped constant's type; a
    value the constant cannot take is a TuneError."""
    kind = type(shipped)
    try:
        if kind is bool:
            raise ValueError
        if kind is int:
            return repr(int(raw.replace("_", "")))
        if kind is float:
            return repr(float(raw))
        if kind is Fraction:
            return f'Fraction("{Fraction(raw)}")'
        if kind is Decimal:
            return f'Decimal("{Decimal(raw)}")'
    except (ValueError, ArithmeticError):
        raise TuneError(f"{name}={raw}: not a value {name} can take (it is a "
                        f"{kind.__name__}, shipped as {shipped!r})") from None
    raise TuneError(f"{name} is a {kind.__name__}: only numbers (int, float, Fraction) "
                    "are tuned from the command line; edit it in your fork instead")


def constants(text: str) -> dict[str, tuple[int, int]]:
    """The script's top-level constants (an UPPER_CASE name assigned once, at
    the top level): name -> its first and last line (1-based)."""
    found: dict[str, tuple[int, int]] = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper():
                    found.setdefault(target.id, (node.lineno, node.end_lineno))
    return found


def variants(grid: list[str], script: Path) -> list[Variant]:
    """Every combination of the grid's values, each the script with its
    constants set; checked before anything runs."""
    text = script.read_text()
    where = constants(text)
    rules = load_rules(script)
    axes: list[tuple[str, list[tuple[str, str]]]] = []
    for item in grid:
        name, sep, values = item.partition("=")
        if not sep or not values:
            raise TuneError(f"{item}: write a knob as NAME=VALUE[,VALUE...]")
        if name not in where or not hasattr(rules, name):
            raise TuneError(f"{name}: not a top-level constant of {script}")
        if any(name == n for n, _ in axes):
            raise TuneError(f"{name}: given twice")
        axes.append((name, [(v, parse_value(name, v, getattr(rules, name)))
                            for v in values.split(",")]))
    if not axes:
        raise TuneError("no knob to tune: give NAME=VALUE[,VALUE...]")
    combos = list(itertools.product(*(values for _, values in axes)))
    if len(combos) > MAX_VARIANTS:
        raise TuneError(f"{len(combos)} variants: at most {MAX_VARIANTS} (fewer values a knob)")
    lines = text.splitlines(keepends=True)
    out = []
    for i, combo in enumerate(combos, 1):
        edited = list(lines)
        for (name, _), (_, source) in sorted(zip(axes, combo), key=lambda a: -where[a[0][0]][0]):
            first, last = where[name]
            edited[first - 1:last] = [f"{name} = {source}  # set by sim.tune\n"]
        label = " ".join(f"{name}={raw}" for (name, _), (raw, _) in zip(axes, combo))
        out.append(Variant(label, f"v{i:02d}", "".join(edited)))
    return out


def overlap(train: tuple, test: tuple) -> bool:
    return train[0] <= test[1] and test[0] <= train[1]


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sim.tune", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("grid", nargs="+", metavar="NAME=V1,V2", help="a knob and its values")
    replay.add_data_args(p)
    p.add_argument("--test", type=replay.dates, metavar="FIRST..LAST",
                   help="the out-of-sample range: not overlapping --date")
    p.add_argument("--bot", type=Path, default=SCRIPT, metavar="SCRIPT",
                   help="the script to tune (default: the tick_taker.py beside sim/)")
    p.add_argument("--walk-forward", type=tt.in_range(int, 1, 1000), metavar="N",
                   help="instead of --test: windows of N trading days of --date, each one's "
                   "pick judged on the next N days, the results chained")
    p.add_argument("--by", choices=tuple(BY), default="pnl",
                   help="what the pick maximizes on the training range (default pnl: realized)")
    p.add_argument("--out", type=Path, default=Path("tune-report"),
                   help="folder for the report and each replay (default tune-report)")
    args = p.parse_args(argv)
    if not (args.symbol and args.date):
        p.error("--symbol and --date (the training range) are required")
    if args.data:
        p.error("--data: a tune replays symbol-days (--symbol, --date, --test)")
    replay.check_args(p, args)
    if len(args.latency_ms) > 1:
        p.error("--latency-ms: one latency for a tune")
    if not args.bot.is_file():
        p.error(f"--bot {args.bot}: no such file")
    if args.walk_forward and args.test:
        p.error("--walk-forward makes its own test windows from --date: leave out --test")
    if args.test is not None and None not in args.date + args.test \
            and overlap(args.date, args.test):
        p.error(f"--test {args.test[0]}..{args.test[1]} overlaps --date "
                f"{args.date[0]}..{args.date[1]}: out of sample means days the pick never saw")
    replay.check_quantity(p, args, [args.bot])
    try:
        args.variants = variants(args.grid, args.bot)
    except TuneError as exc:
        p.error(str(exc))
    return args


def score(f: Figures, by: str) -> Fraction:
    if by == "hit":
        return Fraction(f.hits_1s, f.signals) if f.signals else Fraction(-1)
    return f.realized if by == "pnl" else f.marked


def pick(fits: list[Figures], by: str) -> int:
    """The variant best by `by` (the first of equals): the one rule of a pick."""
    return max(range(len(fits)), key=lambda k: score(fits[k], by))


def run_all(args: argparse.Namespace, versions: list[Variant]
            ) -> list[tuple[list[replay.Planned], list[list[tuple[Figures, list]]]]]:
    """Every version over every symbol-day of the training range, then of the
    test range, as tasks of one sweep (sim.replay's machinery: one cluster
    for both): per range, its symbol-days and, for each, every version's
    figures and P&L curve."""
    ranges = [("train", args.date)] + ([("test", args.test)] if args.test else [])
    planned = [[dataclasses.replace(p, parts=(name, *p.parts)) for p in replay.plan(
        argparse.Namespace(**{**vars(args), "date": dates}))] for name, dates in ranges]
    days = [p for each in planned for p in each]
    settings = replay.Settings.of(args, measure=partial(
        compare.measured, points=max(100, compare.CURVE_POINTS // len(days))))
    bot = args.bot
    jobs = [replay.Job(replay.Script(bot.with_name(f"{v.folder}-{bot.name}"), v.text), settings,
                       args.out / v.folder) for v in versions]

    def keep(day: sweep.Day, k: int, ran: replay.Ran) -> tuple:
        replay.write_files(jobs[k].folder(day), ran.files)
        return ran.measured

    kept = sweep.run(replay.replay_day, map(replay.load, days), jobs, len(days), args.jobs,
                     args.cluster, not args.quiet, keep)
    out, first = [], 0
    for each in planned:
        out.append((each, kept[first:first + len(each)]))
        first += len(each)
    return out


def summed(per_day: list[list[tuple[Figures, list]]], k: int,
           which: Optional[list[int]] = None) -> tuple[Figures, list]:
    """Version k's figures summed over the days (all, or those indexed by
    `which`) and its P&L curve over them."""
    chosen = [per_day[i] for i in (range(len(per_day)) if which is None else which)]
    total = Figures()
    for day in chosen:
        total = total.add(day[k][0])
    return total, combined([day[k][1] for day in chosen])


def rows_of(versions: list[Variant], totals: list[tuple[Figures, list]],
            starred: str) -> list[str]:
    """A row per version: what it did over a range; the pick starred."""
    rows = [[("* " if v.label == starred else "  ") + v.label, f"{f.orders:,}",
             share(f.filled, f.orders), tt.signed_dollars(f.realized), tt.signed_dollars(f.marked),
             share(f.hits_1s, f.signals)] for v, (f, _) in zip(versions, totals)]
    return table(["variant", "orders", "filled", "realized P&L", "marked to mid",
                  "hit rate (1 s)"], rows)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    versions = [*args.variants, Variant(ORIGINAL, ORIGINAL, args.bot.read_text())]
    started = time.monotonic()
    with replay.said_plainly("tune") as failed:
        ranges = run_all(args, versions)
        note = replay.data_note([d for each, _ in ranges for d in each])
        lines, csv_rows = (walk_forward(args, versions, *ranges[0]) if args.walk_forward
                           else in_and_out_of_sample(args, versions, ranges, note))
    if failed:
        return failed[0]
    return finish(args, note, lines, csv_rows, sum(len(each) for each, _ in ranges), started,
                  versions)


def in_and_out_of_sample(args: argparse.Namespace, versions: list[Variant], ranges: list,
                         note: str) -> tuple[list[str], list[list]]:
    """The training table and its pick; then the test table (and its chart),
    or a word that nothing was checked out of sample."""
    (days, per_day), tested = ranges[0], ranges[1:]
    train = [summed(per_day, k) for k in range(len(versions))]
    best = pick([f for f, _ in train[:len(args.variants)]], args.by)
    chosen = args.variants[best]
    lines = [f"Training range {span(args.date)}, {len(days)} symbol-day(s): "
             f"the pick (*) is the variant best by {BY[args.by]}",
             *rows_of(versions, train, chosen.label), ""]
    csv_rows = [["train", v.label, *fig_cells(f)] for v, (f, _) in zip(versions, train)]
    if not tested:
        lines.append("nothing was checked out of sample: give --test FIRST..LAST (days "
                     "after --date) to see whether the pick holds on days it never saw")
        return lines, csv_rows
    [(_, test_days)] = tested
    test = [summed(test_days, k) for k in range(len(versions))]
    lines += [f"Test range {span(args.test)} (out of sample: the pick was chosen without "
              "these days)", *rows_of(versions, test, chosen.label), ""]
    csv_rows += [["test", v.label, *fig_cells(f)] for v, (f, _) in zip(versions, test)]
    mine, theirs = test[best][0], test[-1][0]
    beats = score(mine, args.by) > score(theirs, args.by)
    lines.append(f"out of sample, the pick ({chosen.label}) "
                 f"{'beats' if beats else 'does NOT beat'} the original by "
                 f"{BY[args.by]}: {shown(mine, args.by)} against {shown(theirs, args.by)}")
    compare_chart([(v.label, curve) for v, (_, curve) in zip(versions, test)],
                  args.out / "test-pnl.png", "tick-taker tune: each variant's P&L over the "
                  "test range" + (" (SYNTHETIC data)" if note else ""))
    return lines, csv_rows


def finish(args: argparse.Namespace, note: str, lines: list[str], csv_rows: list[list],
           n: int, started: float, versions: list[Variant]) -> int:
    """The report, printed and written, summary.csv, and the pace."""
    text = note + "\n".join(lines)
    print(text)
    (args.out / "report.txt").write_text(text + "\n")
    with open(args.out / "summary.csv", "w", newline="") as f:
        csv.writer(f).writerows([["range", "variant", "orders", "filled", "realized_usd",
                                  "marked_usd", "signals", "hits_1s"], *csv_rows])
    print(f"\n{sweep.pace(n, time.monotonic() - started, args, runs=len(versions))}, "
          f"{len(versions)} versions each ({n * len(versions)} replays); wrote "
          f"{args.out / 'report.txt'}, {args.out / 'summary.csv'}"
          + (f" and {args.out / 'test-pnl.png'}" if args.test else ""))
    return 0


def walk_forward(args: argparse.Namespace, versions: list[Variant], days: list[replay.Planned],
                 per_day: list) -> tuple[list[str], list[list]]:
    """--walk-forward N: the range's trading days in consecutive windows of N,
    each window's pick (by --by, on its N days) judged on the next N days; the
    picks' test results chained, against the original's on the same days."""
    n = args.walk_forward
    dates = sorted({d.day for d in days})
    windows = [(dates[i:i + n], dates[i + n:i + 2 * n]) for i in range(0, len(dates) - n, n)]
    if not windows:
        raise history.HistoryError(f"--walk-forward {n}: {span(args.date)} has {len(dates)} "
                                   f"trading day(s); a window and the next need more than {n}")
    rows, csv_rows, chained, theirs = [], [], Figures(), Figures()
    for train_dates, test_dates in windows:
        train_on, test_on = ([i for i, d in enumerate(days) if d.day in chosen]
                             for chosen in (train_dates, test_dates))
        best = pick([summed(per_day, k, train_on)[0] for k in range(len(args.variants))],
                    args.by)
        mine = summed(per_day, best, test_on)[0]
        original = summed(per_day, len(versions) - 1, test_on)[0]
        chained, theirs = chained.add(mine), theirs.add(original)
        tested = span((test_dates[0], test_dates[-1]))
        rows.append([span((train_dates[0], train_dates[-1])), tested, versions[best].label,
                     shown(mine, args.by), shown(original, args.by)])
        csv_rows += [[f"test {tested}", versions[best].label, *fig_cells(mine)],
                     [f"test {tested}", ORIGINAL, *fig_cells(original)]]
    beats = score(chained, args.by) > score(theirs, args.by)
    return [f"Walk-forward over {span(args.date)}: windows of {n} trading day(s); each "
            f"window's pick, by {BY[args.by]} on its days, is judged on the next {n}",
            *table(["trained on", "tested on", "pick", "pick, tested", "original, tested"],
                   rows), "",
            f"chained over {len(windows)} window(s), the picks "
            f"{'beat' if beats else 'do NOT beat'} the original out of sample: "
            f"{shown(chained, args.by)} against {shown(theirs, args.by)}"], csv_rows


def span(dates: tuple) -> str:
    return str(dates[0]) if dates[0] == dates[1] else f"{dates[0]}..{dates[1]}"


def fig_cells(f: Figures) -> list:
    return [f.orders, f.filled, f"{float(f.realized) / 100:.2f}", f"{float(f.marked) / 100:.2f}",
            f.signals, f.hits_1s]


def shown(f: Figures, by: str) -> str:
    return share(f.hits_1s, f.signals) if by == "hit" else tt.signed_dollars(score(f, by))


if __name__ == "__main__":
    sys.exit(main())
