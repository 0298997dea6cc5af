-- name: upsert_product
-- Create or replace a product; `created` tells which happened.
INSERT INTO products (sku, name, price_cents, stock)
VALUES (%(sku)s, %(name)s, %(price_cents)s, %(stock)s)
ON CONFLICT (sku) DO UPDATE
    SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents, stock = EXCLUDED.stock,
        updated_at = now()
RETURNING sku, name, price_cents, stock, (xmax = 0) AS created;

-- name: list_products
-- Every product, by sku.
SELECT sku, name, price_cents, stock FROM products ORDER BY sku;
