"""End to end with a real profiler: baselinr 0.9.0 from PyPI, on SQLite.

In a virtualenv of its own (kept in `$CARGO_TARGET_DIR/python/`), with the
built hookhost wheel, baselinr profiles a small SQLite table three times
(rows appended in between), the data changes (a column's mean moves by
+80, a column is added and one dropped), it profiles once more and runs
`baselinr drift`. Every command is the `baselinr` CLI in a subprocess, with
three hooks in its config, in this order:

1. `baselinr_sqlite_support.RecordEvents` (this folder): its import gives
   SQLite a `stddev` aggregate, and it writes each event's `to_dict()` to a
   JSON-lines file, which is what the profiler emitted;
2. baselinr's own SQL event hook (`type: sql`) writing to one SQLite file;
3. `hookhost.profiler_hook.HookhostHook`, whose hookhost sends every event
   to its built-in `sql` hook writing to another SQLite file: in the
   profiler's process (`plugins`, `config`), or through a `hookhost run
   --listen` daemon (`url`), stopped with SIGTERM before the comparison.

The rows hookhost wrote must be, as a multiset, exactly the events the
profiler emitted and exactly the rows its own SQL hook wrote, compared by
event type, run id, table, column, metric, baseline and current value,
change, drift severity (floats to 12 significant digits), timestamp (as a
UTC instant) and the whole metadata (parsed). In-process, the `sql` hook's
batches wait longer than a command runs, so each command's rows are
written by the host's drain at interpreter exit.

baselinr 0.9.0 needs five workarounds on SQLite, numbered where they are
made: (1) a `stddev` aggregate, which SQLite lacks; (2) AUTOCOMMIT on the
storage connection, or "database is locked"; (3) the schema-version table
created first, then `migrate apply --target 10`; (4) no expectation
learning in the profile after the change, or the change is learned before
it is detected; (5) no `drift --output`, which fails after the events are
emitted. And a sixth: each profile starts in a new second
(`_next_second`). Skips only when PyPI cannot be reached to install
baselinr.
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

BASELINR = "baselinr==0.9.0"
HERE = Path(__file__).resolve().parent
TARGET = Path(
    os.environ.get("CARGO_TARGET_DIR") or Path.home() / ".cache" / "hookhost" / "target"
)
WHEELS = Path(os.environ.get("HOOKHOST_WHEEL_DIR") or TARGET / "python" / "wheels")
DAEMON = Path(os.environ.get("HOOKHOST_BIN") or TARGET / "debug" / "hookhost")
VENV = TARGET / "python" / "baselinr-venv"
COMMAND_TIMEOUT = 120

# What the scenario emitted in every run on the machine it was written on
# (baselinr 0.9.0): 9 drift events (amount's min, mean and max, from the
# last profile and from `drift`), 20 schema changes, 16 profiling events
# (4 runs, each type in both spellings) and 2 or 3 anomalies of amount's
# mean (control limits and MAD in every run, IQR in some), 47 or 48 events.
# The assertions ask for at least these.
MIN_DRIFT = 9
MIN_SCHEMA_CHANGES = 20
MIN_PROFILING = 16
MIN_ANOMALIES = 2
MIN_EVENTS = MIN_DRIFT + MIN_SCHEMA_CHANGES + MIN_PROFILING + MIN_ANOMALIES
PROFILING_TYPES = ("ProfilingStarted", "ProfilingCompleted", "profiling_started", "profiling_completed")


# --- the virtualenv ---------------------------------------------------------


def _pip(venv: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _installed_version(venv: Path, dist: str) -> Optional[str]:
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            f"import importlib.metadata as m; print(m.version({dist!r}))",
        ],
        capture_output=True,
        text=True,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def _index_unreachable() -> Optional[str]:
    """Why the package index cannot be reached, or None if it can."""
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/").rstrip("/")
    try:
        with urllib.request.urlopen(f"{index}/baselinr/", timeout=10) as response:
            response.read(1)
        return None
    except urllib.error.HTTPError:
        return None  # it answered
    except OSError as err:
        return f"{index} cannot be reached ({err})"


@pytest.fixture(scope="session")
def baselinr_venv() -> Path:
    """A virtualenv with baselinr 0.9.0 from PyPI and the built hookhost
    wheel, made once and kept in `$CARGO_TARGET_DIR/python/baselinr-venv`."""
    wheels = sorted(WHEELS.glob("hookhost-*.whl"))
    if not wheels:
        pytest.fail(
            f"no hookhost wheel in {WHEELS}: run the tests with "
            "integrations/python/run-tests.sh, which builds it"
        )
    wheel = wheels[-1]
    if not (VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    if _installed_version(VENV, "baselinr") != "0.9.0":
        install = _pip(VENV, "install", "--quiet", "--timeout", "20", "--retries", "2", BASELINR)
        if install.returncode != 0:
            why = _index_unreachable()
            if why:
                pytest.skip(f"cannot install {BASELINR} from PyPI: {why}")
            pytest.fail(f"pip install {BASELINR} failed:\n{install.stdout}\n{install.stderr}")
    # The wheel is rebuilt by every run of run-tests.sh: install it again
    # whenever its content changed.
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    stamp = VENV / "hookhost-wheel.sha256"
    if not stamp.exists() or stamp.read_text().strip() != digest:
        install = _pip(VENV, "install", "--quiet", "--force-reinstall", "--no-deps", str(wheel))
        assert install.returncode == 0, f"installing {wheel.name}:\n{install.stderr}"
        stamp.write_text(digest + "\n")
    return VENV


# --- the daemon ---------------------------------------------------------------


class Daemon:
    """`hookhost run --listen 127.0.0.1:0`, its stderr collected by a thread."""

    def __init__(self, plugins: Path, config: Path, data_dir: Path, stdout: Path) -> None:
        if not DAEMON.exists():
            pytest.fail(f"{DAEMON} does not exist: build it with `cargo build -p hookhost`")
        self.lines: List[str] = []
        self._listening = threading.Event()
        self.url: Optional[str] = None
        self.stdout_path = stdout
        self._stdout = open(stdout, "w")
        self.process = subprocess.Popen(
            [
                str(DAEMON), "run", "--listen", "127.0.0.1:0",
                "--plugins", str(plugins), "--config", str(config),
                "--data-dir", str(data_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._listening.wait(60) or self.url is None:
            self.kill()
            pytest.fail("the daemon did not say where it listens:\n" + self.stderr())

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if found and self.url is None:
                self.url = found.group(1)
                self._listening.set()
        self._listening.set()

    def stderr(self) -> str:
        return "".join(self.lines)

    def output(self) -> str:
        """Its stdout and stderr."""
        return self.stdout_path.read_text() + self.stderr()

    def stop(self) -> int:
        """SIGTERM: the daemon drains and exits; returns its exit code."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._stdout.close()


# --- the scenario -------------------------------------------------------------


def _add_orders(db: Path, first_id: int, count: int) -> None:
    rnd = random.Random(first_id)
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO orders (id, amount, quantity, region, note) VALUES (?, ?, ?, ?, ?)",
            [
                (
                    i,
                    round(100 + rnd.uniform(-10, 10), 2),
                    rnd.randint(1, 5),
                    rnd.choice(["EU", "US", "APAC"]),
                    f"n{i % 7}",
                )
                for i in range(first_id, first_id + count)
            ],
        )
    conn.close()


def _change_orders(db: Path) -> None:
    """The mean of `amount` moves by +80, `discount` is added, `note` dropped."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE orders SET amount = amount + 80")
        conn.execute("ALTER TABLE orders ADD COLUMN discount REAL")
        conn.execute("UPDATE orders SET discount = id % 10")
        conn.execute("ALTER TABLE orders DROP COLUMN note")
    conn.close()


def _next_second() -> None:
    """Waits for the wall clock's next whole second.

    baselinr's expectation learner and anomaly detector read a run's history
    with `runs.profiled_at < CURRENT_TIMESTAMP`, which SQLite gives to the
    second ('2026-01-01 10:00:00') and which compares as text with
    `profiled_at` ('2026-01-01 10:00:00.412345'): a run profiled in the same
    second as the current one is not history yet. Our runs take under a
    second, so each profile waits for the next second first (without it the
    number of anomalies varies from 0 to 3).
    """
    time.sleep(1.02 - time.time() % 1)


def _execute(db: Path, *statements: str) -> None:
    conn = sqlite3.connect(db)
    with conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()


# baselinr's DDL for its events table (storage/schema.sql), without the
# inline INDEX clauses SQLite does not take. Its SQL hook does not create it.
BASELINR_EVENTS_DDL = """
CREATE TABLE baselinr_events (
    event_id VARCHAR(36) PRIMARY KEY,
    event_type VARCHAR(100) NOT NULL,
    run_id VARCHAR(36),
    table_name VARCHAR(255),
    column_name VARCHAR(255),
    metric_name VARCHAR(100),
    baseline_value FLOAT,
    current_value FLOAT,
    change_percent FLOAT,
    drift_severity VARCHAR(20),
    timestamp TIMESTAMP NOT NULL,
    metadata TEXT,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
)
"""

# Workaround 3: the version table first, then `migrate apply --target 10`.
SCHEMA_VERSION_DDL = """
CREATE TABLE IF NOT EXISTS baselinr_schema_version (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    description VARCHAR(500),
    migration_script VARCHAR(255),
    checksum VARCHAR(64)
)
"""


class Scenario:
    """Files of one run in `root`; `hookhost_params` are HookhostHook's."""

    def __init__(self, root: Path, venv: Path, guest_dir: Path) -> None:
        self.root = root
        self.venv = venv
        self.source = root / "source.db"
        self.storage = root / "storage.db"
        self.baselinr_events = root / "baselinr-events.db"
        self.hookhost_events = root / "hookhost-events.db"
        self.recorded = root / "emitted.jsonl"
        self.config = root / "baselinr.yaml"
        self.plugins = root / "plugins"
        self.plugins.mkdir()
        shutil.copy(guest_dir / "plugins" / "sql.wasm", self.plugins / "sql.wasm")
        self.hookhost_config = root / "hookhost.toml"
        self.hookhost_config.write_text(
            "[databases.events]\n"
            f'url = "sqlite://{self.hookhost_events}"\n'
            "[plugins.sql]\n"
            'databases = ["events"]\n'
            # Longer than any command: in-process, a command's rows are
            # written only by the drain at interpreter exit.
            "batch_wait_ms = 5000\n"
            "[plugins.sql.settings]\n"
            'database = "events"\n'
            'table = "hookhost_events"\n'
        )
        self.timings: List[Tuple[str, float]] = []
        # What the profiler logged about the hooks (for failure messages).
        self.hook_log: List[str] = []

    def write_config(self, hookhost_params: Dict[str, Any], learn: bool) -> None:
        config = {
            "environment": "test",
            "source": {"type": "sqlite", "database": "source", "filepath": str(self.source)},
            "storage": {
                "connection": {
                    "type": "sqlite",
                    "database": "storage",
                    "filepath": str(self.storage),
                    # Workaround 2: "database is locked" otherwise.
                    "extra_params": {"isolation_level": "AUTOCOMMIT"},
                },
                # Workaround 4: no learning in the run after the change.
                "enable_expectation_learning": learn,
                "enable_anomaly_detection": True,
                "min_samples": 2,
            },
            "profiling": {"tables": [{"table": "orders", "schema": "main"}]},
            "hooks": {
                "enabled": True,
                "hooks": [
                    {
                        "type": "custom",
                        "module": "baselinr_sqlite_support",
                        "class_name": "RecordEvents",
                        "params": {"path": str(self.recorded)},
                    },
                    {
                        "type": "sql",
                        "table_name": "baselinr_events",
                        "connection": {
                            "type": "sqlite",
                            "database": "events",
                            "filepath": str(self.baselinr_events),
                        },
                    },
                    {
                        "type": "custom",
                        "module": "hookhost.profiler_hook",
                        "class_name": "HookhostHook",
                        "params": hookhost_params,
                    },
                ],
            },
        }
        # JSON is YAML.
        self.config.write_text(json.dumps(config, indent=2))

    def baselinr(self, *args: str) -> subprocess.CompletedProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(HERE)  # baselinr_sqlite_support
        env.pop("PYTHONHOME", None)
        start = time.monotonic()
        result = subprocess.run(
            [str(self.venv / "bin" / "baselinr"), *args],
            cwd=self.root,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        self.timings.append((" ".join(args[:2]), time.monotonic() - start))
        self.hook_log += [
            line
            for line in (result.stdout + result.stderr).splitlines()
            if "hookhost" in line or "hook" in line.lower() and "fail" in line.lower()
        ]
        assert result.returncode == 0, (
            f"baselinr {' '.join(args)} exited with {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
        return result

    def run(self, hookhost_params: Dict[str, Any]) -> None:
        with sqlite3.connect(self.source) as conn:
            conn.execute(
                "CREATE TABLE orders (id INTEGER PRIMARY KEY, amount REAL, "
                "quantity INTEGER, region TEXT, note TEXT)"
            )
        conn.close()
        _add_orders(self.source, 0, 200)
        _execute(self.storage, SCHEMA_VERSION_DDL)
        _execute(self.baselinr_events, BASELINR_EVENTS_DDL)

        self.write_config(hookhost_params, learn=True)
        cfg = str(self.config)
        self.baselinr("migrate", "apply", "--config", cfg, "--target", "10")
        # History: three runs with rows appended in between (the anomaly
        # detector needs expectations learned from at least two).
        self.baselinr("profile", "--config", cfg)
        _add_orders(self.source, 200, 50)
        _next_second()
        self.baselinr("profile", "--config", cfg)
        _add_orders(self.source, 250, 50)
        _next_second()
        self.baselinr("profile", "--config", cfg)

        _change_orders(self.source)
        self.write_config(hookhost_params, learn=False)
        _next_second()
        self.baselinr("profile", "--config", cfg)
        # Workaround 5: no --output.
        self.baselinr("drift", "--config", cfg, "--dataset", "orders")


# --- the comparison -----------------------------------------------------------

Key = Tuple[Any, ...]


def _number(value: Any) -> Any:
    """A float column's value as both writers leave it; floats to 12
    significant digits (the JSON between Python and hookhost may round the
    last bit), NaN as empty."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return float(f"{value:.12g}")
    return value


def _plain(value: Any) -> Any:
    """Metadata as hookhost writes it: a float that is not finite as its
    name, floats compared as `_number` does."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return float(f"{value:.12g}")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _instant(value: Any) -> str:
    """A timestamp as UTC, to the microsecond; naive ones are UTC."""
    parsed = datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return parsed.isoformat(sep=" ", timespec="microseconds")


FIELDS = (
    "event_type", "run_id", "table_name", "column_name", "metric_name",
    "baseline_value", "current_value", "change_percent", "drift_severity",
)


def _key(fields: Dict[str, Any], timestamp: Any, metadata: Dict[str, Any]) -> Key:
    return (
        *(_number(fields[name]) for name in FIELDS),
        _instant(timestamp),
        json.dumps(_plain(metadata), sort_keys=True),
    )


def emitted_keys(path: Path) -> "collections.Counter[Key]":
    """The events the profiler emitted, keyed as its SQL hook files them."""
    keys: "collections.Counter[Key]" = collections.Counter()
    if not path.exists():
        return keys
    for line in path.read_text().splitlines():
        event = json.loads(line)
        meta = event["metadata"] or {}
        fields = {
            "event_type": event["event_type"],
            "run_id": meta.get("run_id"),
            "table_name": meta.get("table"),
            "column_name": meta.get("column"),
            "metric_name": meta.get("metric"),
            "baseline_value": meta.get("baseline_value"),
            "current_value": meta.get("current_value"),
            "change_percent": meta.get("change_percent"),
            "drift_severity": meta.get("drift_severity"),
        }
        keys[_key(fields, event["timestamp"], meta)] += 1
    return keys


def table_keys(db: Path, table: str) -> "collections.Counter[Key]":
    if not db.exists():
        return collections.Counter()
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(f"SELECT * FROM {table}").fetchall()
    except sqlite3.OperationalError:  # no such table: nothing was written
        rows = []
    finally:
        conn.close()
    keys: "collections.Counter[Key]" = collections.Counter()
    for row in rows:
        # `json.loads` reads a bare NaN (baselinr's json.dumps writes one).
        keys[_key(dict(row), row["timestamp"], json.loads(row["metadata"]))] += 1
    return keys


def by_type(keys: "collections.Counter[Key]") -> Dict[str, int]:
    counts: Dict[str, int] = collections.Counter()
    for key, n in keys.items():
        counts[key[0]] += n
    return dict(sorted(counts.items()))


def _difference(left: "collections.Counter[Key]", right: "collections.Counter[Key]") -> str:
    only_left = left - right
    only_right = right - left
    lines = [f"only in the first ({sum(only_left.values())}):"]
    lines += [f"  {k[:-1]}" for k in list(only_left)[:10]]
    lines += [f"only in the second ({sum(only_right.values())}):"]
    lines += [f"  {k[:-1]}" for k in list(only_right)[:10]]
    return "\n".join(lines)


def assert_same_events(scenario: Scenario, mode: str) -> Dict[str, int]:
    emitted = emitted_keys(scenario.recorded)
    baselinr_rows = table_keys(scenario.baselinr_events, "baselinr_events")
    hookhost_rows = table_keys(scenario.hookhost_events, "hookhost_events")

    counts = by_type(emitted)
    print(f"\n[{mode}] events emitted by type: {counts}")
    print(f"[{mode}] hookhost_events rows by type: {by_type(hookhost_rows)}")
    print(f"[{mode}] baselinr_events rows by type: {by_type(baselinr_rows)}")
    print(f"[{mode}] baselinr commands: " + ", ".join(f"{c} {t:.1f}s" for c, t in scenario.timings))

    assert hookhost_rows == emitted, (
        "hookhost's sql hook (first) did not write exactly the events the profiler "
        "emitted (second):\n" + _difference(hookhost_rows, emitted)
        + "\nwhat the profiler logged about its hooks:\n" + "\n".join(scenario.hook_log[-20:])
    )
    assert baselinr_rows == hookhost_rows, (
        "the profiler's own SQL hook (first) and hookhost's (second) wrote different "
        "events:\n" + _difference(baselinr_rows, hookhost_rows)
    )

    total = sum(emitted.values())
    assert total >= MIN_EVENTS, counts
    assert counts.get("DataDriftDetected", 0) >= MIN_DRIFT, counts
    assert counts.get("SchemaChangeDetected", 0) >= MIN_SCHEMA_CHANGES, counts
    assert counts.get("AnomalyDetected", 0) >= MIN_ANOMALIES, counts
    profiling = sum(counts.get(t, 0) for t in PROFILING_TYPES)
    assert profiling >= MIN_PROFILING, counts

    # The change itself is among them: `amount`'s mean drifted, `discount`
    # was added and `note` removed.
    hookhost_meta = [json.loads(k[-1]) for k in hookhost_rows.elements()]
    hookhost_fields = list(hookhost_rows.elements())
    assert any(
        k[0] == "DataDriftDetected" and k[3] == "amount" and k[4] == "mean"
        for k in hookhost_fields
    ), "no drift of amount's mean"
    changes = {(m.get("change_type"), m.get("column")) for m in hookhost_meta}
    assert ("column_added", "discount") in changes, changes
    assert ("column_removed", "note") in changes, changes
    return counts


# --- the tests ----------------------------------------------------------------


@pytest.fixture
def scenario(tmp_path: Path, baselinr_venv: Path, guest_dir: Path) -> Scenario:
    return Scenario(tmp_path, baselinr_venv, guest_dir)


def test_in_process_hookhost_writes_exactly_the_events_baselinr_emits(scenario: Scenario):
    scenario.run(
        {"plugins": str(scenario.plugins), "config": str(scenario.hookhost_config)}
    )
    assert_same_events(scenario, "in-process")


def test_hookhost_daemon_writes_exactly_the_events_baselinr_forwards(
    scenario: Scenario, tmp_path: Path
):
    data_dir = tmp_path / "hookhost-data"
    data_dir.mkdir()
    daemon = Daemon(
        scenario.plugins, scenario.hookhost_config, data_dir, tmp_path / "daemon.stdout"
    )
    try:
        assert daemon.url is not None
        scenario.run({"url": daemon.url, "timeout": 10})
        code = daemon.stop()
        assert code == 0, f"the daemon exited with {code}:\n{daemon.stderr()}"
    finally:
        daemon.kill()
    print("\n[daemon] " + daemon.output())
    counts = assert_same_events(scenario, "daemon")
    accepted = re.search(r"(\d+) events accepted over HTTP", daemon.output())
    assert accepted, daemon.output()
    assert int(accepted.group(1)) == sum(counts.values()), daemon.output()
