"""The account's routes: account, clock (market hours), calendar, assets,
positions."""
from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal
from typing import Optional

from aiohttp import web

from sim.alpaca.wire import error_body


class AccountRoutes:
    """GET /v2/account, /v2/clock, /v2/calendar, /v2/assets[/{symbol}],
    /v2/positions[/{symbol}]."""

    async def get_account(self, request: web.Request) -> web.Response:
        equity = "100000.00"
        body = {"id": str(uuid.UUID(int=1)), "account_number": "PA0000FAKE", "status": "ACTIVE",
                "crypto_status": "ACTIVE", "currency": "USD", "buying_power": "400000.00",
                "regt_buying_power": "200000.00", "non_marginable_buying_power": equity,
                "cash": equity, "portfolio_value": equity, "equity": equity,
                "last_equity": equity, "long_market_value": "0", "short_market_value": "0",
                "initial_margin": "0", "maintenance_margin": "0", "multiplier": "4",
                "trading_blocked": False, "transfers_blocked": False, "account_blocked": False,
                "trade_suspended_by_user": False, "shorting_enabled": True,
                "created_at": "2024-01-02T15:00:00Z"}
        body.update(self.account_extra)
        return web.json_response(body)

    def hours_from_first_read(self, opens_in: Optional[float] = None,
                              closes_in: Optional[float] = None) -> None:
        """The market opens (closes) this many seconds after the bot first
        reads the clock, not after the test set it: a test's wait for the
        close then holds no margin for the bot's own start (the clock, moved
        by hand, as far as the bot can tell)."""
        self._hours_pending = (opens_in, closes_in)

    async def get_clock(self, request: web.Request) -> web.Response:
        """Alpaca's clock, in New York time, from open_at/close_at."""
        now, day = time.time(), 86400
        if self._hours_pending is not None:
            opens_in, closes_in = self._hours_pending
            self._hours_pending = None
            if opens_in is not None:
                self.open_at = now + opens_in
            if closes_in is not None:
                self.close_at = now + closes_in

        def ny(t: float) -> str:
            return dt.datetime.fromtimestamp(t, dt.timezone(dt.timedelta(hours=-5))).isoformat()

        return web.json_response({
            "timestamp": ny(now), "is_open": self.open_at <= now < self.close_at,
            "next_open": ny(self.open_at if now < self.open_at else self.open_at + day),
            "next_close": ny(self.close_at if now < self.close_at else self.close_at + day)})

    def _asset(self, symbol: str) -> Optional[dict]:
        if symbol in self.assets and self.assets[symbol] is None:
            return None
        body = {"id": str(uuid.uuid5(uuid.NAMESPACE_OID, symbol)), "class": "us_equity",
                "exchange": "NASDAQ", "symbol": symbol, "name": symbol, "status": "active",
                "tradable": True, "marginable": True, "shortable": True,
                "easy_to_borrow": True, "fractionable": True}
        body.update(self.assets.get(symbol) or {})
        return body

    async def get_asset(self, request: web.Request) -> web.Response:
        body = self._asset(request.match_info["symbol"].upper())
        if body is None:
            return error_body(404, "asset not found", 40410000)
        return web.json_response(body)

    async def list_assets(self, request: web.Request) -> web.Response:
        """GET /v2/assets: every asset of the universe, filtered by `status`
        and `asset_class` as Alpaca filters them."""
        status, kind = request.query.get("status"), request.query.get("asset_class")
        found = [a for s in sorted(self.universe | set(self.assets)) if (a := self._asset(s))
                 and (status is None or a["status"] == status)
                 and (kind is None or a["class"] == kind)]
        return web.json_response(found)


    async def get_calendar(self, request: web.Request) -> web.Response:
        """Trading days between start and end (YYYY-MM-DD): weekdays that are
        not in `closed_days`, 09:30 to 16:00 or the early close."""
        try:
            first = dt.date.fromisoformat(request.query.get("start", "1970-01-01")[:10])
            last = dt.date.fromisoformat(request.query.get("end", "2100-01-01")[:10])
        except ValueError as exc:
            return error_body(422, f"invalid date: {exc}", 42210000)
        days, day = [], first
        while day <= last and len(days) < 1000:
            iso = day.isoformat()
            if day.weekday() < 5 and iso not in self.closed_days:
                days.append({"date": iso, "open": "09:30", "close": self.early_closes.get(iso, "16:00"),
                             "session_open": "0400", "session_close": "2000",
                             "settlement_date": (day + dt.timedelta(days=1)).isoformat()})
            day += dt.timedelta(days=1)
        return web.json_response(days)

    def _position_body(self, symbol: str) -> Optional[dict]:
        qty, cost = self.positions.get(symbol, (0, Decimal(0)))
        if qty == 0:
            return None
        avg = (cost / qty).quantize(Decimal("0.0001")) if qty else Decimal(0)
        return {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_OID, symbol)), "symbol": symbol,
                "exchange": "NASDAQ", "asset_class": "us_equity", "qty": str(qty),
                "qty_available": str(qty), "side": "long" if qty > 0 else "short",
                "avg_entry_price": str(avg), "cost_basis": str(cost.quantize(Decimal("0.01")))}

    async def list_positions(self, request: web.Request) -> web.Response:
        return web.json_response([b for s in self.positions if (b := self._position_body(s))])

    async def get_position(self, request: web.Request) -> web.Response:
        body = self._position_body(request.match_info["symbol"].upper())
        if body is None:
            return error_body(404, "position does not exist", 40410000)
        return web.json_response(body)
