"""Mutation check, run on demand (not in CI): break one rule at a time in a
copy of the repo and confirm the test suite catches it.

    pipenv run python -m tests.mutants            # all mutants: a few hours on 2 cores
    pipenv run python -m tests.mutants lot-size   # some of them (a minute or two each)

Prints, for each mutant, whether it was caught and by which tests. A mutant
names code as it reads with indentation and trailing comments stripped, so
reformatting tick_taker.py or rewording a comment does not make it stale;
several lines are joined with "\\n".

Not listed, because no test can tell them from the original:
- "bid moved AND ask moved" -> "OR": with a one-cent spread the bid fixes the ask;
- dropping the desk's registry check for foreign updates: the Position ignores
  an id it did not register as well (the rule is kept twice on purpose);
- the loss limit's check after every fill: the check at every signal and the
  ten-a-second timer still catch the loss, at most 100 ms later, before any
  order (only a timed test could tell, and it would flake).
"""
from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent

# name: (original code, broken code), one rule each.
MUTANTS = {
    # -- levels and the decision
    "ratio-inclusive": ("return size * IMBALANCE_RATIO.denominator > other * IMBALANCE_RATIO.numerator",
                        "return size * IMBALANCE_RATIO.denominator >= other * IMBALANCE_RATIO.numerator"),
    "ratio-value": ('IMBALANCE_RATIO = Fraction("1.8")', 'IMBALANCE_RATIO = Fraction("1.5")'),
    "sell-ratio": ("outweighs(ask_size, bid_size)", "ask_size > bid_size"),
    "guard-inclusive": ("as_ns(trade.t) - quote.level_time_ns <= QUOTE_GUARD_NS",
                        "as_ns(trade.t) - quote.level_time_ns < QUOTE_GUARD_NS"),
    "guard-off": ("QUOTE_GUARD_NS = 50_000_000", "QUOTE_GUARD_NS = 0"),
    "min-print-size": ("if trade.size < MIN_PRINT_SIZE:", "if trade.size < 1:"),
    "sub-dollar-levels": ("if bid < MIN_LEVEL_BID_CENTS:", "if False:"),
    "capacity": ("return self.preexisting + self.held + self.pending_buys + LOT <= self.quantity",
                 "return self.held + self.pending_buys < self.quantity - LOT"),
    "short-selling": ('if side == "sell" and position.sellable() >= 1:', 'if side == "sell":'),
    "one-attempt": ("quote.disarm()\nreturn Decision(side, intent)", "return Decision(side, intent)"),
    "arm-any-jump": ("abs(bid - prev_bid) == TICK_CENTS", "True"),
    "arm-first-level": ("self.armed = prev_bid is not None and", "self.armed = "),
    "live-at-level": ("if not quote.at_level():", "if False:"),
    "rule-hook-skipped": ("if rule.on_quote is None:", "if True:"),
    # -- which prints count, odd lots, data gaps
    "irregular-prints-followed": ("return conditions is None or REGULAR_CONDITIONS.issuperset(conditions)",
                                  "return True"),
    "one-regular-code-is-enough": ("return conditions is None or REGULAR_CONDITIONS.issuperset(conditions)",
                                   "return conditions is None or not REGULAR_CONDITIONS.isdisjoint(conditions)"),
    "cancels-trigger": ('elif kind == "t":', 'elif kind in ("t", "x"):'),
    "empty-side-follows": ("if bid_size <= 0 or ask_size <= 0:", "if False:"),
    "odd-lot-never-sold": ('if side == "sell" and position.sellable() >= 1:',
                           'if side == "sell" and position.sellable() >= LOT:'),
    "sell-always-a-lot": ('return Intent("sell", quote.level_bid, min(LOT, position.sellable()),',
                          'return Intent("sell", quote.level_bid, LOT,'),
    "bad-time-half-applied": ("level_time_ns = as_ns(t)\nself.bid, self.ask, self.bid_size, self.ask_size = bid, ask, bid_size, ask_size",
                              "self.bid, self.ask, self.bid_size, self.ask_size = bid, ask, bid_size, ask_size\nlevel_time_ns = as_ns(t)"),
    "level-kept-after-data-gap": ('inst.quote.forget()\nlog.warning("market data gap: level forgotten; '
                                  'the next level is a first level")',
                                  'inst.quote.disarm()\nlog.warning("market data gap")'),
    "level-kept-after-watchdog": ("warned.add(symbol)\ninst.quote.forget()",
                                  "warned.add(symbol)\ninst.quote.disarm()"),
    # -- the position
    "cumulative-fill": ("delta = min(filled_qty, order.qty) - order.filled",
                        "delta = min(filled_qty, order.qty)"),
    "pnl-rounded-early": ("cost = self.cost_cents * delta / self.held if self.held else Fraction(0)",
                          "cost = self.cost_cents * delta // self.held if self.held else Fraction(0)"),
    "expired-releases": ('{"fill", "canceled", "expired", "rejected", "done_for_day", "replaced"})',
                         '{"fill", "canceled", "rejected", "done_for_day", "replaced"})'),
    "held-before-ignored": ("return self.preexisting + self.held + self.pending_buys + LOT",
                            "return self.held + self.pending_buys + LOT"),
    "register-late": ("self.positions[symbol].register(coid, side, qty, time.monotonic())",
                      "pass"),
    "bad-fill-price-loses-fill": ("exact_cents(price))", "Fraction(Decimal(price)) * 100 if price else None)"),
    # -- an order's life
    "no-budget-check": ("if not reserve():", "if False:"),
    "budget-submit-only": ("return self.limiter.reserve(2, time.monotonic())",
                           "return self.limiter.reserve(1, time.monotonic())"),
    "refused-kept": ("self.positions[symbol].refused(coid)", "pass"),
    "late-order-forgotten": ("symbol = self.symbol_of.get(update.client_order_id) or self.revive(update)",
                             "symbol = self.symbol_of.get(update.client_order_id)"),
    "no-stray-check": ("for order in strays or ():", "for order in ():"),
    "in-flight-from-registration": ("order.sent_at = time.monotonic()", "pass"),
    "sent-after-ctrl-c": ("if self.stopping:\nlog.warning(\"order %s not sent: stopping\", coid)",
                          "if False:\nlog.warning(\"order %s not sent: stopping\", coid)"),
    "flatten-without-cancel": ("await self.desk.cancel_everything()\nfor symbol, inst in self.instruments.items():",
                               "for symbol, inst in self.instruments.items():"),
    "wash-trade-not-retried": ("if (answer.refused and WASH_TRADE in answer.text.lower() and wash_retry_until",
                               "if (False and wash_retry_until"),
    "fills-only-on-fill-events": (
        "delta = self._apply_fill(order, filled_qty, filled_avg_cents)",
        "delta = self._apply_fill(order, filled_qty, filled_avg_cents) if event in (\"partial_fill\", \"fill\") "
        "or event in TERMINAL_EVENTS else 0"),
    "5xx-is-refusal": ("elif answer.refused:", "elif not answer.ok:"),
    "not-found-room-released": ("self.unfound[client_order_id] = self.orders.pop(client_order_id)",
                                "self.orders.pop(client_order_id)"),
    "not-found-not-reconciled": ("for coid in self.open_orders() + self.unfound():",
                                 "for coid in self.open_orders():"),
    "not-found-not-looked-up-at-exit": (
        "if strays is not None:\ntry:", "if False:\ntry:"),
    "stray-not-tracked": ("if symbol in self.positions:", "if False:"),
    "open-orders-pages-exclusive": ('until = stamp(parse_ns(page[-1]._raw["submitted_at"]) + 1000)',
                                    'until = page[-1]._raw["submitted_at"]'),
    "404-trusted-at-once": (
        "if order is None or order.order_id is not None or now - order.sent_at <= IN_FLIGHT_S:",
        "if order is None or order.order_id is not None:"),
    "update-keeps-id-unknown": ("order.order_id, order.unknown = order_id, False",
                                "order.unknown = False"),
    "no-cancel": ("if order.order_id is not None and (ioc or self.cancel_all) and not cancelled:",
                  "if order.order_id is not None and self.cancel_all and not cancelled:"),
    "cancel-gives-up": ('log.warning("cancel of %s refused (%s); retrying in %.1f s", coid, answer, delay)\n'
                        "await self._news_or_timeout(coid, delay)", "return"),
    "shutdown-no-wait": ("await self.settle(deadline_s)\nself.cancel_all = False", "self.cancel_all = False"),
    "exit-0-with-open-orders": ("return code or EXIT_ORDERS_OPEN", "return code"),
    # -- streams, start-up and the run
    "no-reconcile-after-drop": ("await self.desk.reconcile()", "pass"),
    "orders-while-trading-down": ("if not self.trading_live:", "if False:"),
    "orders-after-close-buffer": ("if self.closing:", "if False:"),
    "armed-after-data-drop": ('inst.quote.forget()\nlog.warning("market data gap: level forgotten; '
                              'the next level is a first level")', 'log.warning("market data gap")'),
    "watchdog-no-forget": ("warned.add(symbol)\ninst.quote.forget()", "warned.add(symbol)"),
    "watchdog-pulse-never-reset": ("inst.quote.fresh = False", "pass"),
    "stream-backoff-resets": ("if time.monotonic() - up_at >= STABLE_S:", "if True:"),
    "handshake-failure-fatal": ('log.warning("%s: reconnect failed (%s); retrying", name, exc)',
                                "raise FatalError(str(exc))"),
    "malformed-frame-ends-stream": ('log.warning("skipped a malformed trading-stream frame: '
                                    '%.80r", raw)\ncontinue', "raise"),
    "no-listening-wait": ('reply = await recv_json(self.ws, self.what)\nif isinstance(reply, dict) '
                          'and reply.get("stream") == "listening":', "if True:"),
    "startup-no-retry": ("if not transient(exc):", "if True:"),
    "task-end-stops-run": ("if stopper in done:", "if done:"),
    "ctrl-c-waits-for-start-up": ("starting.cancel()\nawait asyncio.gather(starting, return_exceptions=True)",
                                  "await asyncio.gather(starting, return_exceptions=True)"),
    # -- safe to leave running
    "live-without-flag": ("if not live:", "if False:"),
    "symbol-not-checked": ("await self.check_symbols()", "pass"),
    "untradable-asset-trades": ('elif not asset.get("tradable"):', "elif False:"),
    "open-orders-first-page-only": ("if len(page) < ORDERS_PAGE:", "if True:"),
    "positions-not-adopted": ("inst.position.preexisting = max(held.get(symbol, 0), 0)", "pass"),
    "one-huge-subscribe": ("for i in range(0, len(symbols), SUBSCRIBE_CHUNK):",
                           "for i in range(0, len(symbols), len(symbols)):"),
    "keys-not-stripped": ('secret = (secret or os.environ.get("APCA_API_SECRET_KEY") or "").strip()',
                          'secret = (secret or os.environ.get("APCA_API_SECRET_KEY") or "")'),
    "secret-not-redacted": ('text = text.replace(secret, "[secret]")', "pass"),
    "escaped-secret-not-redacted": ("cls.secrets |= {form, repr(form)[1:-1], json.dumps(form)[1:-1]}",
                                    "cls.secrets |= {form}"),
    "no-loss-limit": ("if pnl > -limit:", "if True:"),
    "loss-limit-only-on-timer": ("if self.loss_reached():", "if self.halted:"),
    "mark-sampled-not-followed": ("self.ask_size = ask_size\nself.fresh = True\nif bid:\nself.good_bid = bid",
                                  "self.ask_size = ask_size\nself.fresh = True"),
    "no-bid-marked-at-zero": ("return sum((i.position.pnl_cents(i.mark()) for i in self.instruments.values()),",
                              "return sum((i.position.pnl_cents(i.quote.bid) for i in self.instruments.values()),"),
    "loss-marks-realized-only": ("return self.realized_cents + self.held * mark_cents - self.cost_cents",
                                 "return self.realized_cents"),
    "loss-limit-keeps-holdings": ("await self.flatten()\nawait self.desk.settle(SHUTDOWN_DEADLINE_S)",
                                  "await self.desk.settle(SHUTDOWN_DEADLINE_S)"),
    "user-signal-after-self-stop-exits": ("signals += 1\nif signals > 1:", "signals += 1\nif stop.is_set():"),
    "sighup-ignored": ("for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):",
                       "for sig in (signal.SIGINT, signal.SIGTERM):"),
    "406-fatal-at-start": ("if time.monotonic() >= until:", "if True:"),
    "odd-sign-in-fatal": ('raise StreamError(f"unexpected sign-in reply from the {self.what}: "',
                          'raise FatalError(f"unexpected sign-in reply from the {self.what}: "'),
    "loss-exit-0": ("code = code or EXIT_LOSS_LIMIT", "pass"),
    # -- --check
    "check-always-passes": ("return EXIT_FATAL\nlog.info(\"CHECK: all passed%s\"", "pass\nlog.info(\"CHECK: all passed%s\""),
    "check-data-stream-unchecked": ("if subscribed:\nawait self.quotes(clock.is_open)",
                                    "if False:\nawait self.quotes(clock.is_open)"),
    "check-order-marketable": ('return half.quantize(Decimal("0.01") if half >= 1 else Decimal("0.0001"), ROUND_DOWN)',
                               'return max(Decimal(1), half.quantize(Decimal("0.01"), ROUND_DOWN))'),
    "check-order-answer-lost-left-open": ("found = await self.resolve(coid)", "found = NOT_FOUND"),
    "check-ignores-ctrl-c": ("if bot.stop.is_set():\nbreak", "if False:\nbreak"),
    "order-without-check-trades": ("if args.order and not args.check:", "if False:"),
    # -- the journal
    "journal-loses-fills": ("self.journal.add(J_FILL, self.run_id, coid, symbol, order.side, delta, price,",
                            "(None, self.run_id, coid, symbol, order.side, delta, price,"),
    "journal-not-flushed-at-exit": ("journal.close()", "pass"),
    "journal-dies-on-a-bad-row": ("except sqlite3.Error:\nself._commit_each(batch)",
                                  "except sqlite3.Error:\nraise"),
    "journal-open-not-retried": ('if "locked" not in str(exc) or time.monotonic() > deadline:',
                                 "if True:"),
    "journal-written-only-at-exit": ("closing = self._closing.wait(JOURNAL_FLUSH_S)",
                                     "closing = self._closing.wait(3600)"),
    "journal-keeps-no-script": ("self.journal.add(J_SCRIPT, sha, text)", "pass"),
    "old-journal-not-upgraded": ("upgrade(self._db)\nbreak", "break"),
    "journal-no-new-event": ('self.journal.add(J_EVENT, self.run_id, coid, "new", utc_now())',
                             "pass"),
    "mid-due-second-skipped": ('if isinstance(t, str) and t[-1:] == "Z" and t[:19] < second:',
                               'if isinstance(t, str) and t[-1:] == "Z" and t[:19] <= second:'),
    # -- several symbols
    "quiet-symbol-forgets-all": ("warned.add(symbol)\ninst.quote.forget()",
                                 "warned.add(symbol)\n[i.quote.forget() for i in self.instruments.values()]"),
    # -- the order connection
    "order-connection-opened-late": ("await self.desk.warm()", "pass"),
}

_COMMENT = re.compile(r"\s+#.*$")
PARALLEL = ["-n", "4", "--dist", "worksteal"] if importlib.util.find_spec("xdist") else []


def _code(line: str) -> str:
    """A line as a mutant names it: no indentation, no trailing comment."""
    return _COMMENT.sub("", line).strip()


def mutate(source: str, old: str, new: str) -> str:
    """Replace `old` (normalized code, maybe several lines) by `new`, once."""
    lines = source.split("\n")
    code = [_code(line) for line in lines]
    want = old.split("\n")
    hits = [i for i in range(len(code) - len(want) + 1)
            if all(w in code[i + k] if len(want) == 1 else
                   (code[i + k].endswith(w) if k == 0 else
                    code[i + k].startswith(w) if k == len(want) - 1 else code[i + k] == w)
                   for k, w in enumerate(want))]
    if len(hits) != 1:
        raise LookupError(f"found {len(hits)} times")
    i = hits[0]
    indents = [line[:len(line) - len(line.lstrip())] for line in lines[i:i + len(want)]]
    block = "\n".join(code[i:i + len(want)])
    replaced = block.replace(old, new, 1).split("\n")
    if len(replaced) != len(indents):      # lines dropped or added: the first line's indent
        indents = [indents[0]] * len(replaced)
    return "\n".join(lines[:i] + [ind + r for ind, r in zip(indents, replaced)]
                     + lines[i + len(want):])


def suite_on(edit: Callable[[str], str], *pytest_args: str
             ) -> subprocess.CompletedProcess:
    """Run the test suite on a copy of the checkout whose tick_taker.py is
    `edit(original text)`; the checkout itself is never touched."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", "*.db", "*.db-*", "replay-out"))
        script = copy / "tick_taker.py"
        script.write_text(edit(script.read_text()))
        return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "--timeout", "60", *PARALLEL, *pytest_args, "tests"],
                              cwd=copy, capture_output=True, text=True)


def failures(proc: subprocess.CompletedProcess) -> list[str]:
    """The test ids pytest reported as failed (or in error)."""
    return [line.split(" ")[1] for line in proc.stdout.splitlines()
            if line.startswith(("FAILED", "ERROR"))]


def run(name: str, old: str, new: str) -> tuple[bool, str]:
    proc = suite_on(lambda text: mutate(text, old, new), "-x")
    return proc.returncode != 0, ", ".join(failures(proc)) or proc.stdout[-300:]


def stale(source: str, names: list[str]) -> list[str]:
    """Mutants whose original code is not found exactly once."""
    out = []
    for name in names:
        try:
            mutate(source, *MUTANTS[name])
        except LookupError:
            out.append(name)
    return out


def main() -> int:
    names = sys.argv[1:] or list(MUTANTS)
    if unknown := [n for n in names if n not in MUTANTS]:
        print(f"no such mutant: {', '.join(unknown)}")
        return 2
    if bad := stale((ROOT / "tick_taker.py").read_text(), names):
        print(f"update these mutants to the current tick_taker.py: {', '.join(bad)}")
        return 2
    survivors = 0
    for name in names:
        caught, by = run(name, *MUTANTS[name])
        survivors += not caught
        print(f"{name:28s} {'caught by ' + by if caught else 'SURVIVED'}", flush=True)
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
