"""`PUT /admin/products/{sku}` (admin) and `GET /products`."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel, Field

from kiosk.auth import UNAUTHORIZED, Actor, AdminRequired
from kiosk.catalog import products

router = APIRouter(tags=["catalog"])


class ProductIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    price_cents: int = Field(ge=0, le=100_000_000)
    stock: int = Field(ge=0, le=1_000_000)


class ProductOut(BaseModel):
    sku: str
    name: str
    price_cents: int
    stock: int


Sku = Annotated[str, Path(pattern=products.SKU_PATTERN)]


@router.put(
    "/admin/products/{sku}",
    dependencies=[AdminRequired],
    response_model=ProductOut,
    summary="Create or replace a product",
    responses={201: {"description": "created"}, **UNAUTHORIZED},
)
async def put_product(sku: Sku, body: ProductIn, response: Response, by: Actor) -> dict[str, Any]:
    """Create (201) or replace (200) a product; `stock` is the number of units left to sell.

    Recorded in the audit log (`product.create` / `product.replace`).
    """
    product, created = await products.put(sku, body.name, body.price_cents, body.stock, by)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return asdict(product)


@router.get("/products", response_model=list[ProductOut])
async def list_products() -> list[dict[str, Any]]:
    return [asdict(p) for p in await products.list_all()]
