-- name: reserve_stock
-- Take `quantity` units of one product, only if that many are left (the row lock serializes racers).
UPDATE products SET stock = stock - %(quantity)s, updated_at = now()
WHERE sku = %(sku)s AND stock >= %(quantity)s
RETURNING sku, name, price_cents;

-- name: product_stock
-- The stock of one product, to explain why a reservation failed.
SELECT sku, stock FROM products WHERE sku = %(sku)s;

-- name: insert_order
-- A new order waiting for payment, holding its stock until expires_at.
INSERT INTO orders (id, total_cents, customer_email, expires_at, device_id)
VALUES (%(id)s, %(total_cents)s, %(customer_email)s, now() + make_interval(secs => %(ttl)s),
        %(device_id)s);

-- name: insert_order_item
-- One line of an order, with the name and price it was sold at.
INSERT INTO order_items (order_id, sku, name, unit_price_cents, quantity)
VALUES (%(order_id)s, %(sku)s, %(name)s, %(unit_price_cents)s, %(quantity)s);

-- name: get_order
-- One order.
SELECT * FROM orders WHERE id = %(id)s;

-- name: order_device
-- The device that created an order (NULL: the admin token), to check who may see it.
SELECT device_id FROM orders WHERE id = %(id)s;

-- name: lock_order
-- One order, locked until the end of the transaction: every status change goes through this.
SELECT id, status, total_cents, customer_email, expires_at, closing_status, stock_released_at,
       paid_intent_id
FROM orders WHERE id = %(id)s FOR UPDATE;

-- name: order_items
-- The lines of an order.
SELECT sku, name, unit_price_cents, quantity FROM order_items
WHERE order_id = %(order_id)s ORDER BY sku;

-- name: close_order
-- pending_payment -> canceled or expired.
UPDATE orders SET status = %(status)s, updated_at = now()
WHERE id = %(id)s AND status = 'pending_payment'
RETURNING id;

-- name: request_close
-- Remember that the order is to be canceled/expired once its open charge ends unpaid.
UPDATE orders
SET closing_status = coalesce(closing_status, %(status)s),
    closing_requested_at = coalesce(closing_requested_at, now()), updated_at = now()
WHERE id = %(id)s AND status = 'pending_payment';

-- name: mark_stock_released
-- Claim the one-time stock release of an order.
UPDATE orders SET stock_released_at = now() WHERE id = %(id)s AND stock_released_at IS NULL
RETURNING id;

-- name: return_stock
-- Put an order's units back on the shelf.
UPDATE products p SET stock = p.stock + i.quantity, updated_at = now()
FROM order_items i WHERE i.order_id = %(order_id)s AND p.sku = i.sku;

-- name: mark_paid
-- Money was taken for an order still holding its stock: it is paid. A closed order (stock
-- released) is never paid: its late money is refunded instead (kiosk.payments.refunds).
UPDATE orders
SET status = 'paid', paid_intent_id = %(intent_id)s, paid_at = now(), updated_at = now()
WHERE id = %(id)s AND status = 'pending_payment' AND stock_released_at IS NULL
RETURNING id;

-- name: mark_refunded
-- paid -> refunded, only by the payment that paid it.
UPDATE orders SET status = 'refunded', updated_at = now()
WHERE id = %(id)s AND status = 'paid' AND paid_intent_id = %(intent_id)s
RETURNING id;

-- name: due_for_expiry
-- Orders still waiting for payment past their expires_at (for the periodic expiry job).
SELECT id FROM orders
WHERE status = 'pending_payment' AND expires_at <= now() AND closing_status IS NULL
ORDER BY expires_at LIMIT %(limit)s;
