"""Side effects of a paid order: the receipt email and the notify hook, each at most once."""
