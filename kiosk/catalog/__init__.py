"""The catalog: products, their prices and the stock left to sell."""
