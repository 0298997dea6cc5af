"""job_outcomes' JSON text is always valid jsonb text (the rows themselves:
tests/integration/test_job_outcomes.py).
"""

from __future__ import annotations

import json
import math

from kiosk.jobs import outcomes


def test_json_text_is_always_valid_jsonb_text():
    assert outcomes.json_text({"a": [1, "é"]}) == '{"a": [1, "é"]}'
    assert json.loads(outcomes.json_text(object()))  # not JSON: its repr, as a string
    assert json.loads(outcomes.json_text(math.nan)) == "nan"
    assert "\\u0000" not in outcomes.json_text("a\x00b")
    big = json.loads(outcomes.json_text(list(range(10_000))))
    assert big["truncated"] is True and len(big["preview"]) == outcomes.RESULT_LIMIT
