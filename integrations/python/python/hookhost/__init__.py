"""hookhost: event hooks for data tools, run as sandboxed WebAssembly
components, embedded in this Python process.

    import hookhost

    host = hookhost.Host(plugins="plugins", config="hookhost.toml")
    host.emit({"event_type": "DataDriftDetected",
               "metadata": {"table": "orders", "column": "amount"}})
    host.shutdown()  # drains; also run at interpreter exit

``Host`` runs the hookhost host on threads of its own; ``Forwarder`` sends
the same events to a running ``hookhost run --listen`` daemon instead;
``hookhost.profiler_hook.HookhostHook`` plugs either into a profiler's
``hooks:`` config.
"""

from __future__ import annotations

import atexit
import threading
import weakref

from . import _hookhost
from ._hookhost import (
    Error,
    EventTooLarge,
    HostStopped,
    LogError,
    MalformedEvent,
    QueueFull,
    StartError,
    Timeout,
    __version__,
)
from .forwarder import Forwarder

__all__ = [
    "Host",
    "Forwarder",
    "Error",
    "StartError",
    "MalformedEvent",
    "QueueFull",
    "EventTooLarge",
    "LogError",
    "HostStopped",
    "Timeout",
    "__version__",
]

_live: "weakref.WeakSet[Host]" = weakref.WeakSet()
_live_lock = threading.Lock()


class Host(_hookhost.Host):
    """The hookhost host, running on its own threads in this process.

    ``Host(plugins="plugins", config=None, data_dir=None, watch=True,
    drain_timeout=60.0)`` loads every ``*.wasm`` file in ``plugins`` with the
    config file ``config`` (``None``: ``hookhost.toml`` if it exists, else
    the defaults). With ``data_dir``, accepted events are kept in a
    write-ahead log there until every plugin is done with them; without it,
    in memory. ``watch`` reloads plugins and the config file as they change.
    Raises ``StartError`` if the host cannot start.

    Every host still running when the interpreter exits is shut down then
    (drained, within its drain timeout).
    """

    def __init__(self, *args, **kwargs) -> None:  # noqa: D107 (documented above)
        with _live_lock:
            _live.add(self)


def _shutdown_all() -> None:
    with _live_lock:
        hosts = list(_live)
    for host in hosts:
        host.shutdown()


atexit.register(_shutdown_all)
