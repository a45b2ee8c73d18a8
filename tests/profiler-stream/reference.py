"""Writes expected.jsonl: for each event of events.jsonl, the Slack payload
and the events-table row that baselinr 0.9.0's own hooks (SlackAlertHook and
SQLEventHook in baselinr/events/builtin_hooks.py) produce for it.

baselinr is not vendored. Download it and point BASELINR_SRC at the unpacked
wheel (the folder holding `baselinr/`); it needs sqlalchemy and requests:

    pip download --no-deps baselinr==0.9.0 -d /tmp/baselinr
    (cd /tmp/baselinr && unzip -q baselinr-0.9.0-py3-none-any.whl)
    pip install sqlalchemy requests
    BASELINR_SRC=/tmp/baselinr python3 tests/profiler-stream/reference.py

The hooks run unchanged; three inputs are where hookhost follows
shared/reference/slack-messages.md instead, and each such line carries a
`notes` entry saying what baselinr itself does:
- a drift event without `change_percent` makes baselinr's hook raise
  TypeError and send nothing; the reference (and hookhost) show `N/A`;
- an event timestamp with an offset is shown by baselinr's hook as its
  wall-clock time followed by "UTC"; hookhost shows the UTC time, so the
  Slack expectation is computed from the timestamp converted to UTC;
- `hookhost.severity` is hookhost's own extra column (wit/types.wit:
  the first string among severity, drift_severity, change_severity,
  threshold_type; warning -> medium, breaking -> critical).
"""

import copy
import json
import logging
import math
import os
import sys
import time
import types
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path

os.environ["TZ"] = "UTC"  # naive timestamps are UTC, as in the reference
time.tzset()
logging.disable(logging.CRITICAL)  # the TypeError above is recorded in `notes`

src = os.environ.get("BASELINR_SRC")
if not src:
    sys.exit("set BASELINR_SRC to the folder holding baselinr/ (see the docstring)")
# Only baselinr.events is needed; skip the package's own __init__ and its
# many dependencies.
package = types.ModuleType("baselinr")
package.__path__ = [str(Path(src) / "baselinr")]
sys.modules["baselinr"] = package

from baselinr.events import events as ev  # noqa: E402
from baselinr.events.builtin_hooks import SlackAlertHook, SQLEventHook  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import StaticPool  # noqa: E402

CLASSES = {
    "ProfilingStarted": ev.ProfilingStarted,
    "ProfilingCompleted": ev.ProfilingCompleted,
    "ProfilingFailed": ev.ProfilingFailed,
    "ProfilingSkipped": ev.ProfilingSkipped,
    "DataDriftDetected": ev.DataDriftDetected,
    "SchemaChangeDetected": ev.SchemaChangeDetected,
    "AnomalyDetected": ev.AnomalyDetected,
    "ValidationFailed": ev.ValidationFailed,
    "QualityScoreDegraded": ev.QualityScoreDegraded,
    "QualityScoreThresholdBreached": ev.QualityScoreThresholdBreached,
    "RetryAttempt": ev.RetryAttempt,
    "RetryExhausted": ev.RetryExhausted,
}


def canonical(event_type):
    pascal = "".join(word.capitalize() for word in event_type.split("_"))
    return event_type if event_type in CLASSES else pascal


def build(line, timestamp):
    cls = CLASSES[canonical(line["event_type"])]
    metadata = copy.deepcopy(line["metadata"])
    typed = {f.name: metadata.get(f.name) for f in fields(cls) if f.name not in
             ("event_type", "timestamp", "metadata")}
    return cls(event_type=line["event_type"], timestamp=timestamp, metadata=metadata, **typed)


class CapturingSlack(SlackAlertHook):
    def __init__(self):
        super().__init__(webhook_url="http://127.0.0.1/unused", channel="#data-alerts")
        self.sent = []

    def _send_to_slack(self, payload):
        self.sent.append(payload)


SCHEMA = """CREATE TABLE baselinr_events (
    event_id VARCHAR(36) PRIMARY KEY, event_type VARCHAR(100) NOT NULL,
    run_id VARCHAR(36), table_name VARCHAR(255), column_name VARCHAR(255),
    metric_name VARCHAR(100), baseline_value FLOAT, current_value FLOAT,
    change_percent FLOAT, drift_severity VARCHAR(20), timestamp TIMESTAMP NOT NULL,
    metadata TEXT, created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)"""

SHARED = ["event_type", "run_id", "table_name", "column_name", "metric_name",
          "baseline_value", "current_value", "change_percent", "drift_severity",
          "timestamp", "metadata"]


def hookhost_severity(metadata):
    for key in ("severity", "drift_severity", "change_severity", "threshold_type"):
        word = metadata.get(key)
        if isinstance(word, str):
            word = {"warning": "medium", "breaking": "critical"}.get(word.lower(), word.lower())
            return word if word in ("info", "low", "medium", "high", "critical") else None
    return None


def main():
    here = Path(__file__).parent
    engine = create_engine("sqlite://", poolclass=StaticPool)
    with engine.begin() as conn:
        conn.execute(text(SCHEMA))
    sql = SQLEventHook(engine)
    slack = CapturingSlack()
    out = []
    for number, raw in enumerate((here / "events.jsonl").read_text().splitlines(), 1):
        line = json.loads(raw)
        notes = []
        stamp = datetime.fromisoformat(line["timestamp"])
        # SQL: the event as baselinr would hold it.
        sql.handle_event(build(line, stamp))
        with engine.connect() as conn:
            row = conn.execute(text(
                f"SELECT {', '.join(SHARED)} FROM baselinr_events ORDER BY rowid DESC LIMIT 1"
            )).mappings().one()
        row = dict(row)
        # Slack: with the timestamp in UTC (see the docstring).
        utc = stamp
        if stamp.tzinfo is not None:
            utc = stamp.astimezone(timezone.utc).replace(tzinfo=None)
            notes.append("timestamp has an offset: baselinr shows its wall-clock time "
                         f"{stamp.strftime('%Y-%m-%d %H:%M:%S')} followed by UTC")
        event = build(line, utc)
        before = len(slack.sent)
        slack.handle_event(event)
        payload = slack.sent[-1] if len(slack.sent) > before else None
        if (payload is None and isinstance(event, ev.DataDriftDetected)
                and event.change_percent is None
                and slack.severity_order.get(event.drift_severity, 0) >= 1):
            event.change_percent = 0.0
            slack.handle_event(event)
            payload = slack.sent[-1]
            for field in payload["attachments"][0]["fields"]:
                if field["title"] == "Change":
                    field["value"] = "N/A"
            notes.append("change_percent is null: baselinr's hook raises TypeError and "
                         "sends nothing; the reference shows N/A")
        out.append({
            "line": number,
            "slack": payload,
            "row": row,
            "hookhost": {"severity": hookhost_severity(line["metadata"])},
            "notes": notes,
        })
    with open(here / "expected.jsonl", "w") as f:
        for item in out:
            # NaN is not JSON; the row keeps baselinr's metadata text as is.
            f.write(json.dumps(item, ensure_ascii=False, allow_nan=False) + "\n")


if __name__ == "__main__":
    main()
