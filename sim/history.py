"""Alpaca's own history for the replay: the quotes and trades of any symbols
on any trading day, downloaded with alpaca-trade-api into tape files
(`sim/tape.py`) and cached on disk.

- Keys are resolved exactly as the bot resolves them (flag > environment >
  .env > default); the data URL is `APCA_API_DATA_URL`, as the SDK reads it.
- Pages of 10,000: the SDK asks for the server's default of 1,000 a page
  unless a `limit` is passed, so it is given one too large to reach, and
  fetches 10,000 at a time until there is no `next_page_token`.
- Requests stay within 200 a minute (the bot's own rate limiter sits under
  the SDK); a 429 or a 5xx is retried after Alpaca's reset.
- Historical prints flagged `u` = `canceled` or `incorrect` are dropped: they
  never happened as printed.
- Quote sizes become shares on every date: Alpaca's consolidated (SIP)
  quotes carried `bs`/`as` in round lots of 100 until 3 November 2025
  (its changelog of 2025-10-30, "CTA/UTP bid and ask size display change";
  its forum staff: "ask size 15 means 1500 shares"), shares from then on
  (the date is sim.tape.SIP_SIZES_IN_SHARES_FROM).
  IEX's own quotes are kept as Alpaca sends them (IEX reports shares).
- Events that share a timestamp: every trade before the quotes of the same
  nanosecond (a print that consumed the touch comes before the quote it
  moved; the history gives no finer order). sim/data/README.md says why.
- A download is written to `<name>.partial` and renamed when complete, so
  an interrupted one is never trusted by a later run: it starts over.
"""
from __future__ import annotations

import datetime as dt
import heapq
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import requests
from alpaca_trade_api.rest import REST
from dotenv import load_dotenv

import tick_taker as tt
from sim import tape

ET = ZoneInfo("America/New_York")
PAGE = 10_000                         # the data API's largest page
CACHE_VERSION = 2                     # 2: sizes in shares on every date (older files held lots)
NO_END = 10 ** 12                     # a `limit` never reached: every page, 10,000 each
DROPPED = frozenset({"canceled", "incorrect"})   # a print's `u` flag: not a real print
RETRIED = [429, 500, 502, 503, 504]


class HistoryError(Exception):
    """A download that cannot be done, with a message saying why and what to try."""


class RecentSipError(HistoryError):
    """The plan does not permit SIP data of the last 15 minutes."""


@dataclass(frozen=True)
class Session:
    """One trading day's window to replay, in New York time."""
    day: dt.date
    start: dt.datetime
    end: dt.datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def connect(rest_rate: int = tt.RATE_LIMIT_PER_MIN) -> REST:
    """The SDK's REST client with the bot's keys, its rate limiter and timeout,
    and retries for 429s and 5xx (a download may wait; an order may not)."""
    load_dotenv(Path.cwd() / ".env", override=False)
    try:
        key_id, secret, base = tt.credentials()
    except tt.FatalError as exc:
        raise HistoryError(str(exc)) from None
    cfg = tt.Config(("-",), tt.LOT, key_id, secret, base, base, "sip")
    rest = tt.make_rest(cfg, tt.RateLimiter(rest_rate))
    rest._retry, rest._retry_wait, rest._retry_codes = 5, 0, RETRIED   # the limiter waits
    return rest


SYNTHETIC_MARK = "SYNTHETIC"          # an asset named so has made-up data (sim.alpaca)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def made_up(rest: REST, symbols: list[str]) -> bool:
    """Whether a server on this machine (the simulated Alpaca) names any of
    these symbols' assets SYNTHETIC: their data is made up, and every report
    says so. Alpaca itself is not asked (a delisted symbol has history but
    no asset)."""
    if not simulated(rest):
        return False
    try:
        return any(rest.get_asset(s).name.startswith(SYNTHETIC_MARK) for s in symbols)
    except Exception:                   # an unknown symbol: its data is not made up here
        return False


def simulated(rest: REST) -> bool:
    """Whether the keys point at a server on this machine (the simulated Alpaca)."""
    return urlparse(str(rest._base_url)).hostname in LOCAL_HOSTS


SYNTHETIC_DATA = "SYNTHETIC data made up by the simulated Alpaca"


def source(rest: REST, symbols: list[str], feed: str) -> str:
    """Where these symbols' history comes from, as reports name it."""
    if made_up(rest, symbols):
        return SYNTHETIC_DATA
    return f"{'the simulated Alpaca' if simulated(rest) else 'Alpaca'} {feed.upper()} history"


def explain(exc: BaseException, feed: str) -> HistoryError:
    """An SDK or network error, as a message a user can act on."""
    status = tt.http_status(exc)
    text = str(exc)
    if "recent SIP" in text:
        return RecentSipError(
            "your Alpaca plan does not permit recent SIP data: use --feed iex, or an --end "
            "at least 15 minutes ago")
    if status in (401, 403):
        return HistoryError(f"Alpaca refused the API keys (HTTP {status}): check "
                            "APCA_API_KEY_ID and APCA_API_SECRET_KEY")
    if status is not None:
        return HistoryError(f"Alpaca refused the request (HTTP {status}): {text}")
    if isinstance(exc, requests.RequestException):
        return HistoryError(f"cannot reach Alpaca's data API ({tt.describe(exc)})")
    return HistoryError(f"download failed: {tt.describe(exc)}")


def sessions(rest: REST, first: dt.date, last: dt.date, start: Optional[dt.time] = None,
             end: Optional[dt.time] = None) -> list[Session]:
    """The trading days from first to last (Alpaca's calendar), each from
    `start` (default: the open) to `end` (default: the close), New York time."""
    try:
        days = rest.get_calendar(first.isoformat(), last.isoformat())
    except Exception as exc:
        raise explain(exc, "") from None
    out = []
    for c in days:
        raw = c._raw
        day = dt.date.fromisoformat(raw["date"][:10])
        if not first <= day <= last:
            continue
        opens = start or dt.time.fromisoformat(raw["open"])
        closes = end or dt.time.fromisoformat(raw["close"])
        out.append(Session(day, dt.datetime.combine(day, opens, ET),
                           dt.datetime.combine(day, closes, ET)))
    if not out:
        span = first.isoformat() if first == last else f"{first}..{last}"
        raise HistoryError(f"{span}: no trading session (the market was closed)")
    return out


def last_trading_day(rest: REST, today: Optional[dt.date] = None) -> dt.date:
    """The last trading day before today (New York time)."""
    today = today or dt.datetime.now(ET).date()
    days = sessions(rest, today - dt.timedelta(days=10), today - dt.timedelta(days=1))
    return days[-1].day


def cache_file(cache: Path, symbols: list[str], s: Session, feed: str) -> Path:
    return cache / (f"{'+'.join(symbols)}_{s.day}_{s.start:%H%M}-{s.end:%H%M}_{feed}"
                    f"_v{CACHE_VERSION}.csv.gz")


def size_unit(day: dt.date, feed: str) -> int:
    """Shares per unit of a historical quote's `bs`/`as` on that day and feed."""
    return tape.LOT_SHARES if feed == "sip" and day < tape.SIP_SIZES_IN_SHARES_FROM else 1


def tape_for(rest: REST, symbols: list[str], session: Session, feed: str, cache: Path,
             progress: bool = True) -> Path:
    """The session's tape file: from the cache if it was downloaded before,
    else downloaded now (and cached)."""
    path = cache_file(cache, symbols, session, feed)
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    try:
        counts = download(rest, symbols, session, feed, partial, progress)
        if not counts["q"] and not counts["t"]:
            raise HistoryError(
                f"no quotes or trades for {','.join(symbols)} on {session.day} "
                f"{session.start:%H:%M}-{session.end:%H:%M} ET (feed {feed}): check the "
                "symbol, the date and the feed")
        os.replace(partial, path)          # complete: only now does a later run trust it
    finally:
        partial.unlink(missing_ok=True)
    return path


def download(rest: REST, symbols: list[str], s: Session, feed: str, path: Path,
             progress: bool = True) -> dict[str, int]:
    """Write the session's quotes and trades, merged in time order, to `path`."""
    start = s.start.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    end = s.end.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    streams = []
    unit = size_unit(s.day, feed)
    for symbol in symbols:
        for kind in ("trades", "quotes"):       # a trade before the quote it moved
            fetch = rest.get_trades_iter if kind == "trades" else rest.get_quotes_iter
            streams.append(events(fetch(symbol, start, end, limit=NO_END, feed=feed, raw=True),
                                  symbol, kind, unit))
    counts = {"q": 0, "t": 0}
    bar = _bar(symbols, s, progress)
    t0 = int(s.start.timestamp() * 1e9)

    def merged() -> Iterator[tape.Event]:
        shown = 0
        for e in heapq.merge(*streams, key=tape.order_key):
            counts[e[0]] += 1
            if bar is not None and (n := counts["q"] + counts["t"]) - shown >= 1000:
                bar.update(max(0, int((e[1] - t0) / 1e9) - bar.n))
                bar.set_postfix(quotes=f"{counts['q']:,}", trades=f"{counts['t']:,}")
                shown = n
            yield e

    try:
        tape.write(path, merged(),
                   f"{','.join(symbols)} {s.day} {s.start:%H:%M}-{s.end:%H:%M} ET, feed {feed}: "
                   f"Alpaca historical quotes and trades; quote sizes in shares"
                   f"{' (round lots x 100)' if unit != 1 else ''}", gz=True)
    except HistoryError:
        raise
    except Exception as exc:
        raise explain(exc, feed) from None
    finally:
        if bar is not None:
            bar.close()
    return counts


def events(items: Iterator[dict], symbol: str, kind: str,
           unit: int = 1) -> Iterator[tape.Event]:
    """Alpaca's history items (raw JSON) as tape events; dropped prints left
    out; quote sizes times `unit` (shares per lot, see size_unit)."""
    if kind == "quotes":
        for q in items:
            yield ("q", tt.parse_ns(q["t"]), symbol, round(q["bp"] * 10000),
                   round(q["ap"] * 10000), round(q["bs"] * unit), round(q["as"] * unit))
    else:
        for t in items:
            if t.get("u") in DROPPED:
                continue
            yield ("t", tt.parse_ns(t["t"]), symbol, round(t["p"] * 10000), t["s"],
                   "".join(t.get("c") or ()))


def _bar(symbols: list[str], s: Session, progress: bool):
    """A progress bar over the session's time (counts and an ETA), or None."""
    if not progress:
        return None
    from tqdm import tqdm
    return tqdm(total=int(s.seconds), unit="s", unit_scale=False, leave=False,
                desc=f"downloading {','.join(symbols)} {s.day}",
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:,}/{total:,} s of market "
                           "time [{elapsed}<{remaining}{postfix}]")


def default_cache() -> Path:
    from platformdirs import user_cache_dir
    return Path(user_cache_dir("tick-taker")) / "history"
