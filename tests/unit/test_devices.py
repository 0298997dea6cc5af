"""The failed-authentication window of the device tokens (devices end to end:
tests/integration/test_devices.py).
"""

from __future__ import annotations

from kiosk.devices.limiter import FailureWindow


def test_failure_window_unit():
    window = FailureWindow(limit=3, window=10, max_keys=2)
    for t in (0, 1, 2):
        assert window.retry_after("a", now=t) == 0
        window.fail("a", now=t)
    assert window.retry_after("a", now=3) == 7  # the first failure leaves the window at 10
    assert window.retry_after("b", now=3) == 0  # per address
    assert window.retry_after("a", now=10.5) == 0  # two failures left in the window
    window.fail("a", now=10.6)
    assert window.retry_after("a", now=10.6) == 1  # failures at 1, 2 and 10.6: until 11
    assert window.retry_after("a", now=11) == 0
    window.fail("b", now=12)
    window.fail("c", now=12)  # more addresses than max_keys: the least recent one is forgotten
    assert window.retry_after("a", now=12) == 0 and len(window._failures) == 2
