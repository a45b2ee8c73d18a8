// canonical.c - the "echo" conformance format: one canonical text line per
// event, field for field as examples/hooks/README.md ("The echo format") says.
#include "canonical.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// A growing output buffer. Allocation failure aborts (a trap for the host).
typedef struct {
    char *ptr;
    size_t len, cap;
} buf_t;

static void put(buf_t *b, const char *s, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->ptr = realloc(b->ptr, b->cap);
        if (!b->ptr) abort();
    }
    memcpy(b->ptr + b->len, s, n);
    b->len += n;
}

static void put_cstr(buf_t *b, const char *s) { put(b, s, strlen(s)); }

static void put_hex(buf_t *b, uint64_t v, int digits) {
    char tmp[16];
    for (int i = digits - 1; i >= 0; i--, v >>= 4) tmp[i] = "0123456789abcdef"[v & 15];
    put(b, tmp, (size_t)digits);
}

// u32 / u64 -> plain decimal
static void put_u64(buf_t *b, uint64_t v) {
    char tmp[20];
    int i = 20;
    do { tmp[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    put(b, tmp + i, (size_t)(20 - i));
}

// string -> s<UTF-8 byte length>:<FNV-1a 32-bit as 8 hex digits>
static void put_string(buf_t *b, const echo_string_t *s) {
    uint32_t h = 0x811c9dc5u;
    for (size_t i = 0; i < s->len; i++) h = (h ^ s->ptr[i]) * 0x01000193u;
    put(b, "s", 1);
    put_u64(b, s->len);
    put(b, ":", 1);
    put_hex(b, h, 8);
}

// f64 -> nan | inf | -inf | f<16 hex digits of the IEEE-754 bits>
static void put_f64(buf_t *b, double x) {
    if (x != x) { put_cstr(b, "nan"); return; }
    if (x > 1.7976931348623157e308) { put_cstr(b, "inf"); return; }
    if (x < -1.7976931348623157e308) { put_cstr(b, "-inf"); return; }
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    put(b, "f", 1);
    put_hex(b, bits, 16);
}

// metric-value -> number:<f64> | text:<string>
static void put_metric(buf_t *b, const hookhost_hooks_types_metric_value_t *v) {
    if (v->tag == HOOKHOST_HOOKS_TYPES_METRIC_VALUE_NUMBER) {
        put_cstr(b, "number:");
        put_f64(b, v->val.number);
    } else {
        put_cstr(b, "text:");
        put_string(b, &v->val.text);
    }
}

// schema-change-type -> its case name, or other:<string>
static void put_change_type(buf_t *b, const hookhost_hooks_types_schema_change_type_t *v) {
    static const char *const names[] = {
        "column-added", "column-removed", "column-renamed", "type-changed", "partition-changed",
    };
    if (v->tag == HOOKHOST_HOOKS_TYPES_SCHEMA_CHANGE_TYPE_OTHER) {
        put_cstr(b, "other:");
        put_string(b, &v->val.other);
    } else {
        put_cstr(b, names[v->tag]);
    }
}

// One field of the line: a space, then the encoding. F(b, x) picks the
// encoder; OPT(b, o, put_t) writes "-" for none, else T's encoding.
#define STR(b, x) (put(b, " ", 1), put_string(b, &(x)))
#define F64(b, x) (put(b, " ", 1), put_f64(b, (x)))
#define OPT(b, o, put_t) (put(b, " ", 1), (o).is_some ? put_t(b, (o).val) : put(b, "-", 1))
#define OPT_STR(b, o) (put(b, " ", 1), (o).is_some ? put_string(b, &(o).val) : put(b, "-", 1))
#define OPT_METRIC(b, o) (put(b, " ", 1), (o).is_some ? put_metric(b, &(o).val) : put(b, "-", 1))

static void put_retry(buf_t *b, const hookhost_hooks_types_retry_t *r) {
    STR(b, r->function);
    OPT(b, r->attempts, put_u64);
    STR(b, r->error);
    STR(b, r->error_type);
}

// The payload fields of each event-kind case, in WIT declaration order.
static void put_kind(buf_t *b, const hookhost_hooks_types_event_kind_t *k) {
    static const char *const names[] = {
        "profiling-started", "profiling-completed", "profiling-failed", "profiling-skipped",
        "data-drift-detected", "schema-change-detected", "anomaly-detected", "validation-failed",
        "quality-score-degraded", "quality-threshold-breached", "retry-attempt",
        "retry-exhausted", "custom",
    };
    put(b, " ", 1);
    put_cstr(b, names[k->tag]);
    switch (k->tag) {
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_PROFILING_STARTED: {
        const hookhost_hooks_types_profiling_started_t *p = &k->val.profiling_started;
        STR(b, p->table); STR(b, p->run_id);
        break;
    }
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_PROFILING_COMPLETED: {
        const hookhost_hooks_types_profiling_completed_t *p = &k->val.profiling_completed;
        STR(b, p->table); STR(b, p->run_id); OPT(b, p->row_count, put_u64);
        OPT(b, p->column_count, put_u64); OPT(b, p->duration_seconds, put_f64);
        break;
    }
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_PROFILING_FAILED: {
        const hookhost_hooks_types_profiling_failed_t *p = &k->val.profiling_failed;
        STR(b, p->table); STR(b, p->run_id); STR(b, p->error);
        break;
    }
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_PROFILING_SKIPPED: {
        const hookhost_hooks_types_profiling_skipped_t *p = &k->val.profiling_skipped;
        STR(b, p->table); OPT_STR(b, p->schema); STR(b, p->reason);
        STR(b, p->action); OPT_STR(b, p->snapshot_id);
        break;
    }
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_DATA_DRIFT_DETECTED: {
        const hookhost_hooks_types_data_drift_t *p = &k->val.data_drift_detected;
        STR(b, p->table); STR(b, p->column); STR(b, p->metric);
        OPT_METRIC(b, p->baseline_value); OPT_METRIC(b, p->current_value);
        OPT(b, p->change_percent, put_f64); STR(b, p->drift_severity); OPT_STR(b, p->explanation);
        break;
    }
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_SCHEMA_CHANGE_DETECTED: {
        const hookhost_hooks_types_schema_change_t *p = &k->val.schema_change_detected;
        STR(b, p->table);
        put(b, " ", 1); put_change_type(b, &p->change_type);
        OPT_STR(b, p->column); OPT_STR(b, p->old_column_name); OPT_STR(b, p->old_type);
        OPT_STR(b, p->new_type); OPT_STR(b, p->partition_info); OPT_STR(b, p->change_severity);
        OPT_STR(b, p->explanation);
        break;
    }
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_ANOMALY_DETECTED: {
        const hookhost_hooks_types_anomaly_t *p = &k->val.anomaly_detected;
        STR(b, p->table); STR(b, p->column); STR(b, p->metric); STR(b, p->anomaly_type);
        OPT_METRIC(b, p->expected_value); OPT_METRIC(b, p->actual_value);
        STR(b, p->severity); STR(b, p->detection_method); OPT_STR(b, p->explanation);
        break;
    }
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_VALIDATION_FAILED: {
        const hookhost_hooks_types_validation_failure_t *p = &k->val.validation_failed;
        STR(b, p->table); OPT_STR(b, p->column); STR(b, p->rule_type); OPT_STR(b, p->rule_config);
        STR(b, p->failure_reason); OPT_STR(b, p->sample_failures); STR(b, p->severity);
        OPT(b, p->total_failures, put_u64); OPT(b, p->total_rows, put_u64);
        OPT(b, p->failure_rate, put_f64);
        break;
    }
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_QUALITY_SCORE_DEGRADED: {
        const hookhost_hooks_types_quality_score_degraded_t *p = &k->val.quality_score_degraded;
        STR(b, p->table); OPT_STR(b, p->schema); OPT(b, p->current_score, put_f64);
        OPT(b, p->previous_score, put_f64); OPT(b, p->score_change, put_f64);
        STR(b, p->threshold_type); OPT_STR(b, p->explanation);
        break;
    }
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_QUALITY_THRESHOLD_BREACHED: {
        const hookhost_hooks_types_quality_threshold_breached_t *p = &k->val.quality_threshold_breached;
        STR(b, p->table); OPT_STR(b, p->schema); OPT(b, p->current_score, put_f64);
        STR(b, p->threshold_type); OPT(b, p->threshold_value, put_f64);
        OPT_STR(b, p->previous_status); OPT_STR(b, p->explanation);
        break;
    }
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_RETRY_ATTEMPT:
        put_retry(b, &k->val.retry_attempt);
        break;
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_RETRY_EXHAUSTED:
        put_retry(b, &k->val.retry_exhausted);
        break;
    case HOOKHOST_HOOKS_TYPES_EVENT_KIND_CUSTOM:
        STR(b, k->val.custom);
        break;
    }
}

void canonical_line(const hookhost_hooks_types_event_t *event, echo_string_t *out) {
    static const char *const severities[] = {"info", "low", "medium", "high", "critical"};
    buf_t b = {0};
    put_cstr(&b, "echo");
    STR(&b, event->id);
    STR(&b, event->event_type);
    STR(&b, event->timestamp);
    put(&b, " ", 1);
    put_cstr(&b, event->severity.is_some ? severities[event->severity.val] : "-");
    STR(&b, event->metadata);
    put_kind(&b, &event->kind);
    out->ptr = (uint8_t *)b.ptr;
    out->len = b.len;
}
