"""Fork matrix, run on demand (not in CI): edit the rule as a trader would, in
a copy of the checkout, and confirm that only tests/test_contract.py fails.

    pipenv run python -m tests.forks              # every fork: about 20 minutes on 2 cores
    pipenv run python -m tests.forks lot-200      # some of them
    pipenv run python -m tests.forks --list       # what each fork edits

The README promises a forker that any edit of a knob it lists (or a rule
that remembers) leaves every test outside the contract file green; the
mutants (tests/mutants.py) prove the tests can fail, this proves they fail
only where they should. For each fork it runs the whole suite, the README's
way, on a copy whose tick_taker.py carries the edit, and reports:
- FAIL if any test outside tests/test_contract.py fails (the promise broken);
- FAIL if no contract test fails (the edit did not reach the suite), or a
  contract failure does not say that it pins the shipped rule;
- FAIL if the run took more than SLOWER times the unedited suite's, timed
  first in the same run (a test waiting out a timeout instead of failing
  with the bot's reason shows up here).
"""
from __future__ import annotations

import sys
import time

from tests.mutants import ROOT, failures, suite_on

SLOWER = 1.5            # a fork's suite may take this many times the green one's
CONTRACT = "tests/test_contract.py"
PINNED = "this pins the shipped rule"

# A rule that remembers, as the README's "Change the strategy" writes it: no
# print within 200 ms of a spread wider than one tick.
WIDE_SPREAD = [
    ("MIN_LEVEL_BID_CENTS = 100 ",
     "WIDE_MEMORY_NS = 200_000_000         # no print within 200 ms of a wide spread\n"
     "MIN_LEVEL_BID_CENTS = 100 "),
    ("    on_quote: Optional[Callable[[Quote, ExchangeTime], None]] = None\n",
     "    def __init__(self) -> None:\n"
     "        self.wide_ns: Optional[int] = None    # when the spread was last wider than a tick\n"
     "        self.was_wide = False\n"
     "\n"
     "    def on_quote(self, quote: Quote, t: ExchangeTime) -> None:\n"
     "        wide = quote.ask - quote.bid > TICK_CENTS\n"
     "        if wide or self.was_wide:             # wide now, or wide until this quote\n"
     "            self.wide_ns = as_ns(t)\n"
     "        self.was_wide = wide\n"),
    ("            return None                                   # 2. live quote at the level\n",
     "            return None                                   # 2. live quote at the level\n"
     "        if self.wide_ns is not None and as_ns(trade.t) - self.wide_ns <= WIDE_MEMORY_NS:\n"
     "            return None                                   # 2b. no wide spread lately\n"),
]

# A rule that remembers its own signals: none within a second of the last.
COOLDOWN = [
    ("MIN_LEVEL_BID_CENTS = 100 ",
     "COOLDOWN_NS = 1_000_000_000          # no signal within 1 s of the last one\n"
     "MIN_LEVEL_BID_CENTS = 100 "),
    ("    on_quote: Optional[Callable[[Quote, ExchangeTime], None]] = None\n",
     "    on_quote: Optional[Callable[[Quote, ExchangeTime], None]] = None\n"
     "    last_signal_ns: Optional[int] = None\n"),
    ("            return None                                   # 5. ... and both sizes shown\n",
     "            return None                                   # 5. ... and both sizes shown\n"
     "        t_ns = as_ns(trade.t)\n"
     "        if self.last_signal_ns is not None and t_ns - self.last_signal_ns < COOLDOWN_NS:\n"
     "            return None                                   # 6. cooling down\n"),
    ('            return "buy"                                  # printed at the ask, bid heavy\n',
     "            self.last_signal_ns = t_ns\n"
     '            return "buy"                                  # printed at the ask, bid heavy\n'),
    ('            return "sell"                                 # printed at the bid, ask heavy\n',
     "            self.last_signal_ns = t_ns\n"
     '            return "sell"                                 # printed at the bid, ask heavy\n'),
]

# name: the exact edits (old text, new text), each found once in tick_taker.py.
FORKS: dict[str, list[tuple[str, str]]] = {
    "lot-200": [("LOT = 100 ", "LOT = 200 ")],
    "min-print-500": [("MIN_PRINT_SIZE = 100 ", "MIN_PRINT_SIZE = 500 ")],
    "ratio-3": [('IMBALANCE_RATIO = Fraction("1.8")', 'IMBALANCE_RATIO = Fraction("3.0")')],
    "guard-120ms": [("QUOTE_GUARD_NS = 50_000_000 ", "QUOTE_GUARD_NS = 120_000_000 ")],
    "tick-2": [("TICK_CENTS = 1 ", "TICK_CENTS = 2 ")],
    "floor-5-dollars": [("MIN_LEVEL_BID_CENTS = 100 ", "MIN_LEVEL_BID_CENTS = 500 ")],
    "no-sweeps": [('    "F",                             # intermarket sweep', '    # "F",')],
    "odd-lots-count": [('    "@",                             # regular sale (tape C, and IEX)\n',
                        '    "@",                             # regular sale (tape C, and IEX)\n'
                        '    "I",                             # odd lot\n')],
    "wide-spread-memory": WIDE_SPREAD,
    "cooldown": COOLDOWN,
}


def apply(source: str, edits: list[tuple[str, str]]) -> str:
    for old, new in edits:
        if source.count(old) != 1:
            raise LookupError(f"found {source.count(old)} times: {old.strip()[:60]!r}")
        source = source.replace(old, new)
    return source


def judge(proc, seconds: float, green_s: float) -> list[str]:
    """What is wrong with a fork's run, in words (empty: it kept the promise)."""
    failed = failures(proc)
    outside = [t for t in failed if not t.startswith(CONTRACT)]
    problems = []
    if outside:
        problems.append(f"{len(outside)} test(s) outside the contract failed: {', '.join(outside)}")
    if not any(t.startswith(CONTRACT) for t in failed):
        problems.append("no contract test failed: did the edit take effect?"
                        + ("" if failed or proc.returncode == 0 else "\n" + proc.stdout[-600:]))
    elif proc.stdout.count(PINNED) == 0:
        problems.append("contract failures do not say they pin the shipped rule")
    if seconds > SLOWER * green_s:
        problems.append(f"took {seconds:.0f} s, over {SLOWER}x the green run's {green_s:.0f} s")
    return problems


def main(argv: list[str]) -> int:
    if argv[:1] == ["--list"]:
        for name, edits in FORKS.items():
            print(f"{name}:\n" + "\n".join(f"    {new.strip()}" for _, new in edits))
        return 0
    names = argv or list(FORKS)
    if unknown := [n for n in names if n not in FORKS]:
        print(f"no such fork: {', '.join(unknown)} (see --list)")
        return 2
    source = (ROOT / "tick_taker.py").read_text()
    stale = []
    for name in names:
        try:
            apply(source, FORKS[name])
        except LookupError as exc:
            stale.append(f"{name} ({exc})")
    if stale:
        print("update these forks to the current tick_taker.py: " + "; ".join(stale))
        return 2
    start = time.monotonic()
    green = suite_on(lambda text: text)
    green_s = time.monotonic() - start
    if green.returncode != 0:
        print(f"the unedited suite fails, fix that first: {', '.join(failures(green))}")
        return 1
    print(f"{'green (unedited)':20s} {green_s:4.0f} s", flush=True)
    broken = 0
    for name in names:
        start = time.monotonic()
        proc = suite_on(lambda text: apply(text, FORKS[name]))
        seconds = time.monotonic() - start
        contract = sum(t.startswith(CONTRACT) for t in failures(proc))
        problems = judge(proc, seconds, green_s)
        broken += bool(problems)
        print(f"{name:20s} {seconds:4.0f} s  "
              + ("; ".join(problems) if problems else f"ok: only {contract} contract test(s) failed"),
              flush=True)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
