"""Catalog and orders on a real uvicorn: products, validation, the stock race, cancel, expiry."""

import datetime as dt
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.config import ADMIN_TOKEN
from tests.support.stack import rows

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_products_put_and_list(shop):
    body = {"name": "Coffee", "price_cents": 250, "stock": 10}
    no_token = {"Authorization": ""}  # shop.http sends the admin token unless told otherwise
    assert shop.http.put("/admin/products/coffee", json=body, headers=no_token).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert shop.http.put("/admin/products/coffee", json=body, headers=wrong).status_code == 401
    created = shop.http.put("/admin/products/coffee", json=body, headers=ADMIN)
    assert created.status_code == 201 and created.json() == {"sku": "coffee", **body}
    replaced = shop.http.put("/admin/products/coffee", json={**body, "stock": 3}, headers=ADMIN)
    assert replaced.status_code == 200 and replaced.json()["stock"] == 3
    for sku, bad in (
        ("coffee", {**body, "price_cents": -1}),
        ("coffee", {**body, "stock": -1}),
        ("coffee", {"name": "", "price_cents": 1, "stock": 1}),
        ("bad sku!", body),
    ):
        response = shop.http.put(f"/admin/products/{sku}", json=bad, headers=ADMIN)
        assert response.status_code == 422, (sku, bad)
        assert "detail" in response.json()
    assert shop.http.get("/products").json() == [
        {"sku": "coffee", "name": "Coffee", "price_cents": 250, "stock": 3}
    ]


def test_order_is_created_with_its_stock_reserved(shop):
    shop.product("coffee", price_cents=250, stock=10)
    shop.product("tea", price_cents=300, stock=10)
    order = shop.order({"tea": 1, "coffee": 2}, email="ana@example.com")
    assert set(order) >= {
        "id",
        "status",
        "items",
        "total_cents",
        "customer_email",
        "expires_at",
        "created_at",
    }
    assert order["status"] == "pending_payment" and order["total_cents"] == 800
    assert order["items"] == [
        {"sku": "coffee", "name": "Coffee", "quantity": 2, "unit_price_cents": 250},
        {"sku": "tea", "name": "Tea", "quantity": 1, "unit_price_cents": 300},
    ]
    created, expires = (dt.datetime.fromisoformat(order[k]) for k in ("created_at", "expires_at"))
    assert abs((expires - created).total_seconds() - 1800) < 5  # KIOSK_ORDER_TTL default
    assert shop.stock("coffee") == 8 and shop.stock("tea") == 9
    assert shop.get(order["id"])["payment_intents"] == []
    # Lines of one sku add up.
    merged = shop.http.post(
        "/orders", json={"items": [{"sku": "tea", "quantity": 1}, {"sku": "tea", "quantity": 2}]}
    )
    assert merged.status_code == 201 and merged.json()["items"][0]["quantity"] == 3
    assert shop.stock("tea") == 6


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"items": []}, 422, None),
        ({"items": [{"sku": "coffee", "quantity": 0}]}, 422, None),
        ({"items": [{"sku": "nope", "quantity": 1}]}, 422, "unknown sku 'nope'"),
        (
            {"items": [{"sku": "coffee", "quantity": 1}], "customer_email": "not an email"},
            422,
            "customer_email",
        ),
        (
            {"items": [{"sku": "coffee", "quantity": 1}], "customer_email": "a@b.c\r\nBcc: x@y.z"},
            422,
            "customer_email",
        ),
        ({"items": [{"sku": "coffee", "quantity": 3}]}, 409, "not enough stock for sku 'coffee'"),
        (
            {"items": [{"sku": "tea", "quantity": 1}, {"sku": "coffee", "quantity": 3}]},
            409,
            "sku 'coffee'",
        ),
    ],
)
def test_bad_orders_take_nothing(shop, body, status, detail):
    shop.product("coffee", stock=2)
    shop.product("tea", stock=5)
    response = shop.http.post("/orders", json=body)
    assert response.status_code == status, response.text
    if detail:
        assert detail in response.json()["detail"]
    assert shop.stock("coffee") == 2 and shop.stock("tea") == 5


def test_twenty_customers_race_for_the_last_five_units(shop, database_url):
    shop.product("last-croissants", price_cents=390, stock=5)
    barrier = threading.Barrier(20)

    def buy(_):
        with httpx.Client(base_url=shop.url, timeout=60, headers=ADMIN) as client:
            barrier.wait()
            return client.post(
                "/orders", json={"items": [{"sku": "last-croissants", "quantity": 1}]}
            )

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(buy, range(20)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] * 5 + [409] * 15
    for refused in (a for a in answers if a.status_code == 409):
        assert "last-croissants" in refused.json()["detail"]
    assert shop.stock("last-croissants") == 0
    assert rows(database_url, "SELECT sum(quantity) AS n FROM order_items")[0]["n"] == 5


def test_orders_sharing_products_in_any_order_do_not_deadlock(shop):
    shop.product("a", stock=100)
    shop.product("b", stock=100)
    barrier = threading.Barrier(10)

    def buy(i):
        items = [{"sku": "a", "quantity": 1}, {"sku": "b", "quantity": 1}]
        with httpx.Client(base_url=shop.url, timeout=60, headers=ADMIN) as client:
            barrier.wait()
            return client.post(
                "/orders", json={"items": items if i % 2 else items[::-1]}
            ).status_code

    with ThreadPoolExecutor(10) as pool:
        assert list(pool.map(buy, range(10))) == [201] * 10
    assert shop.stock("a") == 90 and shop.stock("b") == 90


def test_cancel_without_charge_releases_stock_once(shop):
    shop.product("tea", stock=5)
    order = shop.order({"tea": 2})
    assert shop.stock("tea") == 3
    first = shop.cancel(order["id"])
    assert first.status_code == 200 and first.json()["status"] == "canceled"
    assert shop.cancel(order["id"]).status_code == 200
    assert shop.stock("tea") == 5
    assert shop.pay(order["id"]).status_code == 409


def test_unknown_orders_are_404(shop):
    missing = uuid.uuid4()
    assert shop.http.get(f"/orders/{missing}").status_code == 404
    assert shop.http.post(f"/orders/{missing}/cancel").status_code == 404
    assert shop.http.get("/orders/not-a-uuid").status_code == 422


async def test_expiry_releases_stock_once(shop, pool, database_url):
    """The domain call the periodic expiry job uses (shop.payments.intents.close_order)."""
    from kiosk.errors import Conflict
    from kiosk.orders import lifecycle as intents
    from kiosk.orders import store

    shop.product("tea", stock=5)
    order = shop.order({"tea": 2})
    order_id = uuid.UUID(order["id"])
    with pytest.raises(Conflict):
        await intents.close_order(order_id, "expired")
    rows(database_url, "UPDATE orders SET expires_at = now() - interval '1 second' RETURNING id")
    assert await store.due_for_expiry() == [order_id]
    expired = await intents.close_order(order_id, "expired")
    assert expired.status == "expired"
    assert (await intents.close_order(order_id, "expired")).status == "expired"
    assert await store.due_for_expiry() == []
    assert shop.stock("tea") == 5
    assert shop.pay(order["id"]).status_code == 409
