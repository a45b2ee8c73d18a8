// hook.c - the echo hook in C: logs each event's canonical line (see
// canonical.c) and aborts on the custom event `conformance.throw`.
#include <stdlib.h>
#include <string.h>

#include "bindings/echo.h"
#include "canonical.h"

bool exports_hookhost_hooks_handler_handle(exports_hookhost_hooks_handler_event_t *event,
                                           exports_hookhost_hooks_handler_hook_error_t *err) {
    (void)err; // this hook never returns an error
    const echo_string_t *kind_name = &event->kind.val.custom;
    if (event->kind.tag == HOOKHOST_HOOKS_TYPES_EVENT_KIND_CUSTOM &&
        kind_name->len == strlen("conformance.throw") &&
        memcmp(kind_name->ptr, "conformance.throw", kind_name->len) == 0) {
        abort(); // a trap: the host records the event as failed
    }
    echo_string_t line;
    canonical_line(event, &line);
    hookhost_hooks_log_log(HOOKHOST_HOOKS_LOG_LEVEL_INFO, &line);
    echo_string_free(&line);
    exports_hookhost_hooks_handler_event_free(event); // the handler owns the event
    return true;
}
