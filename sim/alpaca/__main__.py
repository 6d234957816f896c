"""`python -m sim.alpaca`: the simulated Alpaca, run by hand.

    python -m sim.alpaca [--port 8642] [--play FILE | --synthetic] [--speed X] [--history]

--play FILE streams a tape (the bundled hour: sim/data/msft_2012-06-21.csv.gz)
as live market data, in its own time x --speed, from the start again at its
end; --synthetic plays a made-up hour of SYNTH1 the same way. Either way the
market is open, orders fill against the quotes played (the fill assumptions
in sim/alpaca/__init__.py), `tick_taker.py --check` passes against it, and
what it played is its history (`python -m sim.drift` replays a run on it).
--history serves the bundled MSFT hour and made-up symbol-days of SYNTH1,
SYNTH2 and SYNTH3 (any weekday) through the historical routes, so sweeps
and comparisons run without an account (with --synthetic, SYNTH1's history
is only what it plays).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Optional

from sim.alpaca.history import BUNDLED, SYNTHETIC, in_the_bots_units
from sim.alpaca.server import FakeAlpaca
from sim.tape import Tape, TapeError, synthetic_day

LIVE_SYMBOL = SYNTHETIC[0]          # --synthetic plays this symbol
LIVE_EVENTS = 30_000                # ... an hour of it: about 8 events a second


def live_tape(args: argparse.Namespace, folder: Path) -> Optional[Tape]:
    """The tape --play or --synthetic asks for (None: neither)."""
    if args.synthetic:
        path = folder / "synthetic.csv"
        synthetic_day(path, LIVE_EVENTS, LIVE_SYMBOL, hours=1, move_p=0.1, print_p=0.2,
                      **in_the_bots_units())
        return Tape(path)
    return Tape(args.play) if args.play else None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sim.alpaca",
                                     description="A simulated Alpaca on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    live = parser.add_mutually_exclusive_group()
    live.add_argument("--play", type=Path, metavar="FILE",
                      help="stream this tape as live market data, over and over")
    live.add_argument("--synthetic", action="store_true",
                      help=f"stream a made-up hour of {LIVE_SYMBOL} as live market data")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="--play/--synthetic: the tape's time x this (default 1: real time)")
    parser.add_argument("--history", action="store_true",
                        help="serve the bundled MSFT hour (2012-06-21 09:30-10:30 ET) and "
                        f"made-up days of {', '.join(SYNTHETIC)} through the historical routes, "
                        "so the replay's download, sweeps and comparisons run without keys")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)     # what to export, at once (even to a pipe)
    if args.speed <= 0:
        parser.error("--speed must be above 0")
    fake = FakeAlpaca()
    if args.history:
        fake.load_history(Tape(BUNDLED))
        fake.serve_synthetic(tuple(s for s in SYNTHETIC if not args.synthetic or s != LIVE_SYMBOL))
    if args.synthetic:                  # made up too, its history only what it plays
        fake.serve_synthetic((LIVE_SYMBOL,), days=False)

    async def run(tape: Optional[Tape]) -> None:
        await fake.serve(args.port)
        print(f"simulated Alpaca listening on {fake.url}  (Ctrl+C to stop)")
        print("point the bot (or the replay) at it with:")
        for name, value in fake.env().items():
            print(f"  export {name}={value}")
        print("and run the bot with --live: the simulator is not Alpaca's paper endpoint")
        if tape is not None:
            symbols = ",".join(tape.symbols)
            print(f"playing {symbols} as live market data (x{args.speed:g}); try:\n"
                  f"  python tick_taker.py --symbol {symbols} --live --check --order\n"
                  f"  python tick_taker.py --symbol {symbols} --live")
        if args.history:
            print("replay through its historical routes with, e.g.:\n"
                  "  python -m sim.replay --symbol MSFT --date 2012-06-21 --start 09:30 "
                  "--end 10:30\n"
                  f"  python -m sim.replay --symbol {','.join(SYNTHETIC)} "
                  "--date 2026-11-23..2026-11-27   (made-up data)")
        if tape is None:
            await asyncio.Event().wait()
        await fake.play(tape, args.speed)

    try:
        with tempfile.TemporaryDirectory(prefix="sim-alpaca-") as folder:
            tape = live_tape(args, Path(folder))
            asyncio.run(run(tape))
    except TapeError as exc:
        parser.exit(2, f"python -m sim.alpaca: {exc}\n")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
