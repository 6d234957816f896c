"""The property-based test's machine (tests/test_properties.py runs it): random interleavings of quotes, trades, fills, partial
fills, cancels (accepted or refused), submits answered well, refused, with a
5xx after the order was placed, late or never, look-ups, repeated updates and
reconnects, against a model broker; the invariants of docs/strategy.md and
docs/order-life.md must hold after every event.

The bot's pure parts are driven as the bot drives them: every print through
`follow()` (no order while the trading stream is down, the budget booked, an
attempt disarms), every answer through the Position's order-life methods
(`refused`, `unknown`, `not_found`, `on_update`), as the order desk calls them.
"""
from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import tick_taker as tt
from tests.helpers import AFTER_MS, GUARD_MS, HEAVY, LIGHT, PRINT

# Sizes on both sides of the imbalance rule, and prints on both sides of the
# smallest print, from the rule's constants (a fork's knobs keep them apart).
SIZES = sorted({tt.LOT, LIGHT, HEAVY, int(LIGHT * tt.IMBALANCE_RATIO) + 1})
PRINTS = sorted({max(PRINT // 2, 1), PRINT, 3 * PRINT})

EVENTS_FOR = {"filled": "fill", "partially_filled": "partial_fill"}
OPEN = ("new", "partially_filled")
# What a submit's answer turns out to be: the bot sees the first part, the broker
# the second ("late": created later, within the in-flight window, or never).
SUBMITS = ["ok", "ok", "ok", "refused", "placed_5xx", "late", "lost"]


class BotAgainstBroker(RuleBasedStateMachine):
    """The bot's trackers on one side, what the broker knows on the other."""

    @initialize(quantity=st.sampled_from([100, 200, 500]), preexisting=st.sampled_from([0, 100, 300]))
    def start(self, quantity: int, preexisting: int) -> None:
        self.quote, self.rule = tt.Quote(), tt.Rule()
        self.on_quote = tt.feed(self.quote, self.rule)   # as the bot feeds them
        self.position = tt.Position(quantity, preexisting)
        self.broker: dict[str, dict] = {}       # coid -> side, qty, filled, status
        self.late: dict[str, float] = {}        # coid -> when it was sent (not yet created)
        self.seen: list[tuple] = []             # updates delivered, for repeats
        self.stream_up = True
        self.synced = True                      # no update lost since the last reconcile
        self.now = 0.0                          # monotonic seconds
        self.t = 0                              # exchange ns
        self.bid = 1000
        self.n = 0

    # -- the market ------------------------------------------------------
    @rule(move=st.sampled_from([-1, 1, -1, 1, 0, 2]), spread=st.sampled_from([1, 1, 1, 2]),
          bid_size=st.sampled_from(SIZES), ask_size=st.sampled_from(SIZES))
    def quote_arrives(self, move: int, spread: int, bid_size: int, ask_size: int) -> None:
        self.t += 20_000_000
        self.bid += move
        self.on_quote(self.bid, self.bid + spread, bid_size, ask_size, self.t)

    @rule(where=st.sampled_from(["bid", "ask", "inside"]), size=st.sampled_from(PRINTS),
          after_ms=st.sampled_from([GUARD_MS / 5, AFTER_MS]), submit=st.sampled_from(SUBMITS),
          budget=st.booleans())
    def trade_prints(self, where: str, size: int, after_ms: float, submit: str,
                     budget: bool = True) -> None:
        self.t += round(after_ms * 1_000_000)
        q = self.quote
        price = {"bid": q.bid, "ask": q.ask, "inside": q.bid + 1}[where] if q.bid else 0
        was_armed = q.armed
        decision = tt.follow(q, self.rule, self.position, tt.Trade(price, size, self.t),
                             blocked=None if self.stream_up else lambda: "trading stream down",
                             reserve=lambda: budget)
        intent = decision and decision.intent
        if intent is None:
            assert q.armed == was_armed          # no attempt: the level stays as it was
            return
        self.n += 1
        coid = f"o{self.n}"
        self.position.register(coid, intent.side, intent.qty, self.now)
        if submit == "refused":                 # 4xx: never at the broker
            self.position.refused(coid)
            return
        if submit in ("ok", "placed_5xx"):
            self.broker[coid] = {"side": intent.side, "qty": intent.qty, "filled": 0,
                                 "status": "new", "id": f"id-{coid}"}
        if submit == "late":
            self.late[coid] = self.now
        if submit == "ok":
            self.position.on_update(coid, "new", 0, Decimal(0), f"id-{coid}")
        else:                                   # 5xx, timeout, connection lost
            self.position.unknown(coid)

    @rule(side=st.sampled_from(["buy", "sell"]), submit=st.sampled_from(SUBMITS))
    def signal_forms(self, side: str, submit: str) -> None:
        """A one-cent move with a lopsided book, then a lot printing on its side."""
        if side == "buy":
            self.quote_arrives(1, 1, HEAVY, LIGHT)
        else:
            self.quote_arrives(-1, 1, LIGHT, HEAVY)
        self.trade_prints("ask" if side == "buy" else "bid", PRINT, AFTER_MS, submit)

    @rule(seconds=st.sampled_from([0.5, 2.0, 6.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        for coid, sent in list(self.late.items()):   # past the window: never created
            if self.now - sent > tt.IN_FLIGHT_S:
                del self.late[coid]

    @precondition(lambda self: self.late)
    @rule(data=st.data())
    def late_submit_lands(self, data) -> None:
        coid = data.draw(st.sampled_from(sorted(self.late)))
        del self.late[coid]
        order = self.position.orders[coid]              # tracked: see the invariants
        self.broker[coid] = {"side": order.side, "qty": order.qty, "filled": 0, "status": "new",
                             "id": f"id-{coid}"}

    # -- the broker ------------------------------------------------------
    def deliver(self, coid: str, event: str) -> None:
        order = self.broker[coid]
        update = (coid, event, order["filled"], order["id"])
        if self.stream_up:
            self.seen.append(update)
            self.position.on_update(coid, event, order["filled"], Decimal(1000), order["id"])
        else:
            self.synced = False

    def open_orders(self) -> list[str]:
        return sorted(c for c, o in self.broker.items() if o["status"] in OPEN)

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
        """A cancel accepted (or the order's day ending): a terminal event."""
        coid = data.draw(st.sampled_from(self.open_orders()))
        self.broker[coid]["status"] = event
        self.deliver(coid, event)

    @precondition(lambda self: self.open_orders())
    @rule(data=st.data())
    def cancel_refused(self, data) -> None:
        """A cancel refused with 429/5xx: the order stays open (and may fill later);
        the bot keeps it tracked and pending."""
        coid = data.draw(st.sampled_from(self.open_orders()))
        assert coid in self.position.orders

    @precondition(lambda self: self.seen and self.stream_up)
    @rule(data=st.data())
    def update_repeats(self, data) -> None:
        coid, event, filled, order_id = data.draw(st.sampled_from(self.seen))
        self.position.on_update(coid, event, filled, Decimal(1000), order_id)

    def look_up(self, coid: str) -> None:
        """A REST look-up by client_order_id, as the desk applies it."""
        order = self.broker.get(coid)
        if order is None:
            self.position.not_found(coid, self.now)
        else:
            event = EVENTS_FOR.get(order["status"], order["status"])
            self.position.on_update(coid, event, order["filled"], Decimal(1000), order["id"])

    @precondition(lambda self: self.position.orders and self.stream_up)
    @rule(data=st.data())
    def desk_looks_an_order_up(self, data) -> None:
        self.look_up(data.draw(st.sampled_from(sorted(self.position.orders))))

    # -- the streams -----------------------------------------------------
    @precondition(lambda self: self.stream_up)
    @rule()
    def trading_stream_drops(self) -> None:
        self.stream_up = False

    @precondition(lambda self: not self.stream_up)
    @rule()
    def trading_stream_reconnects(self) -> None:
        """The desk's reconcile: the broker's state of every order still in flight."""
        self.stream_up = True
        for coid in list(self.position.orders):
            self.look_up(coid)
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
    def never_over_quantity_at_the_broker(self) -> None:
        net = sum(o["filled"] if o["side"] == "buy" else -o["filled"]
                  for o in self.broker.values())
        assert self.position.preexisting + net <= max(self.position.quantity,
                                                       self.position.preexisting)
        assert net >= 0                          # never short

    @invariant()
    def never_loses_track_of_an_order(self) -> None:
        """Every order that is open at the broker, or may still be created there,
        is tracked, its shares pending."""
        assert set(self.open_orders()) | set(self.late) <= set(self.position.orders)

    @invariant()
    def position_matches_the_broker_when_in_sync(self) -> None:
        if self.synced:
            net = sum(o["filled"] if o["side"] == "buy" else -o["filled"]
                      for o in self.broker.values())
            assert self.position.held == net

