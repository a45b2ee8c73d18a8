"""Cost of `emit` to the Python caller, next to a profiler's own in-process
no-op hook, in one run:

    python bench.py PLUGINS_DIR [--events N] [--url http://127.0.0.1:8787]

PLUGINS_DIR holds the hooks to load (five copies of a trivial one, for the
README's numbers). Prints microseconds per event for: a no-op Python hook
called as a profiler's event bus calls its hooks; `Host.emit` in-process
(time in `emit` only, then the time until every hook handled every event);
and, with `--url`, `Forwarder.emit` to that daemon. Release wheel expected:
a dev build measures the unoptimized host.
"""

from __future__ import annotations

import argparse
import time

import hookhost


def event(seq: int) -> dict:
    return {
        "event_type": "DataDriftDetected",
        "timestamp": "2025-01-15T10:30:00Z",
        "metadata": {
            "table": "orders",
            "column": f"c{seq % 10}",
            "metric": "mean",
            "baseline_value": 10.5,
            "current_value": 12.25,
            "change_percent": 16.7,
            "drift_severity": "medium",
            "run_id": "run-1",
            "seq": seq,
        },
    }


class NoopHook:
    def handle_event(self, event) -> None:
        pass


def per_event_us(seconds: float, n: int) -> float:
    return seconds * 1e6 / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("plugins")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--url")
    args = parser.parse_args()
    n = args.events
    events = [event(seq) for seq in range(n)]

    hooks = [NoopHook()]
    started = time.perf_counter()
    for e in events:
        for hook in hooks:
            try:
                hook.handle_event(e)
            except Exception:
                pass
    noop_us = per_event_us(time.perf_counter() - started, n)
    print(f"profiler's no-op Python hook:   {noop_us:8.2f} us per event")

    host = hookhost.Host(plugins=args.plugins, watch=False)
    plugins = len(host.summaries())
    started = time.perf_counter()
    for e in events:
        host.emit(e)
    emit_us = per_event_us(time.perf_counter() - started, n)
    summaries = host.shutdown()
    done_us = per_event_us(time.perf_counter() - started, n)
    handled = sum(s["handled"] for s in summaries.values())
    assert handled == n * plugins, f"{handled} handled, expected {n * plugins}"
    print(f"Host.emit, {plugins} plugins (caller): {emit_us:8.2f} us per event "
          f"({emit_us / noop_us:.0f}x the no-op hook)")
    print(f"  until every hook handled it:  {done_us:8.2f} us per event")
    print(f"goal: Host.emit under 5 us per event: {'met' if emit_us < 5 else 'MISSED'}")

    if args.url:
        forwarder = hookhost.Forwarder(args.url)
        m = min(n, 5_000)
        started = time.perf_counter()
        for e in events[:m]:
            forwarder.emit(e)
        forward_us = per_event_us(time.perf_counter() - started, m)
        print(f"Forwarder.emit ({m} events):   {forward_us:8.2f} us per event "
              f"(sent {forwarder.sent}, failed {forwarder.failed})")


if __name__ == "__main__":
    main()
