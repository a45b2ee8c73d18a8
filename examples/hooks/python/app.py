"""app.py - the echo hook in Python: logs each event's canonical line (see
canonical.py) and raises on the custom event `conformance.throw`."""

from wit_world import exports
from wit_world.imports import log, types

from canonical import canonical


class Handler(exports.Handler):
    def handle(self, event: types.Event) -> None:
        if isinstance(event.kind, types.EventKind_Custom) and event.kind.value == "conformance.throw":
            raise RuntimeError("conformance.throw")
        log.log(log.Level.INFO, canonical(event))
