// canonical.h - the "echo" conformance format: one canonical text line per
// event, field for field as examples/hooks/README.md ("The echo format") says.
#ifndef CANONICAL_H
#define CANONICAL_H

#include "bindings/echo.h"

// Writes the canonical line of `event` into `out` (a fresh malloc'd buffer,
// not NUL-terminated; free it with echo_string_free).
void canonical_line(const hookhost_hooks_types_event_t *event, echo_string_t *out);

#endif
