"""The platform as merchants, drivers, ops and customers see it: its public HTTP interfaces, nothing else."""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

APP_CONNECTIONS = 6  # a driver app: route sync, stop results, customers' ETAs


class PlatformError(RuntimeError):
    pass


@dataclass(frozen=True)
class Device:
    vehicle_id: str
    device_id: str
    key: str


class Platform:
    """One HTTP client for the four services; `urls` maps service name to its base URL."""

    def __init__(
        self, urls: dict[str, str], ops_token: str, *, osmand_url: str | None = None, twilio_token: str = ""
    ) -> None:
        self.urls = urls
        self.osmand_url = osmand_url
        self.twilio_token = twilio_token  # the SMS provider's secret: inbound texts come signed with it
        self.ops = {"Authorization": f"Bearer {ops_token}"}
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=100)
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(30.0), limits=limits)
        self.gps = self.http  # a phone's GPS app has its own (`phone`)

    def phone(self) -> Platform:
        """The platform as one phone reaches it: the driver's app and the GPS tracker app (Traccar Client), each
        with a client of its own and the few connections a phone keeps. With one pool for the whole fleet every
        request queued behind every other once the platform slowed, and httpx looks over its whole queue at each
        turn: with thousands waiting the simulator spent its core there (docs/benchmarks.md, the simulated day);
        and a phone's pings no longer hold up its stop results."""
        twin = copy.copy(self)
        twin.http = httpx.AsyncClient(
            timeout=self.http.timeout, limits=httpx.Limits(max_connections=APP_CONNECTIONS)
        )
        twin.gps = httpx.AsyncClient(timeout=self.http.timeout, limits=httpx.Limits(max_connections=1))
        return twin

    async def close(self) -> None:
        await self.http.aclose()
        if self.gps is not self.http:
            await self.gps.aclose()

    async def _call(
        self, method: str, url: str, *, client: httpx.AsyncClient | None = None, **kwargs: Any
    ) -> httpx.Response:
        for attempt in range(5):
            try:
                reply = await (client or self.http).request(method, url, **kwargs)
            except httpx.TransportError:
                if attempt == 4:
                    raise
                continue
            if reply.status_code in (429, 502, 503) and attempt < 4:
                await asyncio.sleep(float(reply.headers.get("Retry-After", "0.5")))
                continue
            return reply
        raise PlatformError(f"{method} {url}: no answer")

    async def _json(
        self, method: str, service: str, path: str, headers: dict[str, str], **kwargs: Any
    ) -> Any:
        reply = await self._call(method, self.urls[service] + path, headers=headers, **kwargs)
        if reply.status_code >= 400:
            raise PlatformError(f"{method} {path}: {reply.status_code} {reply.text[:300]}")
        return reply.json() if reply.content else None

    # ---- ops
    async def create_depot(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("POST", "planner", "/v1/depots", self.ops, json=body)
        return result

    async def create_vehicle(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("POST", "planner", "/v1/vehicles", self.ops, json=body)
        return result

    async def register_device(self, vehicle_id: str) -> Device:
        body = {"vehicle_id": vehicle_id, "name": "sim phone"}
        reply = await self._json("POST", "tracker", "/v1/devices", self.ops, json=body)
        return Device(vehicle_id, reply["id"], reply["device_key"])

    async def create_merchant(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(
            "POST", "order-intake", "/v1/merchants", self.ops, json={"name": name}
        )
        return result

    async def routes(self, depot_id: str | None = None, day: str | None = None) -> list[dict[str, Any]]:
        params = {k: v for k, v in (("depot_id", depot_id), ("date", day)) if v}
        result: list[dict[str, Any]] = await self._json(
            "GET", "planner", "/v1/routes", self.ops, params=params
        )
        return result

    async def notifications(self, order_id: str) -> list[dict[str, Any]]:
        params = {"order_id": order_id}
        result: list[dict[str, Any]] = await self._json(
            "GET", "notifier", "/v1/notifications", self.ops, params=params
        )
        return result

    # ---- merchants
    @staticmethod
    def merchant(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def post_order(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {**self.merchant(key), "Idempotency-Key": secrets.token_hex(16)}
        reply = await self._call("POST", self.urls["order-intake"] + "/v1/orders", headers=headers, json=body)
        if reply.status_code == 409:  # posted before (a retried request): fetch it by reference
            return {"conflict": True, **reply.json()}
        if reply.status_code >= 400:
            return {"rejected": True, "status": reply.status_code, **reply.json()}
        result: dict[str, Any] = reply.json()
        return result

    async def post_batch(self, key: str, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Up to 1,000 orders in one request; one result per order, in the order given."""
        headers = {**self.merchant(key), "Idempotency-Key": secrets.token_hex(16)}
        reply = await self._call(
            "POST", self.urls["order-intake"] + "/v1/orders/batch", headers=headers, json={"orders": bodies}
        )
        if reply.status_code >= 400:
            raise PlatformError(f"batch: {reply.status_code} {reply.text[:300]}")
        items: list[dict[str, Any]] = reply.json()["items"]
        return items

    async def statuses(self, key: str) -> dict[str, str]:
        """Every order of the merchant and its status, page by page (order id → status)."""
        found: dict[str, str] = {}
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 200} | ({"cursor": cursor} if cursor else {})
            page = await self._json("GET", "order-intake", "/v1/orders", self.merchant(key), params=params)
            found |= {item["id"]: item["status"] for item in page["items"]}
            cursor = page.get("next_cursor")
            if not cursor:
                return found

    async def order(self, key: str, order_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(
            "GET", "order-intake", f"/v1/orders/{order_id}", self.merchant(key)
        )
        return result

    async def history(self, key: str, order_id: str) -> list[dict[str, Any]]:
        path = f"/v1/orders/{order_id}/history"
        result: list[dict[str, Any]] = await self._json("GET", "order-intake", path, self.merchant(key))
        return result

    async def cancel_order(self, key: str, order_id: str) -> bool:
        headers = {**self.merchant(key), "Idempotency-Key": secrets.token_hex(16)}
        reply = await self._call(
            "POST", self.urls["order-intake"] + f"/v1/orders/{order_id}/cancel", headers=headers, json={}
        )
        return reply.status_code < 400

    async def change_destination(self, key: str, order_id: str, destination: dict[str, Any]) -> bool:
        headers = {**self.merchant(key), "Idempotency-Key": secrets.token_hex(16)}
        url = self.urls["order-intake"] + f"/v1/orders/{order_id}"
        reply = await self._call("PATCH", url, headers=headers, json={"destination": destination})
        return reply.status_code < 400

    # ---- drivers' phones
    @staticmethod
    def device(device: Device) -> dict[str, str]:
        return {"Authorization": f"Bearer {device.key}"}

    async def ping(self, device: Device, fix: dict[str, Any]) -> None:
        """One position, through the OsmAnd protocol when the tracker serves it, else the JSON batch route."""
        if self.osmand_url:
            params = {
                "id": device.device_id,
                "key": device.key,
                "lat": f"{fix['lat']:.6f}",
                "lon": f"{fix['lon']:.6f}",
                "timestamp": str(int(datetime.fromisoformat(fix["recorded_at"]).timestamp())),
                "speed": f"{fix.get('speed_mps', 0) / 0.514444:.1f}",  # OsmAnd speaks knots
                "bearing": f"{fix.get('heading', 0):.0f}",
                "accuracy": f"{fix.get('accuracy_m', 10):.0f}",
                "batt": f"{fix.get('battery', 80):.0f}",
            }
            await self._call("POST", self.osmand_url, client=self.gps, params=params)
            return
        url = self.urls["tracker"] + "/v1/pings"
        await self._call("POST", url, client=self.gps, headers=self.device(device), json={"pings": [fix]})

    async def complete(self, device: Device, order_id: str, body: dict[str, Any]) -> int:
        url = self.urls["tracker"] + f"/v1/stops/{order_id}/complete"
        reply = await self._call("POST", url, headers=self.device(device), json=body)
        return reply.status_code

    async def finish_route(self, device: Device, route_id: str) -> int:
        """The driver ends the day: stops without a result become failed (not attempted)."""
        url = self.urls["tracker"] + f"/v1/routes/{route_id}/finish"
        return (await self._call("POST", url, headers=self.device(device))).status_code

    async def driver_route(self, device: Device, day: str) -> dict[str, Any] | None:
        """The vehicle's route that day as its driver's app sees it; None when it has none."""
        url = self.urls["planner"] + f"/v1/drivers/{device.vehicle_id}/route"
        reply = await self._call("GET", url, headers=self.device(device), params={"date": day})
        if reply.status_code == 404:
            return None
        if reply.status_code >= 400:
            raise PlatformError(f"driver route: {reply.status_code} {reply.text[:200]}")
        result: dict[str, Any] = reply.json()
        return result

    # ---- customers
    async def track(self, tracking_url: str) -> dict[str, Any] | None:
        token = tracking_url.rstrip("/").rsplit("/", 1)[-1]
        base = tracking_url.split("/track/")[0]
        reply = await self._call("GET", f"{base}/v1/track/{token}")
        if reply.status_code != 200:
            return None
        result: dict[str, Any] = reply.json()
        return result

    async def unsubscribe(self, list_unsubscribe: str) -> bool:
        """The one-click unsubscribe of an email's List-Unsubscribe header (RFC 8058), as a mail client does."""
        link = list_unsubscribe.strip().removeprefix("<").split(">")[0]
        reply = await self._call("POST", link, data={"List-Unsubscribe": "One-Click"})
        return reply.status_code < 400

    async def text_stop(self, phone: str) -> bool:
        """The customer answers STOP; the SMS provider calls the notifier's inbound webhook, signed as Twilio
        signs: base64 HMAC-SHA1 of the URL and the sorted form fields."""
        url = self.urls["notifier"] + "/v1/providers/twilio/inbound"
        form = {
            "From": phone,
            "To": "+15005550006",
            "Body": "STOP",
            "OptOutType": "STOP",
            "MessageSid": "SM" + secrets.token_hex(16),
        }
        data = url + "".join(name + form[name] for name in sorted(form))
        signature = base64.b64encode(
            hmac.new(self.twilio_token.encode(), data.encode(), hashlib.sha1).digest()
        ).decode()
        reply = await self._call("POST", url, data=form, headers={"X-Twilio-Signature": signature})
        return reply.status_code < 400
