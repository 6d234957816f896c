"""How far the replay is from what really happened: a run the bot traded,
replayed with the same script over the same window, and the two held side
by side, order by order.

    python -m sim.drift                          # the journal's last run that sent an order
    python -m sim.drift --run 1a2b3c4d --journal ~/bot/tick-taker.db
    python -m sim.drift --latency-ms measured    # the last --check's latency, not the run's

The run comes from its journal: symbols, window (its start to its end),
feed, --quantity, loss limit, and the script it ran (the journal keeps a
copy of its text, so an edit since changes nothing here). The window's
quotes and trades are downloaded (cached, as the replay's are) and replayed
through that script against the simulated Alpaca (sim.replay's fill
assumptions) at the run's own latency: the median time from a print to
Alpaca's first word of the order it triggered.

The two runs are matched by symbol, side and triggering print (its price,
and its exchange time within MATCH_MS): signals in both, only live, only
replayed; of the orders of matched signals, filled in both, only live, only
replayed, and how much worse the live fill price was; P&L of each, marked to
the window's last mid; the live latencies against the replay's. Writes
report.txt, drift.png (both P&L curves) and differences.csv (each order
found in one run only, or filled differently) to --out, and the replay's
own log and journal to --out/replay.

What no replay can know: liquidity the quotes do not show (hidden orders
that fill a live order the replay calls unfilled), other traders taking the
level first, the queue ahead of the order.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import functools
import sqlite3
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional

import tick_taker as tt
from sim import history, replay
from sim.compare import compare_chart
from sim.report import (ET, JournalRun, book_marks, last_mids, pnl, pnl_curve, read_journal, table,
                        tape_books)
from sim.tape import Tape, write

MATCH_MS = 1.0          # one print, seen live and in the history: exchange times this close
MS = 1_000_000          # ns


@dataclass
class Run:
    """One run as its journal tells it, with what drift needs beyond the report."""
    journal: JournalRun
    script: str                               # the text it ran
    start_ns: int
    end_ns: int
    fills: dict[str, list[tuple[int, Fraction, int]]]   # client_order_id -> (shares,
    #                                         cents, when the bot saw it: UTC ns), in order
    new_ns: dict[str, int]                    # client_order_id -> Alpaca's first word (UTC ns)

    @property
    def id(self) -> str:
        return self.journal.run["run_id"]

    @property
    def symbols(self) -> list[str]:
        return self.journal.run["symbols"].split(",")

    @functools.cached_property
    def orders(self) -> dict[str, dict]:
        """Its orders by client_order_id."""
        return {o["client_order_id"]: o for out in self.journal.outcomes.values()
                for o in out.orders}


def load_run(path: Path, run_id: Optional[str]) -> Run:
    """The run to replay: `run_id`, or the journal's last run that sent an
    order. Says in one line (FatalError) why a run cannot be replayed."""
    if not path.is_file():
        raise tt.FatalError(f"no journal at {path} (--journal PATH)")
    with _reading(path) as db:
        if run_id is None:
            row = db.execute("SELECT run_id FROM runs r WHERE EXISTS (SELECT 1 FROM orders o "
                             "WHERE o.run_id = r.run_id) ORDER BY started_at DESC, rowid DESC "
                             "LIMIT 1").fetchone()
            if row is None:
                raise tt.FatalError(f"no run in {path} sent an order: nothing to hold a "
                                    "replay against")
            run_id = row[0]
        if not db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
            raise tt.FatalError(f"no run {run_id} in {path}")
        if not db.execute("SELECT 1 FROM orders WHERE run_id = ?", (run_id,)).fetchone():
            raise tt.FatalError(f"run {run_id} sent no orders: nothing to hold a replay against")
    run = read_run(path, run_id)
    if not run.script:
        raise tt.FatalError(
            f"run {run_id} was journaled before tick_taker.py kept a copy of the script it "
            "ran: drift cannot know what to replay (sim.replay replays its window with the "
            "script of today)")
    return run


def read_run(path: Path, run_id: str) -> Run:
    """A run from a journal file, as it is (the live run's, or the replay's)."""
    journal = read_journal(path, run_id)
    run = journal.run
    with _reading(path) as db:
        sha = run.get("script_sha256")          # no such column: a journal from before
        script = sha and db.execute("SELECT text FROM scripts WHERE sha256 = ?",
                                    (sha,)).fetchone()
        new_ns = {e[0]: tt.parse_ns(e[1]) for e in db.execute(
            "SELECT client_order_id, MIN(at) FROM events WHERE run_id = ? AND event = 'new' "
            "GROUP BY client_order_id", (run_id,))}
        last_event = db.execute("SELECT MAX(at) FROM events WHERE run_id = ?",
                                (run_id,)).fetchone()[0]
    fills: dict[str, list[tuple[int, Fraction, int]]] = defaultdict(list)
    for f in journal.fills:
        fills[f["client_order_id"]].append((f["qty"], tt.exact_cents(f["price"]),
                                            tt.parse_ns(f["at"])))
    entries = [run["started_at"], last_event, *(f["at"] for f in journal.fills),
               *(o["sent_at"] for out in journal.outcomes.values() for o in out.orders)]
    end = run["ended_at"] or max(e for e in entries if e)     # killed: its last entry
    return Run(journal, script[0] if script else "", tt.parse_ns(run["started_at"]),
               tt.parse_ns(end), dict(fills), new_ns)


@contextlib.contextmanager
def _reading(path: Path):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        yield db
    except sqlite3.Error as exc:
        raise tt.FatalError(f"cannot read the journal {path}: {exc}") from None
    finally:
        db.close()


# -- the window's market data ------------------------------------------------
def window_tape(run: Run, cache: Path, out: Path, progress: bool) -> tuple[Tape, str]:
    """The quotes and trades of the run's symbols from its start to its end
    (whole minutes downloaded and cached, as sim.replay's; the run's own
    span kept), as a tape file in `out`, and where they came from."""
    start, end = (dt.datetime.fromtimestamp(t / 1e9, ET) for t in (run.start_ns, run.end_ns))
    if start.date() != end.date():
        raise tt.FatalError(f"run {run.id} spans more than one day ({start:%Y-%m-%d} to "
                            f"{end:%Y-%m-%d}): drift replays one trading day")
    minute = dt.timedelta(minutes=1)
    first = start.replace(second=0, microsecond=0)
    last = min(end.replace(second=0, microsecond=0) + minute,
               dt.datetime.combine(end.date(), dt.time(23, 59), ET))
    rest = history.connect()
    feed = run.journal.run["feed"]
    try:
        path = history.tape_for(rest, run.symbols, history.Session(start.date(), first, last),
                                feed, cache, progress)
    except history.RecentSipError:
        raise tt.FatalError(
            f"your Alpaca plan does not permit recent SIP data, and run {run.id} ended at "
            f"{end:%H:%M} ET: run drift again 15 minutes after that") from None
    events = [e for e in Tape(path).events if run.start_ns <= e[1] <= run.end_ns]
    if not events:
        raise tt.FatalError(f"no quotes or trades of {','.join(run.symbols)} from "
                            f"{start:%H:%M:%S} to {end:%H:%M:%S} ET (feed {feed}): nothing "
                            "to replay")
    window = out / "window.csv.gz"
    write(window, events, f"run {run.id}: {','.join(run.symbols)} {start:%Y-%m-%d %H:%M:%S}-"
          f"{end:%H:%M:%S} ET, feed {feed}", gz=True)
    return Tape(window), history.source(rest, run.symbols, feed)


# -- the live run's latency --------------------------------------------------
def latencies_ms(run: Run) -> dict[str, list[float]]:
    """The live run's latencies, over its limit orders (ms): print to sent,
    sent to Alpaca's first word of the order (`new`), sent to its first
    fill, and print to `new` (what the replay's latency stands for)."""
    out: dict[str, list[float]] = {"print -> sent": [], "sent -> new": [],
                                   "sent -> first fill": [], "print -> new": []}
    for coid, order in run.orders.items():
        if order["type"] != "limit":
            continue
        sent, new, printed = tt.parse_ns(order["sent_at"]), run.new_ns.get(coid), \
            order["exchange_ns"]
        if printed:
            out["print -> sent"].append((sent - printed) / MS)
        if new:
            out["sent -> new"].append((new - sent) / MS)
            if printed:
                out["print -> new"].append((new - printed) / MS)
        if coid in run.fills:
            out["sent -> first fill"].append((run.fills[coid][0][2] - sent) / MS)
    return out


def run_latency(run: Run) -> float:
    """The replay's latency for this run: its median print -> `new` (ms)."""
    times = latencies_ms(run)["print -> new"]
    if not times:
        raise tt.FatalError(f"run {run.id}: none of its orders has both a print and Alpaca's "
                            "word to time; pass --latency-ms MS (or measured)")
    return round(max(0.0, statistics.median(times)), 1)


def latency_table(run: Run, assumed_ms: float) -> list[str]:
    rows = [[name, f"{tt.percentile(v, 0.5):,.1f}", f"{tt.percentile(v, 0.95):,.1f}", str(len(v))]
            if v else [name, "-", "-", "0"] for name, v in latencies_ms(run).items()]
    return table(["live (ms)", "p50", "p95", "orders"], rows) + [
        f"  the replay assumed {assumed_ms:g} ms from a print to its order reaching the market"]


# -- matching ------------------------------------------------------------------
@dataclass
class Seen:
    """One run's side of a pair: its signal, its order and what the order got."""
    signal: Optional[dict] = None
    order: Optional[dict] = None
    shares: int = 0
    avg_cents: Optional[Fraction] = None


@dataclass
class Pair:
    """A triggering print (or a market order) as each run saw it."""
    symbol: str
    side: str
    t_ns: int                          # the print's exchange time (a market order: sent)
    print_cents: Optional[int]         # None: an order without a signal (a market order)
    live: Seen
    replay: Seen


def seen(run: Run, signal: Optional[dict], order: Optional[dict] = None) -> Seen:
    if signal is not None and signal["client_order_id"]:
        order = run.orders.get(signal["client_order_id"])
    fills = run.fills.get(order["client_order_id"], []) if order else []
    shares = sum(n for n, _, _ in fills)
    avg = sum(n * p for n, p, _ in fills) / shares if shares else None
    return Seen(signal, order, shares, avg)


def in_step(a: list[dict], b: list[dict], when: str) -> list[tuple[Optional[dict], Optional[dict]]]:
    """Two runs' rows of one symbol, side and price, paired by time (`when`:
    their time field, ns): the same moment within MATCH_MS, else alone."""
    a, b = sorted(a, key=lambda r: r[when]), sorted(b, key=lambda r: r[when])
    out: list[tuple[Optional[dict], Optional[dict]]] = []
    i = j = 0
    while i < len(a) or j < len(b):
        if i < len(a) and j < len(b) and abs(a[i][when] - b[j][when]) <= MATCH_MS * MS:
            out.append((a[i], b[j]))
            i, j = i + 1, j + 1
        elif j >= len(b) or (i < len(a) and a[i][when] < b[j][when]):
            out.append((a[i], None))
            i += 1
        else:
            out.append((None, b[j]))
            j += 1
    return out


def pairs(live: Run, replayed: Run) -> list[Pair]:
    """Every signal of either run, matched by symbol, side and print (price,
    and time within MATCH_MS); then the orders no signal sent (market
    orders: the loss limit, a flatten), matched by symbol and side in turn."""
    runs = (live, replayed)
    groups: dict[tuple, tuple[list, list]] = defaultdict(lambda: ([], []))
    for k, run in enumerate(runs):
        for s in run.journal.signals:
            groups[(s["symbol"], s["side"], s["print_cents"])][k].append(s)
    out = [Pair(symbol, side, (a or b)["exchange_ns"], cents, seen(live, a), seen(replayed, b))
           for (symbol, side, cents), (sa, sb) in groups.items()
           for a, b in in_step(sa, sb, "exchange_ns")]
    alone: dict[tuple, tuple[list, list]] = defaultdict(lambda: ([], []))
    for k, run in enumerate(runs):
        signalled = {s["client_order_id"] for s in run.journal.signals}
        for coid, order in run.orders.items():
            if coid not in signalled:
                alone[(order["symbol"], order["side"])][k].append(order)
    for (symbol, side), (oa, ob) in alone.items():
        for k in range(max(len(oa), len(ob))):
            a, b = (oa[k] if k < len(oa) else None), (ob[k] if k < len(ob) else None)
            # Placed at the live one's time (the replay's own clock is not the market's).
            out.append(Pair(symbol, side, tt.parse_ns(a["sent_at"]) if a else live.end_ns,
                            None, seen(live, None, a), seen(replayed, None, b)))
    return sorted(out, key=lambda p: p.t_ns)


# -- the figures -------------------------------------------------------------------
BOTH, LIVE, REPLAY = 0, 1, 2


@dataclass
class Tally:
    """One symbol's (or the total's) counts: each [in both, only live, only replayed]."""
    signals: list[int] = field(default_factory=lambda: [0, 0, 0])
    orders: list[int] = field(default_factory=lambda: [0, 0, 0])
    filled: list[int] = field(default_factory=lambda: [0, 0, 0])     # of the orders in both
    worse: list[Fraction] = field(default_factory=list)  # filled in both: live's price less
    #                                                     the replay's, a share (+: live worse)
    pnl: list[Fraction] = field(default_factory=lambda: [Fraction(0), Fraction(0)])  # live,
    #                                                     replayed: marked to the last mid

    def add(self, p: Pair) -> None:
        for counts, a, b in ((self.signals, p.live.signal, p.replay.signal),
                             (self.orders, p.live.order, p.replay.order)):
            if a is not None or b is not None:
                counts[BOTH if a is not None and b is not None else LIVE if a is not None
                       else REPLAY] += 1
        if p.live.order is not None and p.replay.order is not None and (
                p.live.shares or p.replay.shares):
            self.filled[BOTH if p.live.shares and p.replay.shares else
                        LIVE if p.live.shares else REPLAY] += 1
            if p.live.avg_cents is not None and p.replay.avg_cents is not None:
                sign = 1 if p.side == "buy" else -1
                self.worse.append(sign * (p.live.avg_cents - p.replay.avg_cents))


def tallies(found: list[Pair], live: Run, replayed: Run, marks: dict[str, float]
            ) -> dict[str, Tally]:
    """A tally per symbol and the total (key "total")."""
    out = {s: Tally() for s in live.symbols}
    for p in found:
        out.setdefault(p.symbol, Tally()).add(p)
    total = Tally()
    for symbol, t in out.items():
        for k, run in enumerate((live, replayed)):
            outcome = run.journal.outcomes.get(symbol)
            t.pnl[k] = pnl(outcome.executions, marks.get(symbol, 0))[1] if outcome else Fraction(0)
        for name in ("signals", "orders", "filled", "pnl"):
            getattr(total, name)[:] = [x + y for x, y in zip(getattr(total, name),
                                                            getattr(t, name))]
        total.worse += t.worse
    out["total"] = total
    return out


def worse_text(worse: list[Fraction]) -> str:
    """The live fill price against the replay's, over the orders filled in both."""
    if not worse:
        return "-"
    differ = [w for w in worse if w]
    if not differ:
        return "same"
    return f"{float(sum(worse) / len(worse)):+.2f}c ({len(differ)} of {len(worse)} differ)"


def tables(t: dict[str, Tally]) -> list[str]:
    rows = t if len(t) > 2 else {k: v for k, v in t.items() if k != "total"}
    three = [[name, *(f"{n:,}" for n in x.signals), *(f"{n:,}" for n in x.orders)]
             for name, x in rows.items()]
    money = [[name, *(f"{n:,}" for n in x.filled), worse_text(x.worse),
              tt.signed_dollars(x.pnl[0]), tt.signed_dollars(x.pnl[1]),
              tt.signed_dollars(x.pnl[0] - x.pnl[1])] for name, x in rows.items()]
    return (["Signals and orders (live: the run's journal; replay: the same window replayed):"]
            + table(["symbol", "signals: both", "only live", "only replay", "orders: both",
                     "only live", "only replay"], three)
            + ["", "Of the orders in both, filled; and P&L (marked to the window's last mid, "
               "before fees):"]
            + table(["symbol", "filled: both", "only live", "only replay",
                     "live price worse by (a share)", "P&L live", "P&L replay",
                     "live - replay"], money))


# -- the files ---------------------------------------------------------------------
CSV_COLUMNS = ["symbol", "side", "print_time_et", "print_cents", "what", "live_order",
               "live_shares", "live_avg_price", "live_why_not", "replay_order", "replay_shares",
               "replay_avg_price", "replay_why_not"]


def difference(p: Pair) -> Optional[str]:
    """What differs about an order between the runs (None: nothing, or no order)."""
    a, b = p.live, p.replay
    if a.order is None and b.order is None:
        return None
    if a.order is None or b.order is None:
        return "order only live" if b.order is None else "order only replay"
    if (a.shares, a.avg_cents) == (b.shares, b.avg_cents):
        return None
    if not (a.shares and b.shares):
        return "filled only live" if a.shares else "filled only replay"
    return "filled differently"


def write_csv(path: Path, found: list[Pair]) -> int:
    """differences.csv: each order found in one run only or filled differently."""
    n = 0
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(CSV_COLUMNS)
        for p in found:
            if (what := difference(p)) is None:
                continue
            n += 1
            when = dt.datetime.fromtimestamp(p.t_ns / 1e9, ET).strftime("%Y-%m-%d %H:%M:%S.%f")
            cells = [p.symbol, p.side, when, "" if p.print_cents is None else p.print_cents, what]
            for s in (p.live, p.replay):
                cells += [s.order["client_order_id"] if s.order else "", s.shares,
                          tt.price_text(s.avg_cents) if s.avg_cents is not None else "",
                          (s.signal or {}).get("why_not") or ""]
            out.writerow(cells)
    return n


def header(live: Run, kind: str, latency: tuple[float, str], tape: Tape,
           seconds: float) -> list[str]:
    run = live.journal.run
    start, end = (dt.datetime.fromtimestamp(t / 1e9, ET) for t in (live.start_ns, live.end_ns))
    return [f"Drift of run {live.id}: {run['symbols']}, {start:%Y-%m-%d %H:%M:%S}-"
            f"{end:%H:%M:%S} ET, feed {run['feed']}, --quantity {run['quantity']}"
            + (f", loss limit -${run['max_loss_cents'] / 100:.2f}" if run["max_loss_cents"]
               else "") + (" (no end recorded: up to its last journal entry)"
                           if not run["ended_at"] else ""),
            f"  replayed: {kind}, {len(tape.events):,} events, its own script (sha256 "
            f"{run['script_sha256'][:12]}), order latency {latency[0]:g} ms ({latency[1]}), "
            f"{seconds:.1f} s", ""]


LIMITS = ("What no replay can know: liquidity the quotes do not show (a hidden order "
          "that filled a live order the replay calls unfilled), other traders taking the "
          "level first, the queue ahead of the order. A print in both runs is matched by "
          f"symbol, side, price and exchange time (within {MATCH_MS:g} ms).")


def drift_report(live: Run, replayed: Run, tape: Tape, kind: str,
                 latency: tuple[float, str], seconds: float) -> tuple[str, list[Pair], dict]:
    """The report's text, the pairs and the tallies."""
    found = pairs(live, replayed)
    t = tallies(found, live, replayed, last_mids(tape))
    lines = header(live, kind, latency, tape, seconds) + tables(t) + [
        "", "Latency (the live run's journal):", *latency_table(live, latency[0]), "", LIMITS]
    return "\n".join(lines), found, t


def curves(live: Run, replayed: Run, tape: Tape) -> list[tuple[str, list]]:
    marks = book_marks(tape_books(tape))
    return [(f"live (run {live.id})", pnl_curve(marks, live.journal.outcomes)),
            ("replay", pnl_curve(marks, replayed.journal.outcomes))]


# -- the command -------------------------------------------------------------------
def latency_arg(text: str) -> str:
    if text in ("run", "measured"):
        return text
    replay.latencies(text)             # a number of milliseconds, or its error
    if "," in text:
        raise argparse.ArgumentTypeError("one latency: run, measured, or milliseconds")
    return text


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sim.drift", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--journal", type=Path, default=Path(tt.DEFAULT_JOURNAL), metavar="PATH",
                   help=f"the live run's journal (default {tt.DEFAULT_JOURNAL}, here)")
    p.add_argument("--run", metavar="RUN_ID",
                   help="the run (its id is in its log; default: the last that sent an order)")
    p.add_argument("--latency-ms", type=latency_arg, default="run", metavar="run|measured|MS",
                   help="the replay's order latency: 'run' (default: the run's median from a "
                   "print to Alpaca's word of its order), 'measured' (the last --check's, "
                   "in this journal) or milliseconds")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="where downloads are kept (default: the replay's)")
    p.add_argument("--out", type=Path, default=Path("drift-report"),
                   help="folder for report.txt, drift.png, differences.csv and the replay's "
                   "files (default drift-report)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def latency_of(args: argparse.Namespace, live: Run) -> tuple[float, str]:
    """The replay's latency (ms) and where it came from."""
    if args.latency_ms == "run":
        return run_latency(live), "the run's median print to Alpaca's word"
    if args.latency_ms == "measured":
        try:
            return replay.measured_latency(args.journal), "the last --check's"
        except argparse.ArgumentTypeError as exc:
            raise tt.FatalError(str(exc)) from None
    return float(args.latency_ms), "--latency-ms"


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    with replay.said_plainly("drift") as failed:
        live = load_run(args.journal, args.run)
        latency = latency_of(args, live)
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
        tape, kind = window_tape(live, args.cache or history.default_cache(), out,
                                 not args.quiet)
        script = out / "script" / "tick_taker.py"       # the text the run ran
        script.parent.mkdir(exist_ok=True)
        script.write_text(live.script)
        run = live.journal.run
        extra = ("--max-loss", f"{run['max_loss_cents'] / 100:.2f}") if run["max_loss_cents"] \
            else ()
        for stale in ("", "-wal", "-shm"):              # an earlier drift's replay
            (out / "replay" / (tt.DEFAULT_JOURNAL + stale)).unlink(missing_ok=True)
        result = replay.run(tape, None, run["quantity"], latency[0], out / "replay",
                            not args.quiet, extra, bot_script=script, feed=run["feed"])
        replayed = read_run(out / "replay" / tt.DEFAULT_JOURNAL, result.journal.run["run_id"])
        text, found, _ = drift_report(live, replayed, tape, kind, latency, result.seconds)
        if result.exit_code:
            text += (f"\n\nThe replayed bot exited with code {result.exit_code}: see "
                     f"{out / 'replay' / 'bot.log'}")
        n = write_csv(out / "differences.csv", found)
        compare_chart(curves(live, replayed, tape), out / "drift.png",
                      f"tick-taker: run {live.id} live and replayed ({run['symbols']})")
        (out / "report.txt").write_text(text + "\n")
        print(text)
        print(f"\nwrote {out / 'report.txt'}, {out / 'drift.png'}, {out / 'differences.csv'} "
              f"({n} order(s) that differ) and the replay's log and journal in {out / 'replay'}")
    return failed[0] if failed else 0


if __name__ == "__main__":
    sys.exit(main())
