"""The embedded host from Python: emit, outcomes, errors, shutdown."""

from __future__ import annotations

import datetime
import socket
import threading
import time
from pathlib import Path

import pytest

import hookhost
from hookhost.profiler_hook import HookhostHook


def drift(seq: int = 0) -> dict:
    return {
        "event_type": "DataDriftDetected",
        "timestamp": "2025-01-15T10:30:00Z",
        "metadata": {"table": "orders", "column": "amount", "seq": seq},
    }


def test_emit_returns_the_event_id_and_shutdown_drains_every_event(plugins):
    host = hookhost.Host(plugins=plugins(noop="noop"), watch=False)
    ids = [host.emit(drift(seq)) for seq in range(50)]
    assert len(set(ids)) == 50
    summaries = host.shutdown()
    assert summaries["noop"]["handled"] == 50
    assert sum(summaries["noop"]["failed"].values()) == 0
    assert host.stopped
    # A second shutdown returns the same summaries.
    assert host.shutdown()["noop"]["handled"] == 50


def test_emit_and_wait_returns_each_plugins_outcome(plugins):
    host = hookhost.Host(plugins=plugins(noop="noop", failing="returns-error"), watch=False)
    report = host.emit_and_wait(dict(drift(), event_id="evt-1"), timeout=30)
    assert report["event_id"] == "evt-1"
    assert report["outcomes"]["noop"]["ok"] is True
    assert report["outcomes"]["noop"]["class"] is None
    failing = report["outcomes"]["failing"]
    assert failing["ok"] is False
    assert failing["class"] == "error"
    assert failing["message"]
    assert report["skipped"] == {}
    host.shutdown()


def test_a_trapping_hook_does_not_disturb_python_or_the_other_hooks(plugins):
    host = hookhost.Host(plugins=plugins(noop="noop", panics="panics"), watch=False)
    for seq in range(3):
        report = host.emit_and_wait(drift(seq), timeout=30)
        assert report["outcomes"]["panics"]["class"] == "trap"
        assert report["outcomes"]["noop"]["ok"] is True
    summaries = host.shutdown()
    assert summaries["noop"]["handled"] == 3
    assert summaries["panics"]["failed"]["trap"] >= 3
    # Python is still fine.
    assert sum(range(10)) == 45


def test_a_malformed_event_raises_malformed_event_naming_the_key(plugins):
    host = hookhost.Host(plugins=plugins(noop="noop"), watch=False)
    with pytest.raises(hookhost.MalformedEvent, match="event_type"):
        host.emit({"metadata": {"table": "orders"}})
    with pytest.raises(hookhost.MalformedEvent, match="metadata"):
        host.emit({"event_type": "DataDriftDetected", "metadata": [1, 2]})
    with pytest.raises(hookhost.MalformedEvent, match="dict or have a to_dict"):
        host.emit(42)
    for lone_surrogate in ({"note": "\ud800"}, {"\udfff": 1}):
        with pytest.raises(hookhost.MalformedEvent, match="not UTF-8 text"):
            host.emit({"event_type": "DataDriftDetected", "metadata": lone_surrogate})
    assert issubclass(hookhost.MalformedEvent, hookhost.Error)
    summaries = host.shutdown()
    assert summaries["noop"]["handled"] == 0


def test_objects_with_to_dict_and_python_values_are_read(plugins):
    class ProfilerEvent:
        def to_dict(self):
            return {
                "event_type": "ProfilingCompleted",
                "timestamp": datetime.datetime(2025, 1, 15, 10, 30),
                "metadata": {
                    "table": "orders",
                    "row_count": 12,
                    "duration_seconds": float("nan"),
                    "when": datetime.date(2025, 1, 15),
                    "columns": ("a", "b"),
                    "other": {1: object()},
                },
            }

    host = hookhost.Host(plugins=plugins(noop="noop"), watch=False)
    report = host.emit_and_wait(ProfilerEvent(), timeout=30)
    assert report["outcomes"]["noop"]["ok"] is True
    assert host.shutdown()["noop"]["handled"] == 1


def test_strings_reach_a_hook_as_python_wrote_them(plugins, tmp_path):
    """Strings with quotes, backslashes, control characters and non-ASCII
    text, as keys and values, arrive unchanged: the `sql` hook's row holds
    the event's metadata as JSON that reads back to the dict emitted."""
    import json
    import sqlite3

    db = tmp_path / "events.db"
    config = tmp_path / "hookhost.toml"
    config.write_text(
        f'[databases.events]\nurl = "sqlite://{db}"\n'
        '[plugins.sql]\ndatabases = ["events"]\n'
        '[plugins.sql.settings]\ndatabase = "events"\n'
    )
    metadata = {
        "table": 'or"ders\\ \u00e9t\u00e9 \U0001f600',
        "column": "tab\there\nnew line \x01 \x1f \x7f",
        'key "quoted"\\': "plain",
        "nested": {"list": ["a\"b", "c\\d", "\u2028"], "n": 1},
    }
    host = hookhost.Host(plugins=plugins(sql="sql"), config=config, watch=False)
    event_id = host.emit(
        {"event_type": "DataDriftDetected", "timestamp": "2025-01-15T10:30:00Z",
         "metadata": metadata}
    )
    summaries = host.shutdown()
    assert summaries["sql"]["handled"] == 1, summaries
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT table_name, column_name, metadata FROM hookhost_events "
            "WHERE event_id = ?", (event_id,)
        ).fetchall()
    assert len(rows) == 1, rows
    table, column, written = rows[0]
    assert (table, column) == (metadata["table"], metadata["column"])
    assert json.loads(written) == metadata


def test_other_python_threads_run_while_emit_and_wait_waits(plugins, tmp_path):
    """`emit_and_wait` releases the GIL while it waits: a thread ticking
    every millisecond keeps ticking while it waits 300 ms for a hook that
    runs into its timeout."""
    config = tmp_path / "hookhost.toml"
    config.write_text(
        "[plugins.slow]\ntimeout_ms = 300\nmax_attempts = 1\nfuel = 9223372036854775807\n"
    )
    host = hookhost.Host(plugins=plugins(slow="slow"), config=config, watch=False)
    ticks = [0]
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        before = ticks[0]
        report = host.emit_and_wait(drift(), timeout=30)
        during = ticks[0] - before
    finally:
        stop.set()
        ticker.join()
    assert report["outcomes"]["slow"]["class"] == "timeout"
    assert during >= 20, f"the other thread ticked {during} times in 300 ms"
    host.shutdown()


def test_emit_never_waits_for_room_it_raises_queue_full(plugins, tmp_path):
    config = tmp_path / "hookhost.toml"
    config.write_text(
        '[plugins.slow]\ntimeout_ms = 5000\nqueue_capacity = 2\non_full = "wait"\n'
    )
    host = hookhost.Host(
        plugins=plugins(slow="slow"), config=config, watch=False, drain_timeout=0.5
    )
    started = time.monotonic()
    with pytest.raises(hookhost.QueueFull, match="slow"):
        for seq in range(10):
            host.emit(drift(seq))
    assert time.monotonic() - started < 2.0
    host.shutdown()


def test_emit_after_shutdown_raises_host_stopped(plugins):
    host = hookhost.Host(plugins=plugins(noop="noop"), watch=False)
    host.shutdown()
    with pytest.raises(hookhost.HostStopped):
        host.emit(drift())


def test_a_bad_config_raises_start_error_naming_the_file_and_line(plugins, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[defaults]\nfuel = -1\n")
    with pytest.raises(hookhost.StartError) as raised:
        hookhost.Host(plugins=plugins(noop="noop"), config=config, watch=False)
    message = str(raised.value)
    assert "bad.toml" in message and ":2" in message


def test_a_broken_plugin_is_reported_and_the_others_serve(plugins, tmp_path):
    folder = plugins(noop="noop")
    (folder / "broken.wasm").write_bytes(b"\0asm not really")
    host = hookhost.Host(plugins=folder, watch=False)
    errors = host.load_errors()
    assert len(errors) == 1 and errors[0][0].endswith("broken.wasm")
    assert host.emit_and_wait(drift(), timeout=30)["outcomes"]["noop"]["ok"] is True
    host.shutdown()


def test_the_profiler_hook_never_raises_into_the_profiler(plugins):
    hook = HookhostHook(plugins=str(plugins(noop="noop")))
    hook.handle_event(drift())
    hook.handle_event({"metadata": {}})  # malformed: logged and counted
    hook.handle_event(object())  # not an event at all
    assert hook.failed == 2
    # Hooks built again with the same params share one host.
    again = HookhostHook(plugins=str(plugins(noop="noop")))
    assert again._host is hook._host


def test_the_profiler_hook_does_not_raise_when_the_host_cannot_start(plugins, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[defaults]\nfuel = -1\n")
    hook = HookhostHook(plugins=str(plugins(noop="noop")), config=str(config))
    hook.handle_event(drift())
    assert hook.failed == 1


def test_the_forwarder_counts_a_daemon_it_cannot_reach_and_never_raises():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on `port` any more.
    forwarder = hookhost.Forwarder(f"http://127.0.0.1:{port}", timeout=1.0)
    started = time.monotonic()
    assert forwarder.emit(drift()) is False
    assert time.monotonic() - started < 2.0
    assert (forwarder.sent, forwarder.failed) == (0, 1)
