"""Property-based test: random interleavings of quotes, trades, fills, partial
fills, cancels, refusals, repeated updates and reconnects, against a model
broker; the STRATEGY.md invariants must hold after every event.

The bot's pure parts (Quote, Position, decide) are driven exactly as
TickTaker drives them: no order while the trading stream is down, an attempt
disarms the level, a refused send releases at once, a data reconnect
disarms, a trading reconnect reconciles every order in flight from the
broker's state.
"""
from __future__ import annotations

from decimal import Decimal

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import tick_taker as tt

EVENTS_FOR = {"filled": "fill", "partially_filled": "partial_fill"}


class BotAgainstBroker(RuleBasedStateMachine):
    """The bot's trackers on one side, what the broker knows on the other."""

    @initialize(quantity=st.sampled_from([100, 200, 500]), preexisting=st.sampled_from([0, 100, 300]))
    def start(self, quantity: int, preexisting: int) -> None:
        self.quote = tt.Quote()
        self.position = tt.Position(quantity, preexisting)
        self.broker: dict[str, dict] = {}       # coid -> side, qty, filled, status
        self.seen: list[tuple] = []             # updates delivered, for repeats
        self.stream_up = True
        self.synced = True                      # no update lost since the last reconcile
        self.t = 0
        self.bid = 1000
        self.n = 0

    # -- the market ------------------------------------------------------
    @rule(move=st.sampled_from([-1, 1, -1, 1, 0, 2]), spread=st.sampled_from([1, 1, 1, 2]),
          bid_size=st.sampled_from([100, 300, 900, 541]),
          ask_size=st.sampled_from([100, 300, 900, 541]))
    def quote_arrives(self, move: int, spread: int, bid_size: int, ask_size: int) -> None:
        self.t += 20_000_000
        self.bid += move
        self.quote.on_quote(self.bid, self.bid + spread, bid_size, ask_size, self.t)

    @rule(where=st.sampled_from(["bid", "ask", "inside"]), size=st.sampled_from([50, 100, 300]),
          after_ms=st.sampled_from([10, 60]), refused=st.booleans())
    def trade_prints(self, where: str, size: int, after_ms: int, refused: bool) -> None:
        self.t += after_ms * 1_000_000
        q = self.quote
        price = {"bid": q.bid, "ask": q.ask, "inside": q.bid + 1}[where] if q.bid else 0
        if not self.stream_up:                  # TickTaker: no order while state is stale
            return
        intent = tt.decide(q, self.position, price, size, self.t)
        if intent is None:
            return
        q.disarm()
        self.n += 1
        coid = f"o{self.n}"
        self.position.register(coid, intent.side)
        if refused:                             # the POST failed: never at the broker
            self.position.release(coid)
        else:
            self.broker[coid] = {"side": intent.side, "qty": tt.LOT, "filled": 0, "status": "new"}

    @rule(side=st.sampled_from(["buy", "sell"]), refused=st.booleans())
    def signal_forms(self, side: str, refused: bool) -> None:
        """A one-cent move with a lopsided book, then a lot printing on its side."""
        if side == "buy":
            self.quote_arrives(1, 1, 900, 300)
        else:
            self.quote_arrives(-1, 1, 300, 900)
        self.trade_prints("ask" if side == "buy" else "bid", 100, 60, refused)

    # -- the broker ------------------------------------------------------
    def deliver(self, coid: str, event: str) -> None:
        update = (coid, event, self.broker[coid]["filled"])
        if self.stream_up:
            self.seen.append(update)
            self.position.on_update(coid, event, update[2], Decimal(1000))
        else:
            self.synced = False

    def open_orders(self) -> list[str]:
        return [c for c, o in self.broker.items() if o["status"] in ("new", "partially_filled")]

    @precondition(lambda self: self.open_orders())
    @rule(data=st.data())
    def order_fills(self, data) -> None:
        coid = data.draw(st.sampled_from(self.open_orders()))
        order = self.broker[coid]
        order["filled"] += data.draw(st.integers(1, order["qty"] - order["filled"]))
        order["status"] = "filled" if order["filled"] == order["qty"] else "partially_filled"
        self.deliver(coid, EVENTS_FOR[order["status"]])

    @precondition(lambda self: self.open_orders())
    @rule(data=st.data(), event=st.sampled_from(["canceled", "expired", "rejected", "done_for_day"]))
    def order_ends(self, data, event: str) -> None:
        coid = data.draw(st.sampled_from(self.open_orders()))
        self.broker[coid]["status"] = event
        self.deliver(coid, event)

    @precondition(lambda self: self.seen and self.stream_up)
    @rule(data=st.data())
    def update_repeats(self, data) -> None:
        coid, event, filled = data.draw(st.sampled_from(self.seen))
        self.position.on_update(coid, event, filled, Decimal(1000))

    # -- the streams -----------------------------------------------------
    @precondition(lambda self: self.stream_up)
    @rule()
    def trading_stream_drops(self) -> None:
        self.stream_up = False

    @precondition(lambda self: not self.stream_up)
    @rule()
    def trading_stream_reconnects(self) -> None:
        """TickTaker.reconcile: the broker's state of every order still in flight."""
        self.stream_up = True
        for coid in list(self.position.orders):
            order = self.broker[coid]
            event = EVENTS_FOR.get(order["status"], order["status"])
            self.position.on_update(coid, event, order["filled"], Decimal(1000))
        self.synced = True

    @rule()
    def data_stream_reconnects(self) -> None:
        self.quote.disarm()

    # -- the invariants ----------------------------------------------------
    @invariant()
    def never_short_never_over_quantity(self) -> None:
        p = self.position
        assert 0 <= p.held
        # shares held before the run count toward --quantity (and may exceed it)
        assert p.held + p.pending_buys <= max(0, p.quantity - p.preexisting)
        assert p.held - p.pending_sells >= 0

    @invariant()
    def position_matches_the_broker_when_in_sync(self) -> None:
        if self.synced:
            net = sum(o["filled"] if o["side"] == "buy" else -o["filled"]
                      for o in self.broker.values())
            assert self.position.held == net

    @invariant()
    def only_open_orders_are_pending(self) -> None:
        if self.synced:
            assert set(self.position.orders) <= set(self.open_orders())


BotAgainstBroker.TestCase.settings = settings(max_examples=150, stateful_step_count=60,
                                              deadline=None)
test_invariants_hold_over_random_interleavings = BotAgainstBroker.TestCase
