"""Side effects of a paid order: the receipt email and the notify hook, each at least once, every
copy with its delivery's key; the delivery ledger and its admin API."""
