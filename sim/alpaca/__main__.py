"""`python -m sim.alpaca`: the simulated Alpaca, run by hand."""
from __future__ import annotations

import argparse
import asyncio

from sim.alpaca.history import BUNDLED
from sim.alpaca.server import FakeAlpaca
from sim.tape import Tape


def main() -> None:
    parser = argparse.ArgumentParser(description="A local fake Alpaca on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free one)")
    parser.add_argument("--history", action="store_true",
                        help="serve the bundled MSFT hour (2012-06-21 09:30-10:30 ET) through "
                        "the historical routes, so the replay's download, cache and range "
                        "path can be tried without keys")
    args = parser.parse_args()
    fake = FakeAlpaca()
    if args.history:
        fake.load_history(Tape(BUNDLED))

    async def run() -> None:
        await fake.serve(args.port)
        print(f"fake Alpaca listening on {fake.url}  (Ctrl+C to stop)")
        print("point the bot (or the replay) at it with:")
        for name, value in fake.env().items():
            print(f"  export {name}={value}")
        print("and run the bot with --live: the fake is not Alpaca's paper endpoint")
        if args.history:
            print("then replay the bundled hour through its historical routes with:\n"
                  "  python -m sim.replay --symbol MSFT --date 2012-06-21 --start 09:30 "
                  "--end 10:30")
        await asyncio.Event().wait()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
