"""Named queries (kiosk/sql.py): each query's text starts at its SQL, so tracing names its span by
the statement's first word (`SELECT`, ...), not `--` (docs/observability.md, "Spans")."""

from __future__ import annotations

import pytest

from kiosk import sql
from tests.support import PROJECT_DIR

KIOSK = PROJECT_DIR / "kiosk"
# How every kiosk statement starts: the operation its span is named by.
VERBS = {"SELECT", "WITH", "INSERT", "UPDATE", "DELETE", "EXPLAIN"}

TEXT = """-- Header of the file.

-- name: first
-- What it does,
--   on two lines.

SELECT 1 -- a trailing comment stays
  -- and so does one inside
  FROM t;

-- name: second
-- The next one
   -- indented comment before it
UPDATE t SET a = 1;
"""


def test_the_comment_lines_above_a_query_are_not_its_text() -> None:
    assert sql.parse_queries(TEXT, "test.sql") == {
        "first": "SELECT 1 -- a trailing comment stays\n  -- and so does one inside\n  FROM t;",
        "second": "UPDATE t SET a = 1;",
    }


def test_a_query_without_sql_or_named_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="'empty' in test.sql has no SQL"):
        sql.parse_queries(
            "-- name: empty\n-- only a comment\n\n-- name: next\nSELECT 1;", "test.sql"
        )
    with pytest.raises(ValueError, match="duplicate query name 'q' in test.sql"):
        sql.parse_queries("-- name: q\nSELECT 1;\n-- name: q\nSELECT 2;", "test.sql")


@pytest.mark.parametrize(
    "path", sorted(KIOSK.rglob("*.sql")), ids=lambda p: str(p.relative_to(KIOSK))
)
def test_every_kiosk_query_starts_with_its_statement(path) -> None:
    package = ".".join(("kiosk", *path.parent.relative_to(KIOSK).parts))
    queries = sql.load_queries(package, path.name)
    assert queries
    # A `*_with` block is a WITH list that statements of its file compose in, not a statement.
    first_words = {
        name: query.split(None, 1)[0]
        for name, query in queries.items()
        if not name.endswith("_with")
    }
    assert {name: word for name, word in first_words.items() if word not in VERBS} == {}
