"""``Forwarder``: events sent to a running hookhost daemon over HTTP, for a
profiler that should not load a WebAssembly runtime itself."""

from __future__ import annotations

import http.client
import json
import logging
import threading
import urllib.parse
from typing import Any, Mapping, Optional, Union

log = logging.getLogger("hookhost")

# What a kept-alive connection the daemon has closed meanwhile raises when
# it is used again: the request is sent once more, on a new connection.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class Forwarder:
    """Sends each event to ``POST {url}/events`` of a ``hookhost run
    --listen`` daemon, over one kept-alive connection per thread.

    ``emit`` never raises into the caller and waits at most ``timeout``
    seconds for the daemon (twice that if a kept-alive connection turns out
    closed and the event is sent again on a new one): a refused or failed
    request is logged (logger ``hookhost``) and counted in ``failed``;
    ``sent`` counts the events the daemon accepted (answered 202).
    """

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 2.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Forwarder: {url!r} is not an http:// or https:// URL")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path.rstrip("/") + "/events"
        self.url = f"{parts.scheme}://{parts.netloc}{self._path}"
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._local = threading.local()
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
            status, detail = self._post(body)
            accepted = status == 202
        except Exception as err:  # the profiler must never see it
            self._drop_connection()
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

    def _post(self, body: bytes) -> "tuple[int, str]":
        reused = getattr(self._local, "connection", None) is not None
        try:
            return self._request(body)
        except _STALE:
            self._drop_connection()
            if not reused:
                raise
            return self._request(body)

    def _request(self, body: bytes) -> "tuple[int, str]":
        connection = getattr(self._local, "connection", None)
        if connection is None:
            kind = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            connection = kind(self._host, self._port, timeout=self.timeout)
            self._local.connection = connection
        connection.request("POST", self._path, body=body, headers=self._headers)
        response = connection.getresponse()
        text = response.read()
        if response.will_close:
            self._drop_connection()
        detail = "" if response.status == 202 else f"{response.status} {text[:500].decode(errors='replace')}"
        return response.status, detail

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


def _default(value: Any) -> Any:
    isoformat = getattr(value, "isoformat", None)
    if callable(isoformat):
        return isoformat()
    return str(value)
