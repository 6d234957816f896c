"""Replay two versions of the bot on the same data and put them side by side.

    python -m sim.compare ORIGINAL.py MINE.py                 # the bundled MSFT hour
    python -m sim.compare ORIGINAL.py MINE.py --symbol SNAP --date yesterday
    python -m sim.compare ORIGINAL.py MINE.py --data my-day.csv.gz --minutes 30

Each script is a copy of tick_taker.py (yours, and the one you forked from:
`git show origin/main:tick_taker.py > /tmp/original.py`), run unmodified
against the simulated Alpaca, exactly as `python -m sim.replay --bot` runs
it, over the same data (the same flags as sim.replay). The table has a row
per figure and a column per version, then the difference (mine - original):
orders, how many got a fill, shares bought and sold, realized P&L and P&L
marked to the last mid (before fees), the signals each version's rule found
and how often the mid then moved their way. One chart draws both runs' P&L
over time. Each version's own report, chart and log are in its folder under
--out.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Optional

import tick_taker as tt
from sim import history, replay
from sim.bot import load_rules
from sim.report import (RuleCounts, book_marks, last_mids, moved_our_way, pnl, pnl_curve,
                        save_time_chart, table, tape_books)
from sim.tape import Tape


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
    """Both versions' P&L (marked to the mid) over time, on one chart."""
    import datetime as dt

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4))
    for (name, points), color in zip(curves, ("tab:blue", "tab:orange")):
        if points:
            ts = [dt.datetime.fromtimestamp(t / 1e9, history.ET).replace(tzinfo=None)
                  for t, _ in points]
            ax.step(ts, [p for _, p in points], where="post", color=color, label=name)
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
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    names = (str(args.original), str(args.mine))
    folders = [args.out / f"{i}-{path.stem}" for i, path in enumerate((args.original, args.mine), 1)]
    try:                                # (loaded again by each replay: cached)
        for path in (args.original, args.mine):
            load_rules(path)
    except Exception as exc:            # a fork that does not even import: say so plainly
        print(f"compare: cannot load a script: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    totals = [Figures(), Figures()]
    curves: list[list[tuple[int, float]]] = [[], []]
    offset = [0.0, 0.0]                 # P&L carried from earlier days of a range
    lines: list[str] = []
    codes = []
    days = 0
    with replay.said_plainly("compare") as failed:
        for tape, source, out, feed in replay.tapes(args):
            day = []
            marks = book_marks(tape_books(tape))
            for k in (0, 1):
                args.bot = (args.original, args.mine)[k]
                sub = folders[k] if out == args.out else folders[k] / out.name
                _, result, counts = replay.replay_tape(tape, source, args, sub, feed,
                                                       quiet=True)
                codes.append(result.exit_code)
                day.append(figures(tape, result, counts))
                points = pnl_curve(marks, result.outcomes)
                curves[k] += [(t, v + offset[k]) for t, v in points]
                offset[k] = curves[k][-1][1] if curves[k] else offset[k]
                totals[k] = totals[k].add(day[k])
            lines += [f"{source}: {len(tape.events):,} events", *side_by_side(names, *day), ""]
            days += 1
    if failed:
        return failed[0]
    if days > 1:                        # several days: the total too
        lines += ["total", *side_by_side(names, *totals), ""]
    same = totals[0] == totals[1]
    lines.append("no differences" if same else "the versions differ (above)")
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare.txt").write_text(text + "\n")
    compare_chart(list(zip(names, curves)), args.out / "pnl.png",
                  "tick-taker: P&L over time, two versions on the same data")
    print(f"\nwrote {args.out / 'compare.txt'} and {args.out / 'pnl.png'}; each version's "
          f"report, chart and log in {folders[0]} and {folders[1]}")
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
