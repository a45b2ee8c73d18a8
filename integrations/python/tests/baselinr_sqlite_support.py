"""A custom hook module for the baselinr end-to-end test
(`test_baselinr_e2e.py`), listed first in the profiler's `hooks:`.

Importing it registers a sample-stddev aggregate, `stddev`, on every
`sqlite3` connection SQLAlchemy opens from then on: SQLite has no `STDDEV`,
and baselinr's metric calculator selects `stddev(...)` for every numeric
column (workaround 1 of `test_baselinr_e2e.py`).

`RecordEvents(path=...)` appends every event the profiler emits to `path`
as a JSON line (`event.to_dict()`), so that a test can tell what the
profiler emitted apart from what its SQL hook and hookhost wrote.
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any, Optional

from sqlalchemy import event
from sqlalchemy.engine import Engine


class _SampleStddev:
    """Welford's running sample standard deviation; NULLs are skipped."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def step(self, value: Any) -> None:
        if value is None:
            return
        try:
            x = float(value)
        except (TypeError, ValueError):
            return
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    def finalize(self) -> Optional[float]:
        if self.n < 2:
            return None
        return math.sqrt(self.m2 / (self.n - 1))


@event.listens_for(Engine, "connect")
def _register_stddev(dbapi_connection: Any, _record: Any) -> None:
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.create_aggregate("stddev", 1, _SampleStddev)


class RecordEvents:
    """A profiler hook that appends each event's `to_dict()` to `path`."""

    def __init__(self, path: Optional[str] = None, **_ignored: Any) -> None:
        self.path = path

    def handle_event(self, event: Any) -> None:
        if not self.path:
            return
        line = json.dumps(event.to_dict(), default=str)
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(line + "\n")
