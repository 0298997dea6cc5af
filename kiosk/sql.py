"""Named SQL queries, kept in `.sql` files beside the code that runs them.

A file holds blocks that start with `-- name: <query_name>` followed by a comment line saying what
it does, as procrastinate does in its own `sql/queries.sql`. Parameters use psycopg's
`%(name)s` placeholders; nothing is ever built from user input.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, str]:
    text = (resources.files(package) / filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in queries:
            raise ValueError(f"duplicate query name {name!r} in {package}/{filename}")
        queries[name] = body.strip()
    return queries
