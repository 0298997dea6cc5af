"""Named SQL queries, kept in `.sql` files beside the code that runs them.

A file holds blocks that start with `-- name: <query_name>` followed by a comment line saying what
it does, as procrastinate does in its own `sql/queries.sql`. Parameters use psycopg's
`%(name)s` placeholders; nothing is ever built from user input.

A query's text starts at its SQL, without the comment lines above it (procrastinate drops them
too): tracing names a statement's span by its first word (`SELECT`, `WITH`, ...), which would
otherwise be `--`. Comments inside a statement stay. A block named `<name>_with` is a WITH list,
not a statement: statements of its file compose it in with psycopg's `sql.SQL.format`
(kiosk/jobs/fetcher.py's `{fetch_with}`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str, source: str) -> dict[str, str]:
    """The named queries of one file's text, each from its first line of SQL (`source` names the
    file in errors)."""
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"duplicate query name {name!r} in {source}")
        lines = body.strip().splitlines()
        while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
            lines.pop(0)
        if not lines:
            raise ValueError(f"query {name!r} in {source} has no SQL")
        queries[name] = "\n".join(lines)
    return queries


@functools.cache
def load_queries(package: str, filename: str = "queries.sql") -> Mapping[str, str]:
    """The named queries of `package`/`filename`, read once per process and shared read-only by
    every module that loads them."""
    text = (resources.files(package) / filename).read_text(encoding="utf-8")
    return MappingProxyType(parse_queries(text, f"{package}/{filename}"))
