"""Orders: items, stock reserved at creation and released once, status transitions."""
