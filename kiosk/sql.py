"""Named SQL queries, kept in `.sql` files beside the code that runs them.

A file holds blocks that start with `-- name: <query_name>` followed by a comment line saying what
it does, as procrastinate does in its own `sql/queries.sql`. Parameters use psycopg's
`%(name)s` placeholders; nothing is ever built from user input.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@functools.cache
def load_queries(package: str, filename: str = "queries.sql") -> Mapping[str, str]:
    """The named queries of `package`/`filename`, read once per process and shared read-only by
    every module that loads them."""
    text = (resources.files(package) / filename).read_text(encoding="utf-8")
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"duplicate query name {name!r} in {package}/{filename}")
        queries[name] = body.strip()
    return MappingProxyType(queries)
