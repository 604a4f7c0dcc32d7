"""Shared pieces of the benchmarks: realistic Talon.One payloads and a minimal stand-in server.

The server is an aiohttp.web app answering every request with a realistic IntegrationStateV2
body after an optional delay. It runs in its own process (`start_server`) so that its CPU time
is not counted against the client being measured. Run it directly with
``python -m benchmarks._common --port 8080 --latency-ms 20``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from typing import Final

import orjson
from aiohttp import web

from bridge.talon.models import (
    AdditionalCost,
    CartItem,
    IntegrationRequest,
    NewCustomerSessionV2,
)

__all__ = ["RESPONSE_BODY", "cart_update", "start_server"]

_READY: Final = "listening on port "

RESPONSE_BODY: Final = orjson.dumps(
    {
        "customerSession": {
            "id": 4821,
            "created": "2026-01-10T09:00:00Z",
            "integrationId": "order-1001",
            "applicationId": 7,
            "profileId": "cust-42",
            "state": "open",
            "couponCodes": ["XMAS-20"],
            "cartItems": [
                {"name": "Shoes", "sku": "SKU-1", "quantity": 1, "price": 60, "position": 0},
                {"name": "Shirt", "sku": "SKU-2", "quantity": 2, "price": 20, "position": 1},
            ],
            "additionalCosts": {"shipping": {"price": 5}},
            "attributes": {},
            "firstSession": False,
            "updateCount": 3,
            "total": 105,
            "cartItemTotal": 100,
            "additionalCostTotal": 5,
            "updated": "2026-01-10T09:05:00Z",
        },
        "effects": [
            {
                "campaignId": 12,
                "rulesetId": 34,
                "ruleIndex": 0,
                "ruleName": "XMAS coupon",
                "effectType": "acceptCoupon",
                "triggeredByCoupon": 991,
                "props": {"value": "XMAS-20"},
            },
            {
                "campaignId": 12,
                "rulesetId": 34,
                "ruleIndex": 0,
                "ruleName": "XMAS coupon",
                "effectType": "setDiscount",
                "triggeredByCoupon": 991,
                "props": {"name": "20% off", "value": 20, "scope": "sessionTotal"},
            },
            {
                "campaignId": 13,
                "rulesetId": 35,
                "ruleIndex": 1,
                "ruleName": "5 off per item",
                "effectType": "setDiscountPerItem",
                "props": {"name": "5off#1", "value": 5, "position": 1, "subPosition": 0},
            },
        ],
        "createdCoupons": [],
        "createdReferrals": [],
    }
)


def cart_update() -> IntegrationRequest:
    """A realistic session update: two cart lines, a coupon, shipping and attributes."""
    return IntegrationRequest(
        customer_session=NewCustomerSessionV2(
            profile_id="cust-42",
            coupon_codes=["XMAS-20"],
            cart_items=[
                CartItem(name="Shoes", sku="SKU-1", quantity=1, price=60, category="footwear"),
                CartItem(name="Shirt", sku="SKU-2", quantity=2, price=20, category="apparel"),
            ],
            additional_costs={"shipping": AdditionalCost(price=5)},
            identifiers=["6f1ed002ab5595859014ebf0951522d9"],
            attributes={"ShippingCity": "Berlin", "Channel": "web"},
        ),
        response_content=["customerSession"],
    )


def _app(latency: float) -> web.Application:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        if latency:
            await asyncio.sleep(latency)
        return web.Response(body=RESPONSE_BODY, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


async def _serve(port: int, latency: float) -> None:
    runner = web.AppRunner(_app(latency), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"{_READY}{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def start_server(latency_ms: float) -> Iterator[str]:
    """Run the stand-in server in a subprocess; yields its base URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks._common",
            "--port",
            "0",
            "--latency-ms",
            str(latency_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith(_READY):
            raise RuntimeError(f"benchmark server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line[len(_READY) :])}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.latency_ms / 1000))


if __name__ == "__main__":
    main()
