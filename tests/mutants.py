"""Mutation check, run on demand (not in CI): break one rule of the strategy
at a time in a copy of the repo and confirm the test suite catches it.

    pipenv run python -m tests.mutants            # all mutants, ~2-4 minutes
    pipenv run python -m tests.mutants lot guard  # some of them

Prints, for each mutant, whether it was caught and by which tests.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name: (original text in tick_taker.py, broken text). Not listed: "bid moved
# AND ask moved" -> "OR" is an equivalent mutant (with a one-cent spread the
# bid fixes the ask), so no test can tell the two apart.
MUTANTS = {
    "ratio-inclusive": ("bid_size > IMBALANCE_RATIO * ask_size", "bid_size >= IMBALANCE_RATIO * ask_size"),
    "ratio-value": ('IMBALANCE_RATIO = Fraction("1.8")', 'IMBALANCE_RATIO = Fraction("1.5")'),
    "sell-ratio": ("ask_size > IMBALANCE_RATIO * bid_size", "ask_size > bid_size"),
    "guard-inclusive": ("as_ns(t) - quote.level_time_ns <= QUOTE_GUARD_NS",
                        "as_ns(t) - quote.level_time_ns < QUOTE_GUARD_NS"),
    "guard-off": ("QUOTE_GUARD_NS = 50_000_000", "QUOTE_GUARD_NS = 0"),
    "lot-size": ("if size < LOT:", "if size < 1:"),
    "capacity": ("self.held + self.pending_buys + LOT <= self.quantity",
                 "self.held + self.pending_buys < self.quantity - LOT"),
    "short-selling": ("return self.held - self.pending_sells >= LOT", "return True"),
    "one-attempt": ("        self.quote.disarm()                      # an attempt", "        pass  # "),
    "arm-any-jump": ("abs(bid - prev_bid) == TICK_CENTS", "True"),
    "arm-first-level": ("self.armed = prev_bid is not None and", "self.armed = "),
    "live-at-level": ("if not quote.at_level():", "if False:"),
    "cumulative-fill": ("delta = min(filled_qty, order.qty) - order.filled", "delta = min(filled_qty, order.qty)"),
    "expired-releases": ('{"fill", "canceled", "expired",', '{"fill", "canceled",'),
    "failed-send-releases": ("            self.on_loop(self.position.release, coid)\n            return None",
                             "            return None"),
    "no-cancel": ("                self.cancel(coid, order_id)", "                pass"),
    "no-shutdown-cancel": ("        await self.cancel_open_orders()\n", ""),
    "foreign-updates": ("        if coid not in self.position.orders:\n", "        if False:\n"),
    "no-reconcile-after-drop": ("        await self.reconcile(final=False)\n", ""),
    "orders-while-trading-down": ("if self.stopping or self.closing or not self.trading_live:",
                                  "if self.stopping or self.closing:"),
    "armed-after-data-drop": ("    def data_down(self) -> None:\n        self.quote.disarm()",
                              "    def data_down(self) -> None:\n        pass"),
    "watchdog-no-disarm": ("                warned = True\n                self.quote.disarm()",
                           "                warned = True"),
    "held-before-ignored": ("return self.preexisting + self.held + self.pending_buys + LOT",
                            "return self.held + self.pending_buys + LOT"),
    "no-rate-limit": ("if not self.limiter.can_send(2, time.monotonic()):", "if False:"),
    "no-cancel-retry": ("if attempt + 1 < CANCEL_TRIES and not self.stopping:", "if False:"),
    "orders-after-close-buffer": ("if self.stopping or self.closing or not self.trading_live:",
                                  "if self.stopping or not self.trading_live:"),
    "register-late": ("        self.position.register(coid, intent.side)\n", ""),
}


def run(name: str, old: str, new: str) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__"))
        script = copy / "tick_taker.py"
        text = script.read_text()
        assert text.count(old) == 1, f"{name}: the original text is not found once"
        script.write_text(text.replace(old, new))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                               "--timeout", "60", "tests"],
                              cwd=copy, capture_output=True, text=True)
        failed = [line.split(" ")[1] for line in proc.stdout.splitlines() if line.startswith("FAILED")]
        return proc.returncode != 0, ", ".join(failed) or proc.stdout[-300:]


def main() -> int:
    names = sys.argv[1:] or list(MUTANTS)
    source = (ROOT / "tick_taker.py").read_text()
    stale = [n for n in names if source.count(MUTANTS[n][0]) != 1]
    if stale:
        print(f"update these mutants to the current tick_taker.py: {', '.join(stale)}")
        return 2
    survivors = 0
    for name in names:
        caught, by = run(name, *MUTANTS[name])
        survivors += not caught
        print(f"{name:22s} {'caught by ' + by if caught else 'SURVIVED'}", flush=True)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
