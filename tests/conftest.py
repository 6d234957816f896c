"""Fixtures: a fresh fake Alpaca per test, and the bot started against it."""
from __future__ import annotations

import os

import pytest

from sim.alpaca import FakeAlpaca
from sim.bot import use_zygote
from tests.helpers import start_bot

if not os.environ.get("TICK_TAKER_SUBPROCESS"):   # set it to start each bot as `python SCRIPT`
    use_zygote()        # each bot forked from a process that imported its libraries once


@pytest.fixture
def fake():
    server = FakeAlpaca().start()
    yield server
    server.stop()


@pytest.fixture
def run_bot(fake, tmp_path):
    """Start the real tick_taker.py against the fake; stopped after the test."""
    bots = []

    def start(*args: str, **kwargs):
        bot = start_bot(fake, tmp_path, *args, **kwargs)
        bots.append(bot)
        return bot

    yield start
    for bot in bots:
        bot.kill()


@pytest.fixture
def bot(run_bot):
    """The bot on MU with --quantity 500, subscribed and listening."""
    return run_bot()


# The files whose tests take longest (sweeps start Dask's workers; replays run
# thousands of events): run first, so that no worker starts one near the end
# while the others sit idle (longest first, the classic way to pack a queue).
SLOW_FIRST = ("test_tune.py", "test_sweep.py", "test_history.py", "test_replay.py",
              "test_contract.py", "test_money_edges.py", "test_order_life.py",
              "test_resilience.py", "test_simulator.py", "test_drift.py")


def pytest_collection_modifyitems(items):
    """A safety net: no test may hang the suite (each wait has its own timeout).
    And the slow files first (SLOW_FIRST)."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(60))
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
