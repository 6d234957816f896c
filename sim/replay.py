"""Replay one real hour of Nasdaq (MSFT, 2012-06-21) through the unmodified bot.

No account, no network: the fake Alpaca streams sim/data/msft_2012-06-21.csv.gz
through its market-data websocket, fills the bot's orders against the replayed
book, and this script prints a report and draws a chart.

    pipenv run python -m sim.replay                  # the hour, as fast as the bot keeps up
    pipenv run python -m sim.replay --speed 60       # real time x 60 (one minute)
    pipenv run python -m sim.replay --minutes 5      # the first five minutes only

Fill assumptions (the fake's, in plain words): an order is matched against the
replayed book as it stands when the order arrives, plus --latency-ms of market
time; a buy limit at or above the ask fills at the ask, up to the ask size (a
sell at the bid, up to the bid size); whatever is left rests until the bot's
cancel. Hidden liquidity and queue position are ignored, and the bot's own
orders never move the replayed book.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional

import tick_taker as tt
from sim.alpaca import FakeAlpaca
from sim.tape import Tape
from sim.bot import Bot, clean_env

DATA = Path(__file__).resolve().parent / "data" / "msft_2012-06-21.csv.gz"
SYMBOL = "MSFT"
SOURCE = "LOBSTER sample, level 1 rebuilt from messages"
HORIZONS_S = (1, 10)
ET = dt.timezone(dt.timedelta(hours=-4))        # 2012-06-21 was EDT


@dataclass
class RuleCounts:
    """What the rules find in the data alone: identical run to run."""
    level_changes: int = 0
    armed_levels: int = 0
    signals: dict = field(default_factory=lambda: {"buy": [], "sell": []})   # (t, cents)


def analyse(tape: Tape, symbol: str = SYMBOL) -> RuleCounts:
    """Run the bot's own Quote and follow() over the tape, with unlimited room
    (a position that can always buy and sell), so every signal counts once."""
    quote, room = tt.Quote(), tt.Position(10 ** 12)
    room.held = 10 ** 9
    counts = RuleCounts()
    for kind, t, sym, *v in tape.events:
        if sym != symbol:
            continue
        if kind == "q":
            quote.on_quote(v[0] // 100, v[1] // 100, v[2], v[3], t)
        elif v[0] % 100 == 0:                         # sub-penny prints are never at bid/ask
            trade = tt.Trade(v[0] // 100, v[1], t, list(v[2]) if v[2] else None)
            intent = tt.follow(quote, room, trade, trading=True, reserve=lambda: True)
            if intent is not None:
                counts.signals[intent.side].append((t, intent.limit_cents))
    counts.level_changes, counts.armed_levels = quote.level_changes, quote.armed_levels
    return counts


def moved_our_way(tape: Tape, entries: list[tuple[int, str]], horizon_s: float) -> tuple[int, int]:
    """Of (time, side) entries, how many saw the mid move their way within horizon_s
    (mid at t + horizon above the mid at t for a buy, below for a sell)."""
    hits = 0
    for t, side in entries:
        before, after = tape.mid_at(SYMBOL, t), tape.mid_at(SYMBOL, t + int(horizon_s * 1e9))
        hits += (after > before) if side == "buy" else (after < before)
    return hits, len(entries)


def pct(hits: int, n: int) -> str:
    return f"{hits}/{n} ({100 * hits / n:.0f}%)" if n else "0/0"


def clock(t_ns: int) -> str:
    return dt.datetime.fromtimestamp(t_ns / 1e9, ET).strftime("%H:%M:%S")


@dataclass
class RunResult:
    orders: list[dict]
    executions: list[tuple[int, str, int, int]]
    bot_output: str
    exit_code: int
    seconds: float


def run(tape: Tape, speed: Optional[float], quantity: int, latency_ms: float,
        out: Path, progress: bool = True) -> RunResult:
    """Start the fake and the real bot, replay the tape, stop the bot with one SIGINT."""
    out.mkdir(parents=True, exist_ok=True)
    fake = FakeAlpaca().start()
    # The hour plays in seconds: Alpaca's 200 requests a minute is a wall-clock
    # limit, so it is lifted here (the fake does not enforce one either).
    bot = Bot(["--symbol", SYMBOL, "--quantity", str(quantity), "--debug", "--live",
               "--rest-rate", "1000000"],
              clean_env(**fake.env()), out)
    try:
        fake.wait_ready(SYMBOL)
        started = time.monotonic()
        job = asyncio.run_coroutine_threadsafe(
            fake.replay(tape, speed, latency_ms), fake._loop)
        while not job.done():
            if progress:
                show_progress(fake, tape)
            try:
                job.result(timeout=1.0)
            except TimeoutError:
                pass
        job.result()
        seconds = time.monotonic() - started
        if progress:
            show_progress(fake, tape)
            print(file=sys.stderr)
        code = bot.stop()
        orders = [o for o in fake.orders.values()
                  if o["client_order_id"].startswith(tt.CLIENT_ID_PREFIX)]
        return RunResult(orders, list(fake.executions), bot.output(), code, seconds)
    finally:
        bot.kill()
        fake.stop()


def show_progress(fake: FakeAlpaca, tape: Tape) -> None:
    sent = fake.replay_sent
    t = tape.times[max(sent - 1, 0)]
    held = sum(n if side == "buy" else -n for _, side, n, _ in fake.executions)
    print(f"\rreplay {clock(t)} ET  {sent:,}/{len(tape.events):,} events "
          f"({100 * sent / len(tape.events):.0f}%)  orders {len(fake.orders)}  "
          f"fills {len(fake.executions)}  position {held:+d}   ",
          end="", file=sys.stderr, flush=True)


def pnl(executions: list[tuple[int, str, int, int]], mark_cents: float) -> tuple[str, str, int]:
    """Realized and marked-to-market P&L (average cost, exact until printed,
    as the bot keeps it), and the position."""
    held, cost, realized = 0, Fraction(0), Fraction(0)
    for _, side, n, price in executions:
        if side == "buy":
            held, cost = held + n, cost + n * price
        else:
            avg = cost / held if held else Fraction(0)
            realized += n * (price - avg)
            held, cost = held - n, cost - n * avg
    marked = realized + held * Fraction(mark_cents) - cost
    return tt.signed_dollars(realized), tt.signed_dollars(marked), held


def report(tape: Tape, counts: RuleCounts, result: RunResult, args: argparse.Namespace) -> str:
    buys = [e for e in result.executions if e[1] == "buy"]
    sells = [e for e in result.executions if e[1] == "sell"]
    filled = [o for o in result.orders if int(o["filled_qty"]) > 0]
    final_mid = tape.mid_at(SYMBOL, tape.times[-1])
    realized, marked, held = pnl(result.executions, final_mid)
    signals = [(t, side) for side in ("buy", "sell") for t, _ in counts.signals[side]]
    ordered = [(o["_market_t"], o["side"]) for o in result.orders]
    summary = next((line.split("INFO", 1)[1].strip() for line in result.bot_output.splitlines()
                    if "SUMMARY" in line), "(no summary: see bot.log)")
    speed = "as fast as the bot keeps up" if args.speed is None else f"real time x {args.speed:g}"
    lines = [
        f"Replay of {SYMBOL} {clock(tape.times[0])}-{clock(tape.times[-1])} ET, 2012-06-21 ({SOURCE})",
        f"  {len(tape.events):,} events ({tape.quote_count():,} quotes), {speed}, "
        f"order latency {args.latency_ms:g} ms, --quantity {args.quantity}, "
        f"{result.seconds:.1f} s",
        "",
        "What the rules find in the data (identical every run):",
        f"  level changes          {counts.level_changes:,}",
        f"  armed levels           {counts.armed_levels:,}",
        f"  signals                {len(counts.signals['buy'])} buy, "
        f"{len(counts.signals['sell'])} sell (with unlimited room to buy and sell)",
    ]
    lines += [f"  mid moved their way    within {h:>2} s: {pct(*moved_our_way(tape, signals, h))}"
              for h in HORIZONS_S]
    lines += [
        "",
        "What the bot did (fills depend on timing and vary run to run):",
        f"  orders sent            {len(result.orders)} "
        f"({sum(o['side'] == 'buy' for o in result.orders)} buy, "
        f"{sum(o['side'] == 'sell' for o in result.orders)} sell)",
        f"  orders filled          {pct(len(filled), len(result.orders))} "
        f"in {len(result.executions)} executions",
        f"  shares bought / sold   {sum(e[2] for e in buys)} / {sum(e[2] for e in sells)}",
        f"  final position         {held:+d} shares (mark: mid {final_mid / 100:.3f})",
        f"  realized P&L           {realized}",
        f"  marked-to-market P&L   {marked} (before fees)",
    ]
    lines += [f"  mid moved their way    within {h:>2} s: {pct(*moved_our_way(tape, ordered, h))}"
              for h in HORIZONS_S]
    lines += ["", f"The bot's own summary: {summary}", f"Exit code: {result.exit_code}"]
    return "\n".join(lines)


def chart(tape: Tape, result: RunResult, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    def when(t: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(t / 1e9, ET).replace(tzinfo=None)

    quote_times, books = tape.books(SYMBOL)
    step = max(1, len(quote_times) // 4000)
    times = [when(t) for t in quote_times[::step]]
    mids = [(b[0] + b[1]) / 200 for b in books[::step]]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1]})
    top.plot(times, mids, lw=0.6, color="0.4", label="mid")

    for side, marker, color in (("buy", "^", "tab:green"), ("sell", "v", "tab:red")):
        pts = [(when(t), p / 100) for t, s, _, p in result.executions if s == side]
        if pts:
            top.scatter(*zip(*pts), marker=marker, color=color, s=28, label=f"{side} fills", zorder=3)
    top.set_ylabel("price ($)")
    top.set_title(f"{SYMBOL} 2012-06-21, {SOURCE}: tick-taker replay")
    top.legend(loc="best")
    held, steps = 0, [(when(tape.times[0]), 0)]
    for t, side, n, _ in result.executions:
        held += n if side == "buy" else -n
        steps.append((when(t), held))
    steps.append((when(tape.times[-1]), held))
    bottom.step(*zip(*steps), where="post", color="tab:blue")
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))
    bottom.set_ylabel("position (shares)")
    bottom.set_xlabel("time (ET)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def speed_arg(text: str) -> Optional[float]:
    if text == "max":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be 'max' or a positive number")
    return value


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--speed", type=speed_arg, default=None,
                   help="'max' (default: as fast as the bot keeps up) or N for real time x N")
    p.add_argument("--minutes", type=float, help="replay only the first N minutes")
    p.add_argument("--quantity", type=tt.lots, default=500, help="the bot's --quantity (500)")
    p.add_argument("--latency-ms", type=float, default=5.0,
                   help="order latency in market time before matching (default 5)")
    p.add_argument("--out", type=Path, default=Path("replay-report"),
                   help="folder for report.txt, chart.png and bot.log (default replay-report)")
    args = p.parse_args(argv)
    tape = Tape(DATA, args.minutes)
    counts = analyse(tape)
    result = run(tape, args.speed, args.quantity, args.latency_ms, args.out)
    text = report(tape, counts, result, args)
    print(text)
    (args.out / "report.txt").write_text(text + "\n")
    chart(tape, result, args.out / "chart.png")
    print(f"\nwrote {args.out / 'report.txt'}, {args.out / 'chart.png'} and {args.out / 'bot.log'}")
    return 0 if result.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
