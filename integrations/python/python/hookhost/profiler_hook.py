"""``HookhostHook``: a profiler hook (``handle_event(event)``) that hands
every event to hookhost, for profilers that name hooks in YAML:

    hooks:
      enabled: true
      hooks:
        - type: custom
          module: hookhost.profiler_hook
          class_name: HookhostHook
          params:
            plugins: /etc/hookhost/plugins     # in this process
            config: /etc/hookhost/hookhost.toml
            # or, to a running daemon instead:
            # url: http://127.0.0.1:8787
            # token: ...

In-process, one ``Host`` is shared by every hook built with the same
``plugins``, ``config`` and ``data_dir`` (profilers build their hooks again
for every command) and shut down at interpreter exit.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Dict, Optional, Tuple

from . import Forwarder, Host

log = logging.getLogger("hookhost")

_hosts: Dict[Tuple[str, Optional[str], Optional[str]], Host] = {}
_hosts_lock = threading.Lock()


class HookhostHook:
    """Hands each event to hookhost; never raises into the profiler, not
    even when the host cannot start (that is logged, and every event is
    counted in ``failed``).

    With ``url``, events go to that daemon (``Forwarder``), waiting at most
    ``timeout`` seconds; otherwise to a ``Host`` in this process, whose
    ``emit`` returns at once (a full queue is logged, not waited for).
    """

    def __init__(
        self,
        plugins: str = "plugins",
        config: Optional[str] = None,
        data_dir: Optional[str] = None,
        url: Optional[str] = None,
        token: Optional[str] = None,
        timeout: float = 2.0,
        **_ignored: Any,
    ) -> None:
        self.failed = 0
        if url:
            self._forwarder: Optional[Forwarder] = Forwarder(url, token=token, timeout=timeout)
            self._host: Optional[Host] = None
            return
        self._forwarder = None
        key = (plugins, config, data_dir)
        try:
            with _hosts_lock:
                host = _hosts.get(key)
                if host is None or host.stopped:
                    host = Host(plugins=plugins, config=config, data_dir=data_dir)
                    _hosts[key] = host
        except Exception as err:  # the profiler must never see it
            log.error("hookhost: the host did not start, events will be dropped: %s", err)
            host = None
        self._host = host

    def handle_event(self, event: Any) -> None:
        """Hands ``event`` on; failures are logged and counted in
        ``failed``."""
        if self._forwarder is not None:
            if not self._forwarder.emit(event):
                self.failed += 1
            return
        if self._host is None:
            self.failed += 1
            return
        try:
            self._host.emit(event)
        except Exception as err:  # the profiler must never see it
            self.failed += 1
            log.warning("hookhost: an event was not accepted: %s", err)
