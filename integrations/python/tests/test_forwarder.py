"""The forwarder against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import threading
from typing import List, Tuple

import pytest

import hookhost


class Daemon(http.server.ThreadingHTTPServer):
    """Answers `POST /events` with 202, noting each event and the client
    port it came from; with `close_silently`, closes every connection after
    its first answer without saying so (as a daemon closing an idle
    kept-alive connection does)."""

    daemon_threads = True

    def __init__(self, close_silently: bool) -> None:
        self.close_silently = close_silently
        self.seen: List[Tuple[int, dict]] = []
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.client_address[1], json.loads(body)))
        answer = b'{"accepted": ["x"]}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
        if self.server.close_silently:
            self.close_connection = True

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(params=[False, True], ids=["kept-alive", "closed-after-each"])
def daemon(request):
    server = Daemon(close_silently=request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_every_event_is_sent_once_over_one_connection_or_a_new_one_when_closed(daemon):
    port = daemon.server_address[1]
    forwarder = hookhost.Forwarder(f"http://127.0.0.1:{port}", token="t0k3n")
    events = [{"event_type": "DataDriftDetected", "metadata": {"seq": seq}} for seq in range(20)]
    for event in events:
        assert forwarder.emit(event) is True
    assert (forwarder.sent, forwarder.failed) == (20, 0)
    assert [event for _, event in daemon.seen] == events
    connections = {port for port, _ in daemon.seen}
    if daemon.close_silently:
        assert len(connections) == 20
    else:
        assert len(connections) == 1


def test_a_url_that_is_not_http_is_refused_at_once():
    with pytest.raises(ValueError, match="not an http"):
        hookhost.Forwarder("ftp://127.0.0.1:21")
