"""The replay's report and chart.

Two parts, for every symbol of a tape and in total:

- **What the rules find in the data**: level changes, armed levels and
  signals by side, found by the bot's own `Quote` and `follow()` with
  unlimited room to buy and sell, and how often the mid then moved the
  signal's way within 1 s and 10 s. The data and the rules alone decide
  these: every run of the same tape gives the same figures.
- **What the bot did**: its orders and fills at the simulated Alpaca, its
  position and P&L (average cost, exact until printed, as the bot keeps it).

The chart draws each symbol's mid as steps inside its bid/ask band, the
bot's fills, its position, and the run's P&L over time, on a time axis that
shows seconds when the window is short.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional
from zoneinfo import ZoneInfo

import tick_taker as tt
from sim.tape import Tape

ET = ZoneInfo("America/New_York")
HORIZONS_S = (1, 10)
Execution = tuple[int, str, int, int]     # market time (ns), side, shares, price (cents)


@dataclass
class RuleCounts:
    """What the rules find in one symbol's data: identical run to run."""
    level_changes: int = 0
    armed_levels: int = 0
    signals: dict = field(default_factory=lambda: {"buy": [], "sell": []})   # (t, cents)


def print_of(e: tuple, rules: ModuleType = tt) -> Optional[tt.Trade]:
    """A tape trade as the bot sees it, or None for a sub-penny print (which
    is at neither the bid nor the ask, and never reaches the rules)."""
    if e[3] % 100:
        return None
    return rules.Trade(e[3] // 100, e[4], e[1], list(e[5]) if e[5] else None)


def tracker(rules: ModuleType) -> tuple[tt.Quote, tt.Rule, Callable]:
    """A symbol's level tracker and rule, and what each quote is given to, as
    the bot (`rules`: its own module) wires them."""
    quote, rule = rules.Quote(), rules.Rule()
    return quote, rule, rules.feed(quote, rule)


def unlimited_room(rules: ModuleType) -> tt.Position:
    """A position that can always buy and sell."""
    room = rules.Position(10 ** 12)
    room.held = 10 ** 9
    return room


def analyse(tape: Tape, rules: ModuleType = tt) -> dict[str, RuleCounts]:
    """Run the bot's own Quote and follow() (from `rules`: tick_taker, or a
    fork of it) over the tape, one symbol at a time, with unlimited room (a
    position that can always buy and sell): every armed level's first signal
    sends an order and disarms it, so each counts once."""
    state: dict[str, tuple[tt.Quote, tt.Rule, Callable, tt.Position]] = {}
    counts = {s: RuleCounts() for s in tape.symbols}
    for e in tape.events:
        if e[2] not in state:
            state[e[2]] = (*tracker(rules), unlimited_room(rules))
        quote, rule, on_quote, room = state[e[2]]
        if e[0] == "q":
            on_quote(e[3] // 100, e[4] // 100, e[5], e[6], e[1])
        elif (trade := print_of(e, rules)) is not None:
            decision = rules.follow(quote, rule, room, trade, blocked=None,
                                    reserve=lambda: True)
            if decision is not None and decision.intent is not None:
                counts[e[2]].signals[decision.side].append((e[1], decision.intent.limit_cents))
    for symbol, (quote, *_) in state.items():
        counts[symbol].level_changes = quote.level_changes
        counts[symbol].armed_levels = quote.armed_levels
    return counts


def could_trigger(tape: Tape, rules: ModuleType = tt
                  ) -> tuple[dict[int, str], dict[int, tuple[str, int]]]:
    """The events (by index) at which the bot may send an order: (likely,
    with their side; all).

    Likely: the signals the rules find with unlimited room (the first print
    that passes every rule at each armed level). All: every print that passes
    every rule but the position's and the budget's, the level never disarmed
    (so it holds every print the bot may follow: a buy it had no room for
    leaves the level armed for the next print), each with its symbol and
    level (the count of level changes so far), so that the replay can pass
    over the prints of a level the bot has already tried. The replay waits
    for the bot after each of them, and gives it time to order after the
    likely ones."""
    trackers: dict[str, tuple[tuple, tuple]] = {}    # symbol -> (never disarmed, as the bot)
    room = unlimited_room(rules)
    likely: dict[int, str] = {}
    possible: dict[int, tuple[str, int]] = {}
    for i, e in enumerate(tape.events):
        if e[2] not in trackers:
            trackers[e[2]] = (tracker(rules), tracker(rules))
        (quote, rule, on_quote), (first, first_rule, on_first) = trackers[e[2]]
        if e[0] == "q":
            on_quote(e[3] // 100, e[4] // 100, e[5], e[6], e[1])
            on_first(e[3] // 100, e[4] // 100, e[5], e[6], e[1])
        elif ((trade := print_of(e, rules)) is not None
              and rules.decide(quote, rule, room, trade) is not None):
            possible[i] = (e[2], quote.level_changes)
            if (decision := rules.follow(first, first_rule, room, trade, blocked=None,
                                         reserve=lambda: True)) is not None:
                likely[i] = decision.side
    return likely, possible


def moved_our_way(tape: Tape, symbol: str, entries: list[tuple[int, str]],
                  horizon_s: float) -> tuple[int, int]:
    """Of (time, side) entries, how many saw the mid move their way within
    horizon_s (the mid at t + horizon above the mid at t for a buy, below for
    a sell)."""
    hits = 0
    for t, side in entries:
        before = tape.mid_at(symbol, t)
        after = tape.mid_at(symbol, t + int(horizon_s * 1e9))
        if before is not None and after is not None:
            hits += (after > before) if side == "buy" else (after < before)
    return hits, len(entries)


def pnl(executions: list[Execution], mark_cents: float) -> tuple[Fraction, Fraction, int]:
    """Realized and marked-to-market P&L in cents (average cost, exact, as the
    bot keeps it), and the position."""
    held, cost, realized = 0, Fraction(0), Fraction(0)
    for _, side, n, price in executions:
        if side == "buy":
            held, cost = held + n, cost + n * price
        else:
            avg = cost / held if held else Fraction(0)
            realized += n * (price - avg)
            held, cost = held - n, cost - n * avg
    return realized, realized + held * Fraction(mark_cents) - cost, held


@dataclass
class Outcome:
    """What the bot did in one symbol: its orders and the fills they got."""
    orders: list[dict]                    # Alpaca order objects, with the fake's `_market_t`
    executions: list[Execution]


def pct(hits: int, n: int) -> str:
    return f"{hits}/{n} ({100 * hits / n:.0f}%)" if n else "-"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Rows of text in aligned columns (the first left, the rest right)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = [f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths)]
    return ["  " + "  ".join(f.format(c) for f, c in zip(fmt, r)) for r in [header, *rows]]


def rules_table(tape: Tape, counts: dict[str, RuleCounts]) -> list[str]:
    rows, totals = [], [0, 0, 0, 0, [0, 0], [0, 0]]
    for symbol, c in counts.items():
        entries = [(t, side) for side in ("buy", "sell") for t, _ in c.signals[side]]
        ways = [moved_our_way(tape, symbol, entries, h) for h in HORIZONS_S]
        rows.append([symbol, f"{c.level_changes:,}", f"{c.armed_levels:,}",
                     f"{len(c.signals['buy'])}", f"{len(c.signals['sell'])}",
                     *(pct(*w) for w in ways)])
        for i, v in enumerate((c.level_changes, c.armed_levels, len(c.signals["buy"]),
                               len(c.signals["sell"]))):
            totals[i] += v
        for i, w in enumerate(ways):
            totals[4 + i] = [totals[4 + i][0] + w[0], totals[4 + i][1] + w[1]]
    if len(rows) > 1:
        rows.append(["total", f"{totals[0]:,}", f"{totals[1]:,}", str(totals[2]), str(totals[3]),
                     pct(*totals[4]), pct(*totals[5])])
    return table(["symbol", "level changes", "armed", "levels signalled: buy", "sell",
                  "mid their way 1 s", "10 s"], rows)


def last_mids(tape: Tape) -> dict[str, float]:
    """Each symbol's mid at the tape's end (cents): what a position is marked at."""
    return {s: tape.mid_at(s, tape.times[-1]) or 0 for s in tape.symbols}


def bot_table(marks: dict[str, float], outcomes: dict[str, Outcome]) -> list[str]:
    """What the bot did, a row per symbol (and a total): positions marked at
    `marks` (each symbol's last mid, cents)."""
    rows = []
    total_realized = total_marked = Fraction(0)
    n_orders = n_filled = n_exec = bought_all = sold_all = 0
    for symbol, o in outcomes.items():
        buys = sum(n for _, side, n, _ in o.executions if side == "buy")
        sells = sum(n for _, side, n, _ in o.executions if side == "sell")
        filled = sum(int(order["filled_qty"]) > 0 for order in o.orders)
        realized, marked, held = pnl(o.executions, marks.get(symbol, 0))
        rows.append([symbol, f"{len(o.orders)} ({sum(x['side'] == 'buy' for x in o.orders)}/"
                     f"{sum(x['side'] == 'sell' for x in o.orders)})",
                     pct(filled, len(o.orders)), f"{buys} / {sells}", f"{held:+d}",
                     tt.signed_dollars(realized), tt.signed_dollars(marked)])
        total_realized += realized
        total_marked += marked
        n_orders, n_filled = n_orders + len(o.orders), n_filled + filled
        n_exec += len(o.executions)
        bought_all, sold_all = bought_all + buys, sold_all + sells
    if len(rows) > 1:
        rows.append(["total", str(n_orders), pct(n_filled, n_orders),
                     f"{bought_all} / {sold_all}", "", tt.signed_dollars(total_realized),
                     tt.signed_dollars(total_marked)])
    return table(["symbol", "orders (buy/sell)", "filled", "bought / sold", "position",
                  "realized P&L", "marked to mid"], rows)


def latency_table(marks: dict[str, float], runs: list[tuple[float, dict[str, Outcome]]]
                  ) -> list[str]:
    """What the bot did at each order latency, all symbols together: a row each."""
    rows = []
    for ms, outcomes in runs:
        orders = [o for out in outcomes.values() for o in out.orders]
        filled = sum(int(o["filled_qty"]) > 0 for o in orders)
        bought = sum(n for out in outcomes.values() for _, s, n, _ in out.executions
                     if s == "buy")
        sold = sum(n for out in outcomes.values() for _, s, n, _ in out.executions
                   if s == "sell")
        realized = marked = Fraction(0)
        for symbol, out in outcomes.items():
            r, m, _ = pnl(out.executions, marks.get(symbol, 0))
            realized, marked = realized + r, marked + m
        rows.append([f"{ms:g} ms", str(len(orders)), pct(filled, len(orders)),
                     f"{bought} / {sold}", tt.signed_dollars(realized),
                     tt.signed_dollars(marked)])
    return table(["latency", "orders", "filled", "bought / sold", "realized P&L",
                  "marked to mid"], rows)


def clock(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(t_ns / 1e9, ET).strftime("%H:%M:%S")


def window(tape: Tape) -> str:
    day = dt.datetime.fromtimestamp(tape.times[0] / 1e9, ET).date()
    return f"{day} {clock(tape.times[0])}-{clock(tape.times[-1])} ET"


def report(tape: Tape, counts: dict[str, RuleCounts], outcomes: dict[str, Outcome],
           source: str, how: str, bot_summary: list[str], exit_code: int,
           signals: Optional[list[dict]] = None) -> str:
    """The text report of one replayed tape; `signals`: the bot's journal's."""
    lines = [f"Replay of {', '.join(tape.symbols)}, {window(tape)} ({source})",
             f"  {len(tape.events):,} events ({tape.quote_count():,} quotes), {how}", "",
             "What the rules find in the data (identical every run; unlimited room to buy "
             "and sell):", *rules_table(tape, counts),
             "  (a level is signalled once: its first signal, whose order disarms it)", ""]
    if signals is not None:
        lines += ["The bot's own signals (its journal):", *signals_table(signals), ""]
    lines += ["What the bot did (its journal; P&L before fees):",
             *bot_table(last_mids(tape), outcomes), ""]
    lines += ["The bot's own summary:", *(f"  {line}" for line in bot_summary),
              f"Exit code: {exit_code}"]
    return "\n".join(lines)


def day_row(day: str, tape: Tape, counts: dict[str, RuleCounts],
            outcomes: dict[str, Outcome]) -> list:
    """One day's figures for a sweep's summary: day, symbols, events, signals,
    orders, filled orders, realized and marked P&L (cents)."""
    signals = sum(len(c.signals["buy"]) + len(c.signals["sell"]) for c in counts.values())
    orders = [o for out in outcomes.values() for o in out.orders]
    realized = marked = Fraction(0)
    mids = last_mids(tape)
    for symbol, out in outcomes.items():
        r, m, _ = pnl(out.executions, mids.get(symbol, 0))
        realized, marked = realized + r, marked + m
    return [day, ",".join(tape.symbols), len(tape.events), signals, len(orders),
            sum(int(o["filled_qty"]) > 0 for o in orders), realized, marked]


def range_table(rows: list[list]) -> str:
    """A sweep's days (symbol-days), one row each, and a total row."""
    total = ["total", "", *(sum(r[i] for r in rows) for i in range(2, 8))]
    text = [[r[0], r[1], f"{r[2]:,}", str(r[3]), str(r[4]), pct(r[5], r[4]),
             tt.signed_dollars(r[6]), tt.signed_dollars(r[7])] for r in [*rows, total]]
    return "\n".join(table(["day", "symbol", "events", "signals", "orders", "filled",
                            "realized P&L", "marked to mid"], text))


def tape_books(tape: Tape) -> dict[str, tuple[list[int], list[tuple[int, int, int, int]]]]:
    return {s: tape.books(s) for s in tape.symbols}


def book_marks(books: dict[str, tuple[list[int], list]]) -> list[tuple[int, str, Fraction]]:
    """(time, symbol, mid in cents) at each (sampled) quote: what P&L is marked at."""
    marks = []
    for symbol, (times, levels) in books.items():
        step = max(1, len(times) // 20000)
        marks += [(t, symbol, Fraction(b[0] + b[1], 2))
                  for t, b in zip(times[::step], levels[::step])]
    return sorted(marks)


def pnl_curve(marks: list[tuple[int, str, Fraction]],
              outcomes: dict[str, Outcome]) -> list[tuple[int, float]]:
    """The run's P&L over time, all symbols, in dollars: realized (average
    cost) plus what is held marked to its symbol's mid, at each mark. Kept as
    one exact total, changed by each fill and by each mark of a symbol with
    shares held (a mark of a flat symbol changes nothing): a day's marks are
    tens of thousands."""
    fills = sorted((t, s, side, n, p) for s, o in outcomes.items()
                   for t, side, n, p in o.executions)
    state = {s: [0, Fraction(0), Fraction(0), Fraction(0)]       # held, cost, realized, mid
             for s in {*outcomes, *(m[1] for m in marks)}}

    def value(s: str) -> Fraction:
        held, cost, real, mid = state[s]
        return real + held * mid - cost

    total, dollars = Fraction(0), 0.0
    points, i = [], 0
    for t, symbol, mid in marks:
        while i < len(fills) and fills[i][0] <= t:
            _, s, side, n, p = fills[i]
            before = value(s)
            held, cost, real, _ = state[s]
            if side == "buy":
                state[s][0:2] = [held + n, cost + n * p]
            else:
                avg = cost / held if held else Fraction(0)
                state[s][0:3] = [held - n, cost - n * avg, real + n * (p - avg)]
            total += value(s) - before
            dollars = float(total) / 100
            i += 1
        st = state[symbol]
        if st[0] and mid != st[3]:
            total += st[0] * (mid - st[3])
            dollars = float(total) / 100
        st[3] = mid
        points.append((t, dollars))
    return points


def chart(books: dict[str, tuple[list[int], list]], outcomes: dict[str, Outcome],
          span: tuple[int, int], path: Path, title: str) -> None:
    """Each symbol's mid (steps) in its bid/ask band with the bot's fills and
    its position; the run's P&L over time at the bottom. `books`: each
    symbol's quote times and (bid, ask, ...) in cents; `span`: first and last
    time (ns)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Times as matplotlib's dates (days since 1970, New York's wall clock: one
    # offset serves a session), not datetime objects: a day's tens of
    # thousands of points would each be converted.
    offset_s = dt.datetime.fromtimestamp(span[0] / 1e9, ET).utcoffset().total_seconds()

    def when(t: int) -> float:
        return (t / 1e9 + offset_s) / 86400

    symbols = sorted(books)
    ratios = [r for _ in symbols for r in (3, 1)] + [1.2]
    marks = book_marks(books)                            # (t, symbol, mid) for the P&L
    fig, axes = plt.subplots(len(ratios), 1, figsize=(12, 2.2 * len(ratios) + 1), sharex=True,
                             gridspec_kw={"height_ratios": ratios})
    for k, symbol in enumerate(symbols):
        top, low = axes[2 * k], axes[2 * k + 1]
        times, levels = books[symbol]
        step = max(1, len(times) // 20000)
        ts = [when(t) for t in times[::step]]
        bids = [b[0] / 100 for b in levels[::step]]
        asks = [b[1] / 100 for b in levels[::step]]
        mids = [(b + a) / 2 for b, a in zip(bids, asks)]
        top.fill_between(ts, bids, asks, step="post", color="0.85", label="bid/ask")
        top.step(ts, mids, where="post", lw=0.6, color="0.3", label="mid")
        out = outcomes.get(symbol, Outcome([], []))
        for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
            pts = [(when(t), p / 100) for t, s, _, p in out.executions if s == side]
            if pts:
                top.scatter(*zip(*pts), marker=marker, color=color, s=28, zorder=3,
                            label=f"{side} fills")
        top.set_ylabel(f"{symbol} ($)")
        top.legend(loc="upper left", fontsize=8)
        held, steps = 0, [(when(span[0]), 0)]
        for t, side, n, _ in out.executions:
            held += n if side == "buy" else -n
            steps.append((when(t), held))
        steps.append((when(span[1]), held))
        low.step(*zip(*steps), where="post", color="tab:blue")
        low.set_ylabel("position")
    # The run's P&L (all symbols), marked to each symbol's mid, over time.
    points = [(when(t), dollars) for t, dollars in pnl_curve(marks, outcomes)]
    bottom = axes[-1]
    if points:
        bottom.step(*zip(*points), where="post", color="tab:purple")
    bottom.set_ylabel("P&L ($)")
    bottom.xaxis_date()
    axes[0].set_title(title)
    save_time_chart(fig, bottom, path)


def save_time_chart(fig, bottom, path: Path) -> None:
    """A chart's last steps, shared by every chart here: the zero line of its
    bottom (P&L) axes, the time axis in New York time (seconds shown when the
    window is short), the file."""
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    bottom.axhline(0, color="0.6", lw=0.5)
    bottom.set_xlabel("time (New York)")
    locator = mdates.AutoDateLocator()
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- the journal: the same report for any run, live or replayed ------------
@dataclass
class JournalRun:
    """One run, as its journal tells it."""
    run: dict                                 # its `runs` row
    outcomes: dict[str, Outcome]              # orders and fills, per symbol
    signals: list[dict]                       # its `signals` rows
    marks: dict[str, float]                   # each symbol's last mid (cents)
    fills: list[dict]                         # its `fills` rows, in order


def read_journal(path: Path, run_id: Optional[str] = None) -> JournalRun:
    """A run from a journal file: `run_id`, or the last run started."""
    import json
    import sqlite3
    from decimal import Decimal

    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        query = ("SELECT * FROM runs WHERE run_id = ?", (run_id,)) if run_id else (
            "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC LIMIT 1", ())
        run = db.execute(*query).fetchone()
        if run is None:
            raise LookupError(f"no run {run_id} in {path}" if run_id else f"no run in {path}")
        rid = run["run_id"]
        orders = [dict(r) for r in db.execute(
            "SELECT * FROM orders WHERE run_id = ? ORDER BY rowid", (rid,))]
        fills = [dict(r) for r in db.execute(
            "SELECT * FROM fills WHERE run_id = ? ORDER BY rowid", (rid,))]
        signals = [dict(r) for r in db.execute(
            "SELECT * FROM signals WHERE run_id = ? ORDER BY seq", (rid,))]
    finally:
        db.close()
    outcomes = {}
    for symbol in run["symbols"].split(","):
        outcomes[symbol] = Outcome(
            [o for o in orders if o["symbol"] == symbol],
            [(f["exchange_ns"] or tt.parse_ns(f["at"]), f["side"], f["qty"],
              Fraction(Decimal(f["price"])) * 100) for f in fills if f["symbol"] == symbol])
    return JournalRun(dict(run), outcomes, signals, json.loads(run["marks"] or "{}"), fills)


def signals_table(signals: list[dict]) -> list[str]:
    """The bot's own signals: how many, how many sent an order, why the others
    did not, and how often the mid then moved their way."""
    rows = []
    for symbol in sorted({s["symbol"] for s in signals}):
        mine = [s for s in signals if s["symbol"] == symbol]
        sent = [s for s in mine if s["client_order_id"]]
        why: dict[str, int] = {}
        for s in mine:
            if s["why_not"]:
                why[s["why_not"]] = why.get(s["why_not"], 0) + 1
        ways = []
        for key in ("mid_1s_cents", "mid_10s_cents"):
            known = [s for s in mine if s[key] is not None and s["mid_cents"] is not None]
            hits = sum((s[key] > s["mid_cents"]) if s["side"] == "buy" else
                       (s[key] < s["mid_cents"]) for s in known)
            ways.append(pct(hits, len(known)))
        rows.append([symbol, f"{len(mine)} ({sum(s['side'] == 'buy' for s in mine)}/"
                     f"{sum(s['side'] == 'sell' for s in mine)})", str(len(sent)),
                     ", ".join(f"{k}: {v}" for k, v in sorted(why.items())) or "-", *ways])
    return table(["symbol", "signals (buy/sell)", "orders", "not sent, why",
                  "mid their way 1 s", "10 s"], rows) + [
        "  (a signal: a print the rule follows; while no order goes, its level stays armed "
        "and the next print may signal again)"]


def journal_report(jr: JournalRun) -> str:
    run = jr.run
    lines = [f"Run {run['run_id']}: {run['symbols']}, {run['started_at']} to "
             f"{run['ended_at'] or '(no end: still running, or killed)'}, {run['endpoint']}, "
             f"feed {run['feed']}, --quantity {run['quantity']}"
             + (f", loss limit -${run['max_loss_cents'] / 100:.2f}" if run["max_loss_cents"]
                else "") + f", exit code {run['exit_code']}", "",
             "The bot's signals (and the mid after them, exchange time):",
             *signals_table(jr.signals), "",
             "What the bot did (its journal; P&L before fees):",
             *bot_table(jr.marks, jr.outcomes)]
    return "\n".join(lines)


def journal_books(jr: JournalRun) -> dict[str, tuple[list[int], list]]:
    """The levels the bot saw at its signals, for a chart without market data."""
    books = {}
    for symbol in jr.outcomes:
        mine = [s for s in jr.signals if s["symbol"] == symbol and s["level_bid_cents"]]
        books[symbol] = ([s["exchange_ns"] for s in mine],
                         [(s["level_bid_cents"], s["level_ask_cents"], 0, 0) for s in mine])
    return books


def main(argv: Optional[list[str]] = None) -> int:
    import argparse
    import sys
    p = argparse.ArgumentParser(description="The report and chart of any run in a journal.")
    p.add_argument("--journal", type=Path, default=Path(tt.DEFAULT_JOURNAL),
                   help=f"the journal file (default {tt.DEFAULT_JOURNAL}, here)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run", metavar="RUN_ID", help="this run (its id is in the log)")
    which.add_argument("--last", action="store_true", help="the last run started (the default)")
    p.add_argument("--out", type=Path, help="where the chart goes (default: beside the journal)")
    args = p.parse_args(argv)
    if not args.journal.exists():
        print(f"report: no journal at {args.journal}", file=sys.stderr)
        return 2
    try:
        jr = read_journal(args.journal, args.run)
    except LookupError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    print(journal_report(jr))
    times = [s["exchange_ns"] for s in jr.signals] + [
        t for o in jr.outcomes.values() for t, *_ in o.executions]
    if times:
        out = args.out or args.journal.parent
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"chart-{jr.run['run_id']}.png"
        chart(journal_books(jr), jr.outcomes, (min(times), max(times)), path,
              f"tick-taker run {jr.run['run_id']} ({jr.run['symbols']})")
        print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
