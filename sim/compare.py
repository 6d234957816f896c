"""Replay two versions of the bot on the same data and put them side by side.

    python -m sim.compare ORIGINAL.py MINE.py                 # the bundled MSFT hour
    python -m sim.compare ORIGINAL.py MINE.py --symbol SNAP --date yesterday
    python -m sim.compare ORIGINAL.py MINE.py --data my-day.csv.gz --minutes 30
    python -m sim.compare ORIGINAL.py MINE.py --symbol SNAP,MU --date 2026-11-02..2026-11-27

Each script is a copy of tick_taker.py (yours, and the one you forked from:
`git show origin/main:tick_taker.py > /tmp/original.py`), run unmodified
against the simulated Alpaca, exactly as `python -m sim.replay --bot` runs
it, over the same data (the same flags as sim.replay). The table has a row
per figure and a column per version, then the difference (mine - original):
orders, how many got a fill, shares bought and sold, realized P&L and P&L
marked to the last mid (before fees), the signals each version's rule found
and how often the mid then moved their way. One chart draws both runs' P&L
over time. Each version's own report, chart and log are in its folder under
--out. A sweep (several symbols or days; --jobs, --cluster: sim.replay's
flags) runs each version of each symbol-day as a task of its own, and
prints a row per symbol-day (orders and P&L of each, the difference) and
the total side by side.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from functools import partial
from fractions import Fraction
from pathlib import Path
from typing import Optional

import tick_taker as tt
from sim import history, replay, sweep
from sim.report import (RuleCounts, book_marks, last_mids, moved_our_way, pnl, pnl_curve,
                        save_time_chart, table, tape_books)
from sim.tape import Tape

CURVE_POINTS = 20_000      # of each version's P&L curve over the whole sweep, for the chart


@dataclass
class Figures:
    """One version's figures on one tape (or summed over several)."""
    orders: int = 0
    filled: int = 0
    bought: int = 0
    sold: int = 0
    realized: Fraction = Fraction(0)       # cents
    marked: Fraction = Fraction(0)         # cents
    signals: int = 0                       # levels its rule signalled (unlimited room)
    hits_1s: int = 0                       # of which the mid moved their way within 1 s
    hits_10s: int = 0

    def add(self, other: "Figures") -> "Figures":
        return Figures(*(getattr(self, f) + getattr(other, f)
                         for f in self.__dataclass_fields__))


def figures(tape: Tape, result: replay.RunResult, counts: dict[str, RuleCounts]) -> Figures:
    """A run's figures: what the bot did (its journal), what its rule found."""
    f = Figures()
    mids = last_mids(tape)
    for symbol, o in result.outcomes.items():
        f.orders += len(o.orders)
        f.filled += sum(int(order["filled_qty"]) > 0 for order in o.orders)
        f.bought += sum(n for _, side, n, _ in o.executions if side == "buy")
        f.sold += sum(n for _, side, n, _ in o.executions if side == "sell")
        realized, marked, _ = pnl(o.executions, mids.get(symbol, 0))
        f.realized += realized
        f.marked += marked
    for symbol, c in counts.items():
        entries = [(t, side) for side in ("buy", "sell") for t, _ in c.signals[side]]
        f.signals += len(entries)
        f.hits_1s += moved_our_way(tape, symbol, entries, 1)[0]
        f.hits_10s += moved_our_way(tape, symbol, entries, 10)[0]
    return f


def measured(tape: Tape, result: replay.RunResult, counts: dict[str, RuleCounts],
             points: int = CURVE_POINTS) -> tuple[Figures, list[tuple[int, float]]]:
    """What a comparison needs of each run, computed where the run ran: its
    figures and its P&L curve (at most about `points` points: a sweep's
    share of CURVE_POINTS, so that a long sweep's curves fit in memory)."""
    curve = pnl_curve(book_marks(tape_books(tape)), result.outcomes)
    step = max(1, len(curve) // points)
    return figures(tape, result, counts), curve[::step] + curve[-1:]


def combined(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """Several runs' P&L curves as one: each run's changes, in time order, added
    up (symbols of one day add; a later day carries the earlier days' P&L)."""
    changes = sorted((t, v - before) for curve in curves
                     for (t, v), before in zip(curve, [0.0] + [v for _, v in curve]))
    total, points = 0.0, []
    for t, change in changes:
        total += change
        points.append((t, total))
    return points


def share(n: int, of: int) -> str:
    return f"{100 * n / of:.0f}%" if of else "-"


def points(hits_a: int, n_a: int, hits_b: int, n_b: int) -> str:
    """The change of a hit rate, in percentage points."""
    if (hits_a, n_a) == (hits_b, n_b):
        return "same"
    if not (n_a and n_b):
        return "-"
    return f"{100 * (hits_b / n_b - hits_a / n_a):+.1f} pts"


def side_by_side(names: tuple[str, str], a: Figures, b: Figures) -> list[str]:
    """The comparison table: a row per figure, the two versions, the difference."""
    def diff(x, y, money: bool = False) -> str:
        if x == y:
            return "same"
        return tt.signed_dollars(y - x) if money else f"{y - x:+,}"

    rows = [
        ["orders", f"{a.orders:,}", f"{b.orders:,}", diff(a.orders, b.orders)],
        ["filled (orders with a fill)", f"{a.filled:,} ({share(a.filled, a.orders)})",
         f"{b.filled:,} ({share(b.filled, b.orders)})", diff(a.filled, b.filled)],
        ["shares bought", f"{a.bought:,}", f"{b.bought:,}", diff(a.bought, b.bought)],
        ["shares sold", f"{a.sold:,}", f"{b.sold:,}", diff(a.sold, b.sold)],
        ["realized P&L", tt.signed_dollars(a.realized), tt.signed_dollars(b.realized),
         diff(a.realized, b.realized, money=True)],
        ["P&L marked to mid", tt.signed_dollars(a.marked), tt.signed_dollars(b.marked),
         diff(a.marked, b.marked, money=True)],
        ["levels signalled (its rule)", f"{a.signals:,}", f"{b.signals:,}",
         diff(a.signals, b.signals)],
        ["mid their way within 1 s", share(a.hits_1s, a.signals), share(b.hits_1s, b.signals),
         points(a.hits_1s, a.signals, b.hits_1s, b.signals)],
        ["mid their way within 10 s", share(a.hits_10s, a.signals),
         share(b.hits_10s, b.signals), points(a.hits_10s, a.signals, b.hits_10s, b.signals)],
    ]
    return table(["", *names, "mine - original"], rows)


def compare_chart(curves: list[tuple[str, list[tuple[int, float]]]], path: Path,
                  title: str) -> None:
    """Each version's P&L (marked to the mid) over time, on one chart."""
    import datetime as dt

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4))
    for i, (name, points) in enumerate(curves):     # C0, C1: tab:blue, tab:orange, ...
        if points:
            ts = [dt.datetime.fromtimestamp(t / 1e9, history.ET).replace(tzinfo=None)
                  for t, _ in points]
            ax.step(ts, [p for _, p in points], where="post", color=f"C{i % 10}", label=name,
                    lw=2.2 if i == 0 else 1.2, ls="-" if i == 0 else "--")   # equal: both seen
    ax.set_ylabel("P&L ($, marked to mid)")
    ax.legend(loc="upper left")
    ax.set_title(title)
    save_time_chart(fig, ax, path)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sim.compare",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("original", type=Path, help="the version to compare against")
    p.add_argument("mine", type=Path, help="your version")
    replay.add_data_args(p)
    p.add_argument("--out", type=Path, default=Path("compare-report"),
                   help="folder for the comparison and each version's replay "
                   "(default compare-report)")
    args = replay.check_args(p, p.parse_args(argv))
    if len(args.latency_ms) > 1:
        p.error("--latency-ms: one latency for a comparison (sim.replay takes several)")
    for script in (args.original, args.mine):
        if not script.is_file():
            p.error(f"{script}: no such file")
    replay.check_quantity(p, args, [args.original, args.mine])
    return args


@dataclass
class Replayed:
    """One version's replay of one symbol-day, as the comparison keeps it."""
    day: sweep.Day                         # (without its data)
    row: list                              # sim.report.day_row's, then the exit code
    figures: Figures
    curve: list[tuple[int, float]]         # P&L over time, in dollars


def by_day(names: tuple[str, str], days: list[tuple[str, Figures, Figures]]) -> list[str]:
    """A sweep's comparison, a row per symbol-day: orders and P&L (marked to the
    mid) of each version, and the P&L's difference."""
    rows = [[label, f"{a.orders:,}", f"{b.orders:,}", tt.signed_dollars(a.marked),
             tt.signed_dollars(b.marked),
             "same" if a.marked == b.marked else tt.signed_dollars(b.marked - a.marked)]
            for label, a, b in days]
    return table(["day", f"orders: {names[0]}", names[1], f"P&L: {names[0]}", names[1],
                  "mine - original"], rows)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    names = (str(args.original), str(args.mine))
    kept = []
    with replay.said_plainly("compare") as failed:
        days = replay.plan(args)
        settings = replay.Settings.of(args, measure=partial(
            measured, points=max(100, CURVE_POINTS // len(days))))
        jobs = [replay.Job(replay.Script.of(path), settings, args.out / f"{i}-{path.stem}")
                for i, path in enumerate((args.original, args.mine), 1)]

        def keep(day: sweep.Day, k: int, ran: replay.Ran) -> Replayed:
            replay.write_files(jobs[k].folder(day), ran.files)
            return Replayed(day, ran.row, *ran.measured)

        started = time.monotonic()
        kept = sweep.run(replay.replay_day, map(replay.load, days), jobs, len(days), args.jobs,
                         args.cluster, not args.quiet, keep)
    if failed:
        return failed[0]
    totals = [Figures(), Figures()]
    for pair in kept:
        for k, version in enumerate(pair):
            totals[k] = totals[k].add(version.figures)
    if len(kept) == 1:
        [(a, b)] = kept
        lines = [f"{a.day.source}: {a.row[2]:,} events", *side_by_side(names, a.figures,
                                                                      b.figures), ""]
    else:
        lines = [*by_day(names, [(f"{a.row[0]} {a.row[1]}", a.figures, b.figures)
                                 for a, b in kept]), "",
                 "total", *side_by_side(names, *totals), "",
                 sweep.pace(len(kept), time.monotonic() - started, args, runs=2), ""]
    if (note := replay.data_note(days)):
        lines.insert(0, note.rstrip("\n"))
    same = totals[0] == totals[1]
    lines.append("no differences" if same else "the versions differ (above)")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.txt").write_text(text + "\n")
    curves = [combined([pair[k].curve for pair in kept]) for k in (0, 1)]
    compare_chart(list(zip(names, curves)), args.out / "pnl.png",
                  "tick-taker: P&L over time, two versions on the same data"
                  + (" (SYNTHETIC data)" if replay.data_note(days) else ""))
    print(f"\nwrote {args.out / 'compare.txt'} and {args.out / 'pnl.png'}; each version's "
          f"report, chart and log in {jobs[0].out} and {jobs[1].out}")
    return 0 if all(version.row[-1] == 0 for pair in kept for version in pair) else 1


if __name__ == "__main__":
    sys.exit(main())
