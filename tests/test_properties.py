"""Property-based test: random interleavings of quotes, trades, fills, partial
fills, cancels, submits answered well, refused, late or never, look-ups,
repeated updates and reconnects, against a model broker (tests/broker_model.py);
the invariants of docs/strategy.md and docs/order-life.md must hold after every
event.

Hypothesis is imported when the test runs, not when it is collected: every
test worker collects this file, one runs it (the import is over a second of
CPU).
"""
from __future__ import annotations


def test_invariants_hold_over_random_interleavings():
    """At every moment: 0 <= held; held before the run + held + pending buys <=
    --quantity; held - pending sells >= 0; the held shares equal the fills at the
    broker."""
    from hypothesis import settings
    from hypothesis.stateful import run_state_machine_as_test

    from tests.broker_model import BotAgainstBroker
    run_state_machine_as_test(BotAgainstBroker, settings=settings(
        max_examples=200, stateful_step_count=60, deadline=None))
