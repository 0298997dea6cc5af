"""Products: create or replace, list."""

from __future__ import annotations

from dataclasses import dataclass

from kiosk import audit, db
from kiosk.sql import load_queries

QUERIES = load_queries("kiosk.catalog")
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


@dataclass(frozen=True)
class Product:
    sku: str
    name: str
    price_cents: int
    stock: int


async def put(
    sku: str, name: str, price_cents: int, stock: int, by: audit.Operator
) -> tuple[Product, bool]:
    """Create or replace; return the product and whether it was created.

    The audit entry (`product.create` / `product.replace`) commits with the change.
    """
    values = {"name": name, "price_cents": price_cents, "stock": stock}
    async with db.transaction() as conn:
        row = await db.fetch_row(conn, QUERIES["upsert_product"], {"sku": sku, **values})
        created = row.pop("created")
        await audit.record_by(
            conn, by, "product.create" if created else "product.replace", f"product:{sku}", values
        )
    return Product(**row), created


async def list_all() -> list[Product]:
    async with db.transaction() as conn:
        return await db.fetch_all_as(conn, Product, QUERIES["list_products"])
