"""The tape: one or more symbols' quotes and trades, in time order, which the
simulated Alpaca replays through its market-data stream and matches orders
against.

File format (a CSV file, gzipped if its name ends in .gz; lines starting
with `#` are comments):

    q,<time_ns>,<symbol>,<bid>,<ask>,<bid_size>,<ask_size>
    t,<time_ns>,<symbol>,<price>,<size>,"<conditions>"

- times: exchange nanoseconds since the epoch (UTC);
- prices: dollars x 10,000, so a hidden midpoint print at half a cent (say
  30.965) stays exact; sizes: shares (a download converts Alpaca's SIP quote
  sizes, round lots before 3 November 2025, to shares: sim/history.py);
- conditions: the print's condition codes, one character each, written
  together between double quotes (`"@"`, `"@FI"`, `" "` for the regular
  sale of tapes A and B); `""` means the print carried no conditions field.

Quotes of one symbol describe its book: the book at time t is the last quote
at or before t. Events that share a timestamp: every trade comes before the
quotes of that nanosecond (order_key): a print that consumed the touch comes
before the quote it moved, the causal reading, and the only order Alpaca's
history (trades and quotes served apart) can be put back into.
"""
from __future__ import annotations

import bisect
import csv
import datetime as dt
import functools
import gzip
import io
import json
import random
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional
from zoneinfo import ZoneInfo

Event = tuple          # ("q", t, symbol, bid, ask, bid_size, ask_size) or
                       # ("t", t, symbol, price, size, conditions)
HEADER = ("# tick-taker tape: q,time_ns,symbol,bid,ask,bid_size,ask_size | "
          "t,time_ns,symbol,price,size,\"conditions\"\n"
          "# prices in dollars x 10,000; sizes in shares; times in ns since the epoch\n")


# Alpaca's consolidated (SIP) quotes carried sizes in round lots of 100 until
# this date, shares from then on (sim/data/README.md): the download converts.
SIP_SIZES_IN_SHARES_FROM = dt.date(2025, 11, 3)
SIP_SIZES_IN_SHARES_FROM_NS = int(dt.datetime(2025, 11, 3, tzinfo=ZoneInfo(
    "America/New_York")).timestamp() * 1e9)
LOT_SHARES = 100                      # a round lot, as the SIP counted sizes until then


def order_key(e: Event) -> tuple[int, bool]:
    """Tape order: by time; within a nanosecond, trades before quotes."""
    return e[1], e[0] == "q"


def _open(path: Path, mode: str, gz: Optional[bool] = None):
    if gz or (gz is None and str(path).endswith(".gz")):
        # mtime=0: the same events always make the same bytes.
        raw = gzip.GzipFile(path, mode + "b", 9, mtime=0)
        return io.TextIOWrapper(raw, newline="")
    return open(path, mode, newline="")


def write(path: Path, events: Iterable[Event], comment: str = "",
          gz: Optional[bool] = None) -> int:
    """Write events (in time order) to a tape file, gzipped if its name ends in
    .gz (or `gz` says so); return how many."""
    n = 0
    with _open(path, "w", gz) as out:
        out.write("".join(f"# {line}\n" for line in comment.splitlines()) + HEADER)
        for e in events:
            if e[0] == "q":
                out.write("q,%d,%s,%d,%d,%d,%d\n" % e[1:])
            else:
                out.write('t,%d,%s,%d,%d,"%s"\n' % e[1:])
            n += 1
    return n


class TapeError(ValueError):
    """A tape file that cannot be read: missing, not gzip, or a line that is
    not an event of the format."""


class Tape:
    """A tape file, loaded: the events, and each symbol's book over time."""

    def __init__(self, path: str | Path, minutes: Optional[float] = None) -> None:
        self.events: list[Event] = []
        self.times: list[int] = []
        self._quote_times: dict[str, list[int]] = {}
        self._books: dict[str, list[tuple[int, int, int, int]]] = {}    # cents, shares
        try:
            with _open(Path(path), "r") as f:
                self._load(f, minutes, path)
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise TapeError(f"cannot read the tape {path}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None
        if not self.events:
            raise TapeError(f"the tape {path} holds no events")

    def _load(self, f, minutes: Optional[float], path: str | Path) -> None:
        row: list = []
        try:
            for row in csv.reader(line for line in f if not line.startswith("#")):
                kind, t, symbol, *values = row
                t = int(t)
                if minutes is not None and self.times and t - self.times[0] > minutes * 60e9:
                    break
                if kind == "q":
                    bid, ask, bid_size, ask_size = (int(x) for x in values)
                    self.events.append(("q", t, symbol, bid, ask, bid_size, ask_size))
                    self._quote_times.setdefault(symbol, []).append(t)
                    self._books.setdefault(symbol, []).append(
                        (bid // 100, ask // 100, bid_size, ask_size))
                elif kind == "t":
                    price, size, conditions = values
                    self.events.append(("t", t, symbol, int(price), int(size), conditions))
                else:
                    raise ValueError(kind)
                self.times.append(t)
        except (ValueError, csv.Error):
            raise TapeError(f"{path}: {','.join(row)[:80]!r} is not a tape event (the "
                            "format: sim/data/README.md)") from None
        if any(a > b for a, b in zip(self.times, self.times[1:])):
            raise TapeError(f"{path}: the events are not in time order")

    @property
    def symbols(self) -> list[str]:
        return sorted({e[2] for e in self.events})

    def quote_count(self, symbol: Optional[str] = None) -> int:
        return sum(len(v) for s, v in self._quote_times.items() if symbol in (None, s))

    def book_at(self, symbol: str, t_ns: int) -> Optional[tuple[int, int, int, int]]:
        """The symbol's last quote at or before t_ns (bid, ask in cents; sizes)."""
        times = self._quote_times.get(symbol, [])
        i = bisect.bisect_right(times, t_ns) - 1
        return self._books[symbol][i] if i >= 0 else None

    def mid_at(self, symbol: str, t_ns: int) -> Optional[float]:
        book = self.book_at(symbol, t_ns)
        return None if book is None else (book[0] + book[1]) / 2

    def books(self, symbol: str) -> tuple[list[int], list[tuple[int, int, int, int]]]:
        """The symbol's quote times and books, for charts."""
        return self._quote_times.get(symbol, []), self._books.get(symbol, [])

    def frames(self) -> Iterator[tuple[int, list[dict]]]:
        """(time, messages): every event of one timestamp in one frame, as the
        market-data stream sends them (times still integer ns)."""
        frame: list[dict] = []
        for i, e in enumerate(self.events):
            if frame and frame[-1]["t"] != e[1]:
                yield frame[-1]["t"], frame
                frame = []
            frame.append(message(e, i))
        if frame:
            yield frame[-1]["t"], frame


def message(e: Event, trade_id: int = 0) -> dict:
    """A tape event as a v2 stream message (prices in dollars, `t` in ns)."""
    if e[0] == "q":
        _, t, symbol, bid, ask, bid_size, ask_size = e
        return {"T": "q", "S": symbol, "bx": "Q", "bp": bid / 10000, "bs": bid_size,
                "ax": "Q", "ap": ask / 10000, "as": ask_size, "c": ["R"], "z": "C", "t": t}
    _, t, symbol, price, size, conditions = e
    m = {"T": "t", "S": symbol, "i": trade_id, "x": "Q", "p": price / 10000, "s": size,
         "z": "C", "t": t}
    if conditions:
        m["c"] = list(conditions)
    return m


# -- the wire, fast: a replayed day is a million events, each encoded once.
@functools.lru_cache(maxsize=4096)
def _second(s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))


def stamp(t_ns: int) -> str:
    """Integer ns since the epoch -> RFC-3339 with nanoseconds, as Alpaca sends."""
    s, frac = divmod(t_ns, 1_000_000_000)
    return f"{_second(s)}.{frac:09d}Z"


@functools.lru_cache(maxsize=256)
def _codes(conditions: str) -> str:
    return f',"c":{json.dumps(list(conditions))}' if conditions else ""


def encode(e: Event, trade_id: int = 0) -> str:
    """A tape event as the JSON text of one v2 stream message (what
    `json.dumps(message(e))` gives, with `t` as RFC-3339), built directly."""
    if e[0] == "q":
        _, t, symbol, bid, ask, bid_size, ask_size = e
        return (f'{{"T":"q","S":"{symbol}","bx":"Q","bp":{bid / 10000},"bs":{bid_size},'
                f'"ax":"Q","ap":{ask / 10000},"as":{ask_size},"c":["R"],"z":"C",'
                f'"t":"{stamp(t)}"}}')
    _, t, symbol, price, size, conditions = e
    return (f'{{"T":"t","S":"{symbol}","i":{trade_id},"x":"Q","p":{price / 10000},'
            f'"s":{size}{_codes(conditions)},"z":"C","t":"{stamp(t)}"}}')


# -- made-up data: the benchmark, the tests, and the simulator run by hand.
NEW_YORK = ZoneInfo("America/New_York")


def synthetic(events: int, symbol: str = "SYNT",
                  seed: int = 20261202, move_p: float = 0.012, print_p: float = 0.1,
                  day: dt.date = dt.date(2026, 11, 27), hours: float = 6.5,
                  tick: int = 1, min_print: int = 100, bid: int = 2000) -> Iterator[Event]:
    """A made-up session of `events` quotes and trades over `hours` from the
    open: a one-tick spread (`tick` cents: the bot's TICK_CENTS) that now and
    then widens, a random walk of one-tick moves (a quote moves with
    probability `move_p`), sizes that lean one way or the other, and prints at
    the touch (`print_p` of the events; round ones 1 to 5 times `min_print`
    shares, the bot's MIN_PRINT_SIZE), mostly regular, some odd lots, sweeps
    and out-of-sequence prints. With the default, about as many signals per
    event as the real MSFT hour (one in 240); a `move_p` of 0.16 and a
    `print_p` of 0.2 make a day dense in signals (a level change every 15
    events, a signal every 100). The same `seed`, the same day."""
    rng = random.Random(seed)
    t = int(dt.datetime.combine(day, dt.time(9, 30), NEW_YORK).timestamp() * 1e9)
    step_ns = int(hours * 3600 * 1e9 / events)
    spread = tick                                   # `bid`: the first bid, in cents
    bid_size, ask_size = 500, 500
    sizes = tuple(n * min_print // 100 for n in (100, 100, 200, 300, 500)) + (40,)

    def generate():
        nonlocal t, bid, spread, bid_size, ask_size
        for _ in range(events):
            t += rng.randint(1, 2 * step_ns)
            if rng.random() < print_p:                   # a print at the touch
                at_ask = rng.random() < 0.5
                size = rng.choice(sizes)
                codes = "@I" if size < 100 else rng.choice(("@", "@", "@", "@F", "@Z"))
                price = bid + spread if at_ask else bid
                yield ("t", t, symbol, price * 100, size, codes)
                continue
            r = rng.random()
            if r < move_p:
                bid += rng.choice((-tick, tick))         # a one-tick move
            elif r < move_p + 0.004:
                spread = 2 * tick if spread == tick else tick   # widens, narrows
            if rng.random() < 0.5:
                bid_size = rng.choice((100, 300, 500, 900, 1500))
            else:
                ask_size = rng.choice((100, 300, 500, 900, 1500))
            yield ("q", t, symbol, bid * 100, (bid + spread) * 100, bid_size, ask_size)

    return generate()


def synthetic_day(path: Path, events: int = 1_000_000, symbol: str = "SYNT", **kw) -> None:
    """A synthetic session (see `synthetic`) written to a tape file."""
    write(path, synthetic(events, symbol, **kw), "a synthetic day: made-up quotes and trades")
