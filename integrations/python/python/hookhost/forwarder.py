"""``Forwarder``: events sent to a running hookhost daemon over HTTP, for a
profiler that should not load a WebAssembly runtime itself."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any, Mapping, Optional, Union

log = logging.getLogger("hookhost")


class Forwarder:
    """Sends each event to ``POST {url}/events`` of a ``hookhost run
    --listen`` daemon.

    ``emit`` never raises into the caller and never holds it up longer than
    ``timeout`` seconds: a refused or failed request is logged (logger
    ``hookhost``) and counted in ``failed``; ``sent`` counts the events the
    daemon accepted (answered 202).
    """

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 2.0) -> None:
        self.url = url.rstrip("/") + "/events"
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0

    def emit(self, event: Union[Mapping[str, Any], Any]) -> bool:
        """Sends ``event`` (a dict in the ``to_dict()`` form, or an object
        with ``to_dict()``); ``True`` when the daemon accepted it."""
        try:
            if not isinstance(event, Mapping) and hasattr(event, "to_dict"):
                event = event.to_dict()
            body = json.dumps(event, default=_default).encode()
            request = urllib.request.Request(
                self.url, data=body, headers=self._headers, method="POST"
            )
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                accepted = response.status == 202
                detail = "" if accepted else response.read(500).decode(errors="replace")
        except urllib.error.HTTPError as err:
            accepted = False
            detail = f"{err.code} {err.read(500).decode(errors='replace')}"
        except Exception as err:  # the profiler must never see it
            accepted = False
            detail = f"{type(err).__name__}: {err}"
        with self._lock:
            if accepted:
                self.sent += 1
            else:
                self.failed += 1
        if not accepted:
            log.warning("hookhost: %s did not accept an event: %s", self.url, detail)
        return accepted


def _default(value: Any) -> Any:
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    return str(value)
