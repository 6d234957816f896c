"""Replay any symbol and day from Alpaca's history, end to end: every download
goes through the real SDK to the fake's historical routes (paths, query
parameters, next_page_token pages, feeds, RFC-3339 times, error bodies) and
then replays through the real bot."""
from __future__ import annotations

import datetime as dt
import re

import pytest

import tick_taker as tt
from sim import history, replay, tape
from sim.report import analyse
from sim.tape import Tape
from tests.helpers import AFTER_MS, LOT, PRINT, TICK

HEAVY_TIMES = int(tt.IMBALANCE_RATIO) + 1            # the heavy side: this many times the light
# The light side's size: whole round lots (the SIP counted sizes in lots of 100
# shares, so a size in lots is a multiple of 100), and at least the bot's LOT.
ROUND_LOTS = -(-LOT // tape.LOT_SHARES) * tape.LOT_SHARES
DATA_ROUTE = ("GET", "/v2/stocks/{symbol}/{kind}")
DAY = "2012-06-21"                                   # the bundled hour's day (a Thursday)
WINDOW = ["--start", "09:30", "--end", "09:31:30"]
END_NS = int(dt.datetime(2012, 6, 21, 9, 31, 30, tzinfo=history.ET).timestamp() * 1e9)


@pytest.fixture
def alpaca(fake, monkeypatch, tmp_path):
    """The fake serving the first minutes of the bundled MSFT hour as Alpaca's
    history, in pages of 500, with the bot's keys in the environment."""
    monkeypatch.chdir(tmp_path)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    fake.load_history(Tape(replay.DATA, minutes=2))
    fake.page_cap = 500
    return fake


def run_replay(tmp_path, *args: str) -> int:
    return replay.main(["--quiet", "--cache", str(tmp_path / "cache"),
                        "--out", str(tmp_path / "out"), *args])


def data_requests(fake) -> int:
    return fake.received.requests.count(DATA_ROUTE)


def rules_section(report: str) -> str:
    return report.split("What the rules find", 1)[1].split("What the bot did", 1)[0]


def test_multi_page_download_replays_like_the_same_data_as_a_file(alpaca, tmp_path):
    """Pages of 10,000 asked for (the server may send fewer, with a next page): a
    multi-page download replays with the same rule counts as the same data given
    as a file (--data)."""
    assert run_replay(tmp_path, "--symbol", "MSFT", "--date", DAY, *WINDOW) == 0
    assert data_requests(alpaca) >= 4                    # quotes and trades, several pages
    downloaded = (tmp_path / "out" / "report.txt").read_text()
    [cached] = (tmp_path / "cache").glob("MSFT_2012-06-21_0930-0931_sip_v2.csv.gz")
    # The same data, in the order a download gives it: quotes and trades come
    # from two endpoints, so at one timestamp a print goes before the quotes.
    same = sorted((e for e in Tape(replay.DATA, minutes=2).events if e[1] <= END_NS),
                  key=lambda e: (e[1], e[0] == "q"))
    tape.write(tmp_path / "same.csv", same)
    assert [e[:6] for e in Tape(cached).events] == [e[:6] for e in same]
    assert run_replay(tmp_path, "--data", str(tmp_path / "same.csv")) == 0
    from_file = (tmp_path / "out" / "report.txt").read_text()
    assert rules_section(downloaded) == rules_section(from_file)
    assert analyse(Tape(cached))["MSFT"].level_changes > 0


def test_second_run_downloads_nothing(alpaca, tmp_path):
    """A cache on disk: a second run makes no data request."""
    assert run_replay(tmp_path, "--symbol", "MSFT", "--date", DAY, *WINDOW) == 0
    first = data_requests(alpaca)
    assert run_replay(tmp_path, "--symbol", "MSFT", "--date", DAY, *WINDOW) == 0
    assert data_requests(alpaca) == first


def test_429_mid_way_completes_the_download(alpaca, tmp_path):
    """The 200-requests-a-minute limit and 429s respected: a 429 mid-way waits for
    Alpaca's reset and completes."""
    alpaca.rate_reset_s = 1
    alpaca.force(*DATA_ROUTE, 429, "rate limit exceeded", skip=2)
    assert run_replay(tmp_path, "--symbol", "MSFT", "--date", DAY, *WINDOW) == 0
    assert alpaca.faults == {}                           # the 429 was answered ...
    [cached] = (tmp_path / "cache").glob("*.csv.gz")     # ... and the download completed
    assert len(Tape(cached).events) == sum(e[1] <= END_NS for e in
                                           Tape(replay.DATA, minutes=2).events)


def test_interrupted_download_is_never_trusted(alpaca, tmp_path, capsys):
    """An interrupted download restarts cleanly, never leaving a truncated file
    that a later run trusts."""
    (tmp_path / "cache").mkdir()
    stale = tmp_path / "cache" / "MSFT_2012-06-21_0930-0931_sip_v2.csv.gz.partial"
    stale.write_text("q,1,MSFT,1,2,3,4\n")                 # left by a killed run
    alpaca.force(*DATA_ROUTE, 500, "internal server error", times=None, skip=3)
    assert run_replay(tmp_path, "--symbol", "MSFT", "--date", DAY, *WINDOW) == 2
    assert "HTTP 500" in capsys.readouterr().err
    assert list((tmp_path / "cache").iterdir()) == []       # nothing a later run could trust
    alpaca.faults.clear()
    before = data_requests(alpaca)
    assert run_replay(tmp_path, "--symbol", "MSFT", "--date", DAY, *WINDOW) == 0
    assert data_requests(alpaca) > before                 # downloaded again, from the start
    [cached] = (tmp_path / "cache").glob("*.csv.gz")
    assert len(Tape(cached).events) == sum(e[1] <= END_NS for e in
                                           Tape(replay.DATA, minutes=2).events)


def test_two_day_range_prints_a_row_per_day_and_a_total(alpaca, tmp_path, capsys):
    """--date FIRST..LAST: every trading day in the range (the SDK's calendar), one
    report row per day and a total row."""
    day2 = [(e[0], e[1] + 86_400 * 10 ** 9, *e[2:]) for e in Tape(replay.DATA, minutes=2).events]
    tape.write(tmp_path / "day2.csv", day2)
    alpaca.load_history(Tape(tmp_path / "day2.csv"))
    assert run_replay(tmp_path, "--symbol", "MSFT", "--date", "2012-06-21..2012-06-24",
                      *WINDOW, "--jobs", "1") == 0
    out = capsys.readouterr().out
    summary = (tmp_path / "out" / "summary.txt").read_text()
    rows = [line.split()[0] for line in summary.splitlines()[1:]]
    assert rows == ["2012-06-21", "2012-06-22", "total"]   # the weekend has no session
    assert summary.strip() in out
    assert (tmp_path / "out" / "2012-06-22" / "chart.png").exists()


def test_canceled_and_incorrect_prints_are_dropped(alpaca, tmp_path):
    """Historical prints flagged u = canceled or incorrect are dropped."""
    source = Tape(replay.DATA, minutes=2)
    flagged = [i for i, e in enumerate(source.events) if e[0] == "t" and e[1] <= END_NS][:3]
    alpaca.history = {}
    alpaca.load_history(source, {flagged[0]: "canceled", flagged[1]: "incorrect",
                                 flagged[2]: "corrected"})
    assert run_replay(tmp_path, "--symbol", "MSFT", "--date", DAY, *WINDOW) == 0
    [cached] = (tmp_path / "cache").glob("*.csv.gz")
    trades = sum(e[0] == "t" for e in Tape(cached).events)
    assert trades == sum(e[0] == "t" and e[1] <= END_NS for e in source.events) - 2


@pytest.mark.parametrize("setup, args, message", [
    (lambda f: None, ["--symbol", "ZZZZ", "--date", DAY], "no quotes or trades for ZZZZ"),
    (lambda f: None, ["--symbol", "MSFT", "--date", "2012-06-23"], "no trading session"),
    (lambda f: setattr(f, "refuse_auth", True), ["--symbol", "MSFT", "--date", DAY],
     "refused the API keys"),
    (lambda f: setattr(f, "sip_delay_s", 10 ** 10), ["--symbol", "MSFT", "--date", DAY],
     "use --feed iex, or an --end at least 15 minutes ago"),
])
def test_download_errors_say_what_to_do_and_exit_nonzero(alpaca, tmp_path, capsys, setup, args,
                                                         message):
    """Clear messages for a symbol with no data, a date with no session, refused
    keys, and the free plan's "recent SIP data" refusal; a non-zero exit."""
    setup(alpaca)
    assert run_replay(tmp_path, *args, *WINDOW) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_iex_feed_is_asked_for_when_chosen(alpaca, tmp_path):
    """--feed iex: the download asks Alpaca for the IEX feed (the free plan's)."""
    alpaca.sip_delay_s = 10 ** 10                        # SIP refused, IEX fine
    assert run_replay(tmp_path, "--symbol", "MSFT", "--date", DAY, "--feed", "iex",
                      *WINDOW) == 0
    assert list((tmp_path / "cache").glob("*_iex_v2.csv.gz"))


def test_yesterday_is_the_last_trading_day(alpaca):
    """--date yesterday: the last trading day before today, from the calendar."""
    rest = history.connect()
    monday = dt.date(2026, 11, 30)
    assert history.last_trading_day(rest, monday) == dt.date(2026, 11, 27)   # a Friday
    alpaca.closed_days = {"2026-11-27"}
    assert history.last_trading_day(rest, monday) == dt.date(2026, 11, 26)


def test_signal_log_lines_carry_the_prints_exchange_time(alpaca, tmp_path):
    """The bot's log lines for signals carry the triggering print's exchange time,
    so the log lines up with the chart."""
    assert run_replay(tmp_path, "--symbol", "MSFT", "--date", DAY, *WINDOW) == 0
    log = (tmp_path / "out" / "bot.log").read_text()
    stamps = re.findall(r"(?:BUY|SELL) \d+ MSFT @ [\d.]+ \(.*; print at (2012-06-21T1[34]:\S+Z)\)",
                        log)
    assert stamps


def lot_day(path, day: dt.date) -> Tape:
    """A synthetic half-minute of MU on `day`: one-cent moves whose quotes show a
    few round lots a side (the heavy side outweighs by the rule's ratio), each
    followed by a print the bot follows."""
    t0 = int(dt.datetime.combine(day, dt.time(9, 30), history.ET).timestamp() * 1e9)
    events, ms, tick = [], 10 ** 6, 100 * TICK
    for k in range(8):
        bid = 10_0000 + tick * k                      # dollars x 10,000, a tick a step
        t = t0 + k * 2_000 * ms
        light = ROUND_LOTS * (1 + k % 3)              # 1-3 times that on the light side
        events += [("q", t, "MU", bid, bid + tick, HEAVY_TIMES * light, light),
                   ("t", t + round(AFTER_MS * ms), "MU", bid + tick, PRINT, "@")]
    tape.write(path, events)
    return Tape(path)


@pytest.mark.parametrize("day, unit", [(dt.date(2025, 10, 31), "lots"),
                                       (dt.date(2025, 11, 3), "shares")])
def test_quote_sizes_become_shares_on_either_side_of_the_cut_over(fake, monkeypatch, tmp_path,
                                                                 day, unit):
    """Sizes in shares on every date: SIP quotes before 3 November 2025 came in round
    lots of 100 (an ask size of 3 is 300 shares), and the download converts them, so
    the bot's 100-share buys fill 100 shares against the replayed book; from that
    day on, sizes are shares already and pass unchanged."""
    monkeypatch.chdir(tmp_path)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    fake.load_history(lot_day(tmp_path / "day.csv", day))
    served = fake._page(fake._history_items("MU", "quotes", {
        "start": 0, "end": 10 ** 20, "desc": False}), {
        "offset": 0, "limit": 10, "feed": "sip"})[0][0]
    heavy = HEAVY_TIMES * ROUND_LOTS                  # the first quote's sizes, in shares
    assert (served["bs"], served["as"]) == ((heavy // 100, ROUND_LOTS // 100) if unit == "lots"
                                            else (heavy, ROUND_LOTS))
    assert run_replay(tmp_path, "--symbol", "MU", "--date", day.isoformat(),
                      "--start", "09:30", "--end", "09:31") == 0
    [cached] = (tmp_path / "cache").glob("*.csv.gz")
    assert [e[5:] for e in Tape(cached).events if e[0] == "q"][:2] == [
        (heavy, ROUND_LOTS), (2 * heavy, 2 * ROUND_LOTS)]
    fills = re.findall(r"FILL BUY (\d+) MU", (tmp_path / "out" / "bot.log").read_text())
    assert fills and set(fills) == {str(LOT)}            # a lot, never 1-3 shares


def test_bundled_hour_served_as_history_replays_like_the_file(fake, monkeypatch, tmp_path):
    """One rule for events that share a timestamp, the same in the bundled file and
    the download path: the bundled hour served through the historical routes (as
    `python -m sim.alpaca --history` serves it) replays to the file's report."""
    from sim.alpaca import BUNDLED
    monkeypatch.chdir(tmp_path)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    fake.load_history(Tape(BUNDLED))
    assert run_replay(tmp_path, "--symbol", "MSFT", "--date", DAY,
                      "--start", "09:30", "--end", "09:36") == 0   # a tenth of it: the time
    end = int(dt.datetime(2012, 6, 21, 9, 36, tzinfo=history.ET).timestamp() * 1e9)
    tape.write(tmp_path / "file.csv", (e for e in Tape(BUNDLED).events if e[1] <= end))
    assert replay.main(["--quiet", "--data", str(tmp_path / "file.csv"),
                        "--out", str(tmp_path / "file")]) == 0
    downloaded, from_file = ((tmp_path / d / "report.txt").read_text().split(
        "What the rules find", 1)[1].split("This run in", 1)[0] for d in ("out", "file"))
    assert downloaded == from_file


def test_replay_against_a_server_with_no_history_says_so(fake, monkeypatch, tmp_path, capsys):
    """A replay against a server that serves no history says so (and how to get
    one), not "check the symbol"."""
    monkeypatch.chdir(tmp_path)
    for name, value in fake.env().items():
        monkeypatch.setenv(name, value)
    assert run_replay(tmp_path, "--symbol", "MSFT", "--date", DAY, *WINDOW) == 2
    assert "serves no history" in capsys.readouterr().err
