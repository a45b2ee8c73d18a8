"""Cost of `emit` to the Python caller, next to a profiler's own in-process
no-op hook, in one run:

    python bench.py PLUGINS_DIR [--events N] [--url http://127.0.0.1:8787]

PLUGINS_DIR holds the hooks to load (five copies of a trivial one, for the
README's numbers). Prints microseconds per event for: a no-op Python hook
called as a profiler's event bus calls its hooks; `Host.emit` in-process,
two ways: in a burst (every event emitted back to back: the time in `emit`
and the caller thread's CPU time in it, then the time until every hook
handled every event), where the hooks' work competes with the caller for
the cores; and paced (`--rate` events a second, the caller busy between
two events as a profiler is, each `emit` timed on its own), where the
hooks keep up; and, with `--url`, `Forwarder.emit` to that daemon. Release
wheel expected: a dev build measures the unoptimized host.
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
    parser.add_argument("--rate", type=int, default=20_000,
                        help="events a second in the paced run")
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
    cpu_started = time.thread_time()
    for e in events:
        host.emit(e)
    cpu_us = per_event_us(time.thread_time() - cpu_started, n)
    emit_us = per_event_us(time.perf_counter() - started, n)
    summaries = host.shutdown()
    done_us = per_event_us(time.perf_counter() - started, n)
    handled = sum(s["handled"] for s in summaries.values())
    assert handled == n * plugins, f"{handled} handled, expected {n * plugins}"
    print(f"Host.emit, {plugins} plugins, burst (caller): {emit_us:8.2f} us per event "
          f"({emit_us / noop_us:.0f}x the no-op hook), {cpu_us:.2f} us of it the "
          "caller's CPU")
    print(f"  until every hook handled it:  {done_us:8.2f} us per event")

    paced = min(n, args.rate)
    interval = 1.0 / args.rate
    host = hookhost.Host(plugins=args.plugins, watch=False)
    in_emit = 0.0
    next_slot = time.perf_counter()
    for e in events[:paced]:
        while time.perf_counter() < next_slot:
            pass  # the profiler's own work between two events
        started = time.perf_counter()
        host.emit(e)
        in_emit += time.perf_counter() - started
        next_slot = started + interval
    summaries = host.shutdown()
    handled = sum(s["handled"] for s in summaries.values())
    assert handled == paced * plugins, f"{handled} handled, expected {paced * plugins}"
    paced_us = per_event_us(in_emit, paced)
    print(f"Host.emit, {plugins} plugins, paced at {args.rate}/s ({paced} events): "
          f"{paced_us:8.2f} us per event")
    for label, us in (("in a burst", emit_us), (f"paced at {args.rate}/s", paced_us)):
        print(f"goal: Host.emit under 5 us per event, {label}: "
              f"{'met' if us < 5 else 'MISSED'}")

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
