"""Replay market data through the unmodified bot, against the simulated
Alpaca, and report what the rules found and what the bot did.

    python -m sim.replay                                   # the bundled MSFT hour, offline
    python -m sim.replay --symbol SNAP --date yesterday    # Alpaca's history: download, replay
    python -m sim.replay --symbol SNAP,MU --date 2026-11-17..2026-11-27 --feed iex
    python -m sim.replay --data my-day.csv.gz              # a tape file (sim/data/README.md)
    python -m sim.replay --bot ../my-fork/tick_taker.py    # any copy of the bot, unmodified

Data: with no arguments, one real hour of MSFT (sim/data); with --symbol
and --date, Alpaca's historical quotes and trades (sim/history.py: the
bot's keys, pages of 10,000, cached, so a second run downloads nothing);
with --data, any tape file.

Sweeps: several symbols or days replay as symbol-days (--together: each
day's symbols through one bot), each with a fresh simulated Alpaca and bot,
--jobs of them at once on Dask (sim/sweep.py), and print a row each and a
total; the rows do not depend on --jobs or --cluster.

Fill assumptions (the simulated Alpaca's, in plain words): an order is
matched when it arrives, against the replayed book as it stood at the print
that triggered it, plus --latency-ms of market time; a buy limit at or above
the ask fills at the ask, up to the ask size (a sell at the bid, up to the
bid size); whatever is left is cancelled at once (the bot's own cancel would
come a moment later; nothing in a replay fills it meanwhile). A market order
(the loss limit, the close) fills at the book as the replay stands when it
arrives. Hidden liquidity and queue position are ignored, and the bot's own
orders never move the replayed book.

Speed: as fast as the bot keeps up. Events go out in frames of up to 1,000;
the replay waits for the bot only before a print that could trigger an
order (until the last one is settled) and every 20 frames, so a day of a
million events plays in seconds. Each run's REST rate limit is lifted
(Alpaca's is per wall-clock minute).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

import tick_taker as tt
from sim import history, sweep
from sim.alpaca import EXPECTED_ORDER_S, FakeAlpaca, FillPolicy
from sim.bot import SCRIPT, Bot, clean_env, load_rules, use_zygote
from sim.report import (JournalRun, Outcome, RuleCounts, analyse, chart, could_trigger, day_row,
                        last_mids, latency_table, range_table, read_journal, report,
                        tape_books)
from sim.tape import Tape, TapeError

DATA = Path(__file__).resolve().parent / "data" / "msft_2012-06-21.csv.gz"
SOURCE = "LOBSTER sample, level 1 rebuilt from messages"


@dataclass
class RunResult:
    outcomes: dict[str, Outcome]          # what the bot did, from its journal
    books: dict[str, Outcome]             # the same, from the simulated Alpaca's books
    bot_output: str
    exit_code: int
    seconds: float
    journal: JournalRun                   # the run as the bot recorded it
    late: int = 0                         # orders the rule called for that the replay had
    missing: int = 0                      # to wait for; of those, the ones that never came


def run(tape: Tape, speed: Optional[float], quantity: int, latency_ms: float,
        out: Path, progress: bool = True, extra: tuple[str, ...] = (),
        bot_script: Path = SCRIPT, feed: str = "sip") -> RunResult:
    """Start the simulated Alpaca and the real bot (`bot_script`: tick_taker.py
    or any copy of it, unmodified), replay the tape, stop the bot with one
    SIGINT; the orders and fills of each symbol. `feed`: where the data came
    from, passed to the bot as its --feed."""
    out.mkdir(parents=True, exist_ok=True)
    symbols = tape.symbols
    rules = load_rules(bot_script)        # the replay waits where *this* bot's rule may act
    fake = FakeAlpaca().start()
    fake.universe.update(symbols)
    # An order is matched the moment it arrives, before Alpaca's reply, and what
    # is left of a limit is cancelled then too: its fills never race its own
    # cancel, and the replay need not wait for the cancel's round trip.
    fake.default_policy = FillPolicy(before_reply=True, ioc=True)
    fake.compress_data = False           # loopback: compressing frames would only cost CPU
    # The simulated Alpaca is not Alpaca's paper endpoint: --live. The hour
    # plays in seconds: the REST rate (per wall-clock minute) is lifted.
    bot = Bot(["--symbol", ",".join(symbols), "--quantity", str(quantity), "--live",
               "--rest-rate", "1000000", "--feed", feed, *extra], clean_env(**fake.env()), out,
              command=[sys.executable, str(Path(bot_script).resolve())])
    fake.watchers.append(bot.why_stuck)
    try:
        # While the bot starts (another process): where it may act.
        triggers = could_trigger(tape, rules) if speed is None else ({}, {})
        for symbol in symbols:
            try:
                fake.wait_ready(symbol, timeout=30)
            except AssertionError:
                raise tt.FatalError(f"the bot {bot_script} did not start; its log:\n"
                                    f"{bot.output()}") from None
        started = time.monotonic()
        # The bot runs on this Python: from 3.12 it sends an order before its
        # handler returns, so two ping round trips see it acted on (sim/alpaca/play.py).
        job = asyncio.run_coroutine_threadsafe(fake.replay(
            tape, speed, latency_ms, triggers, acted_pings=2 if sys.version_info >= (3, 12)
            else 3, room=partial(has_room, rules, quantity)), fake._loop)
        bar = _bar(len(tape.events), progress)
        while not job.done():
            try:
                job.result(timeout=0.5)
            except TimeoutError:
                pass
            if bar is not None:
                bar.update(fake.replay_sent - bar.n)
                held = sum(n if side == "buy" else -n for _, _, side, n, _ in fake.executions)
                bar.set_postfix(orders=len(fake.orders), fills=len(fake.executions), held=held)
        job.result()
        if bar is not None:
            bar.update(fake.replay_sent - bar.n)
            bar.close()
        seconds = time.monotonic() - started
        code = bot.stop(timeout=30)
        books = {s: Outcome([o for o in fake.orders.values() if o["symbol"] == s
                             and o["client_order_id"].startswith(tt.CLIENT_ID_PREFIX)],
                            [(t, side, n, p) for t, sym, side, n, p in fake.executions
                             if sym == s]) for s in symbols}
        # What the bot did: as the bot itself recorded it (the run just ended is
        # the journal's last).
        journal = read_journal(out / tt.DEFAULT_JOURNAL)
        return RunResult(journal.outcomes, books, bot.output(), code, seconds, journal,
                         fake.replay_late_orders, fake.replay_missing_orders)
    finally:
        bot.kill()
        fake.stop()


def has_room(rules: ModuleType, quantity: int, symbol: str, side: str, held: int) -> bool:
    """Has the bot (`rules`: its own module) room for a `side` order holding
    `held` shares of `symbol`, none pending (the replay's orders are done
    before the next print)? Its own Position says."""
    position = rules.Position(quantity)
    position.held = held
    return position.can_buy() if side == "buy" else position.sellable() > 0


def _bar(total: int, progress: bool):
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="ev", unit_scale=True, desc="replaying", leave=False)


@dataclass(frozen=True)
class Script:
    """A bot to replay: any copy of tick_taker.py, carried as text (to a worker
    on another machine, say), named as the user gave it."""
    path: Path
    text: str

    @classmethod
    def of(cls, path: Path) -> "Script":
        return cls(Path(path), Path(path).read_text())

    @property
    def shipped(self) -> bool:
        return self.path.resolve() == SCRIPT


@dataclass(frozen=True)
class Settings:
    """How every replay of a sweep runs."""
    quantity: Optional[int]              # None: each bot's own default (five of its lots)
    speed: Optional[float]
    latency_ms: tuple[float, ...]
    minutes: Optional[float]
    progress: bool = False               # event progress bars: a replay in this process
    # More figures from each run, computed where it ran (sim.compare's): a
    # picklable function (module-level, or a partial of one) of the tape, the
    # RunResult and the rule counts, returning anything picklable.
    measure: Optional[Callable[[Tape, RunResult, dict[str, RuleCounts]], Any]] = None

    @classmethod
    def of(cls, args: argparse.Namespace, progress: bool = False,
           measure: Optional[Callable] = None) -> "Settings":
        return cls(args.quantity, args.speed, tuple(args.latency_ms), args.minutes,
                   progress and not args.quiet, measure)


@dataclass(frozen=True)
class Job:
    """One bot over the days of a sweep: its files go to out/<the day's parts>."""
    bot: Script
    settings: Settings
    out: Path
    code: str = sweep.CODE               # the client's simulator code (checked by a worker)

    def folder(self, day: sweep.Day) -> Path:
        return self.out.joinpath(*day.parts)


@dataclass
class Ran:
    """What one replay of a day sends back from wherever it ran."""
    row: list                            # day_row's figures, then the bot's exit code
    text: str                            # its report
    files: dict[str, bytes]              # report, chart, log, journal: relative path -> bytes
    measured: Any = None                 # Settings.measure's


def replay_day(day: sweep.Day, job: Job) -> Ran:
    """A task of a sweep, on a worker or here: the day's tape through the job's
    bot, in a temporary folder; the figures and the folder's files come back
    (the caller writes them to job.folder(day), which the report names)."""
    sweep.check_code(job.code)
    if sweep.on_a_worker():    # a worker replays day after day: its bots start in a blink,
        use_zygote()           # forked from a process that imported their libraries once
    with tempfile.TemporaryDirectory(prefix="tick-taker-replay-",
                                     dir=os.environ.get(sweep.SCRATCH)) as tmp:
        tmp = Path(tmp)
        tape_path = tmp / day.name
        tape_path.write_bytes(day.data)
        bot = tmp / "bot" / job.bot.path.name
        bot.parent.mkdir()
        bot.write_text(job.bot.text)
        try:
            tape = Tape(tape_path, job.settings.minutes)
        except TapeError as exc:          # name the user's file, not this copy of it
            raise TapeError(str(exc).replace(str(tape_path), day.origin)) from None
        work = tmp / "out"
        row, result, counts, text = replay_tape(tape, day, bot, job, work)
        measure = job.settings.measure
        measured = measure(tape, result, counts) if measure else None
        for journal in work.rglob(tt.DEFAULT_JOURNAL):
            settle(journal)
        files = {p.relative_to(work).as_posix(): p.read_bytes()
                 for p in sorted(work.rglob("*")) if p.is_file()}
    return Ran(row, text, files, measured)


def replay_tape(tape: Tape, day: sweep.Day, bot: Path, job: Job, work: Path
                ) -> tuple[list, RunResult, dict[str, RuleCounts], str]:
    """Replay one tape through `bot` (the job's script, saved at that path),
    writing its report and chart to `work`: its day row, the run, what its
    rules found, and the report's text."""
    settings, shown = job.settings, job.folder(day)
    rules = load_rules(bot)
    counts = analyse(tape, rules)
    quantity = settings.quantity or rules.DEFAULT_QUANTITY
    first, *more = settings.latency_ms
    result = run(tape, settings.speed, quantity, first, work, settings.progress,
                 bot_script=bot, feed=day.feed)
    how = ("as fast as the bot keeps up" if settings.speed is None else
           f"real time x {settings.speed:g}") + (f", order latency {first:g} ms, "
                                                 f"--quantity {quantity}, "
                                                 f"{result.seconds:.1f} s")
    if not job.bot.shipped:
        how += f", bot {job.bot.path}"
    summary = [line.split("INFO", 1)[1].strip() for line in result.bot_output.splitlines()
               if "SUMMARY" in line and "INFO" in line] or ["(no summary: see bot.log)"]
    text = report(tape, counts, result.outcomes, day.source, how, summary, result.exit_code,
                  result.journal.signals)
    if result.late:
        text += ("\n\n" + waited(result.late, result.missing))
    if more:                              # the same data again, a bot run per latency
        runs = [(first, result.outcomes)]
        for ms in more:
            again = run(tape, settings.speed, quantity, ms, work / f"latency-{ms:g}ms",
                        settings.progress, bot_script=bot, feed=day.feed)
            runs.append((ms, again.outcomes))
        text += ("\n\nBy order latency (print to the order reaching the market; the same "
                 "data, a bot run each; the tables above are the first's):\n"
                 + "\n".join(latency_table(last_mids(tape), runs)))
    text += (f"\n\nThis run in the bot's journal: python -m sim.report --journal "
             f"{shown / tt.DEFAULT_JOURNAL} --run {result.journal.run['run_id']}")
    (work / "report.txt").write_text(text + "\n")
    chart(tape_books(tape), result.outcomes, (tape.times[0], tape.times[-1]), work / "chart.png",
          f"tick-taker replay: {day.source}")
    date = dt.datetime.fromtimestamp(tape.times[0] / 1e9, history.ET).date().isoformat()
    row = day_row(date, tape, counts, result.outcomes) + [result.exit_code]
    return row, result, counts, text


def waited(late: int, missing: int) -> str:
    """The report's word on orders the replay had to wait for."""
    return (f"Late orders: the replay waited for {late:,} order(s) the rule called for "
            f"(the bot was slow to send them: the next events waited too)"
            + (f", and {missing:,} never came within {EXPECTED_ORDER_S:g} s (the replay "
               "went on without them)" if missing else "")
            + ": figures from a bot this slow are less faithful (a busy machine? see "
            "bot.log).")


def settle(journal: Path) -> None:
    """The journal in one file, ready to copy: its write-ahead log folded in
    and removed (a read-only reader leaves one behind)."""
    import sqlite3
    db = sqlite3.connect(journal)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()                        # the last connection: SQLite removes -wal and -shm


def write_files(folder: Path, files: dict[str, bytes]) -> None:
    """A replay's files, from wherever it ran, into its folder here (replacing
    an earlier run's; a stale journal's WAL would corrupt the new journal)."""
    for stale in (tt.DEFAULT_JOURNAL + "-wal", tt.DEFAULT_JOURNAL + "-shm"):
        (folder / stale).unlink(missing_ok=True)
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def dates(text: str) -> tuple[Optional[dt.date], Optional[dt.date]]:
    """--date: YYYY-MM-DD, a range FIRST..LAST, or 'yesterday' (the last
    trading day before today)."""
    if text == "yesterday":
        return None, None
    first, _, last = text.partition("..")
    try:
        a = dt.date.fromisoformat(first)
        b = dt.date.fromisoformat(last) if last else a
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected YYYY-MM-DD, FIRST..LAST or yesterday") from None
    if b < a:
        raise argparse.ArgumentTypeError(f"{text!r}: the range ends before it starts")
    return a, b


def clock_time(text: str) -> dt.time:
    try:
        return dt.time.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HH:MM (New York time)") from None


def speed_arg(text: str) -> Optional[float]:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError("must be 'max' or a positive number")
    return value


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: must be a positive number")
    return value


def measured_latency(journal: Path = Path(tt.DEFAULT_JOURNAL)) -> float:
    """The latency the last `tick_taker.py --check` measured (its journal, here):
    the quotes' age (p50) plus an order's round trip, or REST's without one."""
    import sqlite3
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
        row = db.execute("SELECT data_age_p50_ms, order_round_trip_ms, rest_p50_ms FROM checks "
                         "ORDER BY at DESC, rowid DESC LIMIT 1").fetchone()
    except sqlite3.Error:
        row = None
    if row is None or row[0] is None:
        raise argparse.ArgumentTypeError(
            f"measured: no check with quotes in {journal}: run `python tick_taker.py --check` "
            "here while the market is open first")
    age, order, rest = row
    return max(0.0, round(age + (order if order is not None else rest or 0.0), 1))


def latencies(text: str) -> list[float]:
    """--latency-ms: one latency, or several separated by commas (a run each);
    `measured` is the last --check's (see measured_latency)."""
    values = []
    for part in text.split(","):
        if part == "measured":
            values.append(measured_latency())
            continue
        try:
            value = float(part)
        except ValueError:
            value = -1
        if not 0 <= value < float("inf"):
            raise argparse.ArgumentTypeError(
                f"{text!r}: milliseconds, 0 or more, or several separated by commas (0,5,20,50)")
        values.append(value)
    return values


def add_data_args(p: argparse.ArgumentParser) -> None:
    """The flags that choose the data and how it is replayed (shared with sim.compare)."""
    p.add_argument("--symbol", type=tt.symbols, help="symbol(s) to download: SNAP or SNAP,MU")
    p.add_argument("--date", type=dates, metavar="DATE",
                   help="YYYY-MM-DD, FIRST..LAST (every trading day between), or yesterday")
    p.add_argument("--start", type=clock_time, help="New York time (default: the open)")
    p.add_argument("--end", type=clock_time, help="New York time (default: the close)")
    p.add_argument("--feed", choices=("sip", "iex"), default="sip",
                   help="historical feed (default sip; the free plan has no SIP data from "
                   "the last 15 minutes)")
    p.add_argument("--data", type=Path, metavar="FILE", help="replay this tape file instead")
    p.add_argument("--cache", type=Path, metavar="DIR",
                   help="where downloads are kept (default: your cache directory)")
    p.add_argument("--speed", type=speed_arg, default=None,
                   help="'max' (default: as fast as the bot keeps up) or N for real time x N")
    p.add_argument("--minutes", type=positive, help="replay only the first N minutes")
    p.add_argument("--quantity", metavar="N",
                   help="the bot's --quantity (default: the bot's own, five of its lots: "
                   f"{tt.DEFAULT_QUANTITY} for the shipped LOT)")
    p.add_argument("--latency-ms", type=latencies, default=[5.0], metavar="MS[,MS...]",
                   help="order latency in market time before matching (default 5); several "
                   "(0,5,20,50) replay the same data once each and add a row per latency; "
                   "'measured': what the last `tick_taker.py --check` here measured")
    p.add_argument("--together", action="store_true",
                   help="several symbols: replay each day's through one bot, as it trades them "
                   "live (one loss limit over them); default: a symbol-day each")
    sweep.add_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    if args.data and (args.symbol or args.date):
        p.error("--data replays a file: leave out --symbol and --date")
    if bool(args.symbol) != bool(args.date):
        p.error("--symbol and --date go together (or neither: the bundled hour)")
    if (args.start or args.end) and not args.date:
        p.error("--start and --end choose a window of --date")
    if args.start and args.end and args.end <= args.start:
        p.error(f"--end {args.end:%H:%M} is not after --start {args.start:%H:%M}")
    if args.data and not args.data.is_file():
        p.error(f"--data {args.data}: no such file")
    return args


def check_quantity(p: argparse.ArgumentParser, args: argparse.Namespace,
                   scripts: list[Path]) -> None:
    """Each bot to replay loads, and takes --quantity as it would itself: its
    own lots() (a multiple of *its* LOT, in its words). With none given,
    args.quantity stays None: each bot runs with its own default."""
    for script in scripts:
        try:
            rules = load_rules(script)
        except Exception as exc:        # a fork that does not even import: say so plainly
            p.error(f"cannot load {script}: {type(exc).__name__}: {exc}")
        if args.quantity is None:
            continue
        try:
            args.quantity = rules.lots(str(args.quantity))
        except argparse.ArgumentTypeError as exc:
            p.error(f"argument --quantity: {exc}" + ("" if Path(script).resolve() == SCRIPT
                                                      else f" (the LOT of {script})"))


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m sim.replay", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    add_data_args(p)
    p.add_argument("--bot", type=Path, default=SCRIPT, metavar="SCRIPT",
                   help="the bot to replay: any copy of tick_taker.py, run unmodified "
                   "(default: the tick_taker.py beside sim/)")
    p.add_argument("--out", type=Path, default=Path("replay-report"),
                   help="folder for report.txt, chart.png and bot.log; a sweep: a folder in "
                   "it per symbol-day (DAY/SYMBOL), and summary.txt (default replay-report)")
    args = check_args(p, p.parse_args(argv))
    if not args.bot.is_file():
        p.error(f"--bot {args.bot}: no such file")
    check_quantity(p, args, [args.bot])
    return args


@dataclass(frozen=True)
class Planned:
    """A replay the arguments ask for, before its data is fetched."""
    parts: tuple[str, ...]               # its folder under --out
    source: str
    feed: str
    fetch: Callable[[], Path]            # the tape file (downloaded, or from the cache)
    day: Optional[dt.date] = None        # its trading day (history), for sim.tune's windows


def plan(args: argparse.Namespace) -> list[Planned]:
    """Every replay the arguments ask for: the bundled hour, a file, or a
    symbol-day for each symbol (all together with --together) and trading day."""
    if args.data:
        return [Planned((), f"file {args.data.name}", args.feed, lambda: args.data)]
    if not args.symbol:
        return [Planned((), f"MSFT, {SOURCE}", "sip", lambda: DATA)]
    rest = history.connect()
    first, last = args.date
    if first is None:
        first = last = history.last_trading_day(rest)
    days = history.sessions(rest, first, last, args.start, args.end)
    cache = args.cache or history.default_cache()
    groups = [args.symbol] if args.together else [[symbol] for symbol in args.symbol]
    kind = {tuple(g): history.source(rest, g, args.feed) for g in groups}
    return [Planned(((s.day.isoformat(),) if len(days) > 1 else ())
                    + ((symbols[0],) if len(groups) > 1 else ()),
                    f"{kind[tuple(symbols)]}, {s.day} {s.start:%H:%M}-{s.end:%H:%M} ET",
                    args.feed, partial(history.tape_for, rest, symbols, s, args.feed, cache,
                                       not args.quiet), s.day)
            for s in days for symbols in groups]


SYNTHETIC_DATA = history.SYNTHETIC_DATA


def data_note(days: list) -> str:
    """A sweep's first line when any of its data is made up (else nothing)."""
    return (f"{SYNTHETIC_DATA}: these figures say nothing of a real market\n"
            if any(d.source.startswith(SYNTHETIC_DATA) for d in days) else "")


def load(planned: Planned) -> sweep.Day:
    """A planned replay with its data, ready to travel to a worker."""
    path = planned.fetch()
    return sweep.Day(planned.parts, planned.source, planned.feed, str(path), path.read_bytes())


@contextlib.contextmanager
def said_plainly(prog: str):
    """An expected failure (no data, refused keys, a bad tape, a bot that does
    not start) or Ctrl+C, said in one line instead of a traceback; the exit
    code it calls for is appended to the list it gives."""
    failed: list[int] = []
    try:
        yield failed
    except (history.HistoryError, tt.FatalError, TapeError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        failed.append(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        failed.append(130)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    rows = []
    with said_plainly("replay") as failed:
        days = plan(args)
        here = len(days) == 1 and not args.cluster      # in this process: events' progress
        job = Job(Script.of(args.bot), Settings.of(args, progress=here), args.out)

        def keep(day: sweep.Day, _: int, ran: Ran) -> list:
            write_files(job.folder(day), ran.files)
            if len(days) == 1:                            # one replay: its report
                folder = job.folder(day)
                print(ran.text)
                print(f"\nwrote {folder / 'report.txt'}, {folder / 'chart.png'} and "
                      f"{folder / 'bot.log'}\n")
            return ran.row

        started = time.monotonic()
        rows = [runs[0] for runs in sweep.run(replay_day, map(load, days), [job], len(days),
                                              args.jobs, args.cluster, not args.quiet, keep)]
    if failed:
        return failed[0]
    if len(rows) > 1:
        text = data_note(days) + range_table([r[:-1] for r in rows])
        print(text)
        (args.out / "summary.txt").write_text(text + "\n")
        print(f"\n{sweep.pace(len(rows), time.monotonic() - started, args)}; each one's "
              f"report, chart, log and journal under {args.out}/ (wrote "
              f"{args.out / 'summary.txt'})")
    return 0 if all(r[-1] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
