"""Derive the compact quotes-and-trades file the replay uses from the LOBSTER sample.

Source: LOBSTER's free sample of Nasdaq TotalView-ITCH for MSFT, 2012-06-21,
09:30-10:30 ET (message file, 50 levels), with its level-1 book rebuilt from
the messages (LOBSTER's own level-1 file for this sample was not available).
Label results "LOBSTER sample, level 1 rebuilt from messages".

Rules, in the source's row order:
- a trade event for each execution row (type 4 visible, type 5 hidden), at
  the row's price and size, *before* the quote that row causes (the print,
  then the book it left);
- then, within one nanosecond, every trade before the quotes (the tape's one
  rule for events that share a timestamp, `sim.tape.order_key`: the only
  order Alpaca's history, which serves trades and quotes apart, can be put
  back into, so this file and a download of the same data replay alike);
- a quote event whenever the best bid, best ask or either size changes
  (rows where one side of the book is empty are skipped);
- exchange timestamps kept to the nanosecond (seconds after midnight in New
  York, converted to ns since the epoch: 2012-06-21 was EDT, UTC-4).

Prices stay in LOBSTER's unit, dollars x 10,000, so hidden executions at
half a cent (e.g. 30.965) stay exact. Quotes are always whole cents.

Limits: the book before 09:30 is inferred from later cancels and
executions, so level-1 sizes can be slightly understated early on; hidden
liquidity never shows in the quotes; Nasdaq alone, not the consolidated
quote; odd lots included.

    python sim/data/derive_msft.py [../shared/data/msft_2012-06-21]
"""
from __future__ import annotations

import calendar
import csv
import gzip
import sys
from pathlib import Path
from typing import Iterator

if __package__ in (None, ""):                      # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sim import tape  # noqa: E402

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[2] / "shared" / "data" / "msft_2012-06-21"
STEM = "MSFT_2012-06-21_34200000_37800000_"
OUT = HERE / "msft_2012-06-21.csv.gz"
MIDNIGHT_NS = calendar.timegm((2012, 6, 21, 4, 0, 0)) * 1_000_000_000   # 00:00 EDT
COMMENT = """\
MSFT, Nasdaq, 2012-06-21 09:30-10:30 ET: LOBSTER sample, level 1 rebuilt from messages.
Derived by sim/data/derive_msft.py. Every print is a regular Nasdaq trade (condition "@").
Within a nanosecond, trades come before quotes (sim/tape.py, order_key)."""
SYMBOL = "MSFT"


def ns_after_midnight(seconds: str) -> int:
    whole, _, frac = seconds.partition(".")
    return int(whole) * 1_000_000_000 + int(frac.ljust(9, "0")[:9] or 0)


def events(source: Path) -> Iterator[tuple]:
    """The tape's events, in the source's row order."""
    messages = gzip.open(source / f"{STEM}message_50.csv.gz", "rt")
    books = gzip.open(source / f"{STEM}orderbook_1_RECONSTRUCTED.csv.gz", "rt")
    last = None
    for msg, book in zip(csv.reader(messages), csv.reader(books), strict=True):
        t = MIDNIGHT_NS + ns_after_midnight(msg[0])
        if msg[1] in ("4", "5"):                       # an execution: visible or hidden
            yield ("t", t, SYMBOL, int(msg[4]), int(msg[3]), "@")
        ask, ask_size, bid, bid_size = (int(x) for x in book)
        if ask >= 9_999_999_999 or bid <= -9_999_999_999:
            continue                                   # one side empty
        level = (bid, ask, bid_size, ask_size)
        if level != last:
            yield ("q", t, SYMBOL, *level)
            last = level


def derive(source: Path) -> tuple[int, int]:
    """Write OUT from the LOBSTER sample; return (quotes, trades)."""
    counts = {"q": 0, "t": 0}

    def counted() -> Iterator[tuple]:
        for e in events(source):
            counts[e[0]] += 1
            yield e

    tape.write(OUT, sorted(counted(), key=tape.order_key), COMMENT)   # a stable sort
    return counts["q"], counts["t"]


if __name__ == "__main__":
    q, t = derive(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE)
    print(f"wrote {OUT.name}: {q} quotes, {t} trades")
