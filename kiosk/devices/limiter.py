"""A sliding-window counter of failed authentications per client address, in process memory.

In memory on purpose: the check costs no database round trip, and an address refused by one API
process is refused by it until its failures age out. With N API processes an address may fail N
times the limit before every process refuses it; the limit slows guessing down, the 256-bit
tokens are what make guessing hopeless. At most `max_keys` addresses are tracked; past that the
least recently failing ones are forgotten first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque


class FailureWindow:
    """`limit` failures within `window` seconds from one key, and the key is refused until the
    oldest of them is `window` seconds old."""

    def __init__(self, limit: int, window: float, max_keys: int = 10_000):
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str, now: float | None = None) -> int:
        """Seconds until `key` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        failures = self._failures.get(key)
        if failures is None:
            return 0
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0
        if len(failures) < self.limit:
            return 0
        return max(1, math.ceil(failures[0] + self.window - now))

    def fail(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        failures = self._failures.pop(key, None)
        if failures is None:
            failures = deque(maxlen=self.limit)
        failures.append(now)
        self._failures[key] = failures  # most recent at the end
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)
