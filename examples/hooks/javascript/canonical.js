// canonical.js - the "echo" conformance format: one canonical text line per
// event, field for field as examples/hooks/README.md ("The echo format") says.

// FNV-1a, 32 bits, over the UTF-8 bytes of `s`, as 8 lowercase hex digits.
function fnv1a32(bytes) {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h = Math.imul(h ^ bytes[i], 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

const utf8 = new TextEncoder();

// string -> s<byte length>:<fnv-1a hex>
function str(s) {
  const bytes = utf8.encode(s);
  return `s${bytes.length}:${fnv1a32(bytes)}`;
}

// u32 / u64 (a number or a BigInt) -> plain decimal
function int(n) {
  return n.toString();
}

// f64 -> nan | inf | -inf | f<16 hex digits of the IEEE-754 bits>
const f64Bits = new DataView(new ArrayBuffer(8));
function f64(x) {
  if (Number.isNaN(x)) return 'nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  f64Bits.setFloat64(0, x); // big-endian: high word first
  const hex32 = (i) => f64Bits.getUint32(i).toString(16).padStart(8, '0');
  return 'f' + hex32(0) + hex32(4);
}

// metric-value -> number:<f64> | text:<string>
function metric(v) {
  return v.tag === 'number' ? `number:${f64(v.val)}` : `text:${str(v.val)}`;
}

// schema-change-type -> its case name, or other:<string>
function changeType(v) {
  return v.tag === 'other' ? `other:${str(v.val)}` : v.tag;
}

// option<T> -> '-' for none, else T's encoding
const opt = (enc) => (v) => (v === undefined || v === null ? '-' : enc(v));

const RETRY = [['function', str], ['attempts', opt(int)], ['error', str], ['errorType', str]];

// Each event-kind case's payload fields, in WIT declaration order.
const KIND_FIELDS = {
  'profiling-started': [['table', str], ['runId', str]],
  'profiling-completed': [
    ['table', str], ['runId', str], ['rowCount', opt(int)],
    ['columnCount', opt(int)], ['durationSeconds', opt(f64)],
  ],
  'profiling-failed': [['table', str], ['runId', str], ['error', str]],
  'profiling-skipped': [
    ['table', str], ['schema', opt(str)], ['reason', str],
    ['action', str], ['snapshotId', opt(str)],
  ],
  'data-drift-detected': [
    ['table', str], ['column', str], ['metric', str],
    ['baselineValue', opt(metric)], ['currentValue', opt(metric)],
    ['changePercent', opt(f64)], ['driftSeverity', str], ['explanation', opt(str)],
  ],
  'schema-change-detected': [
    ['table', str], ['changeType', changeType], ['column', opt(str)],
    ['oldColumnName', opt(str)], ['oldType', opt(str)], ['newType', opt(str)],
    ['partitionInfo', opt(str)], ['changeSeverity', opt(str)], ['explanation', opt(str)],
  ],
  'anomaly-detected': [
    ['table', str], ['column', str], ['metric', str], ['anomalyType', str],
    ['expectedValue', opt(metric)], ['actualValue', opt(metric)],
    ['severity', str], ['detectionMethod', str], ['explanation', opt(str)],
  ],
  'validation-failed': [
    ['table', str], ['column', opt(str)], ['ruleType', str], ['ruleConfig', opt(str)],
    ['failureReason', str], ['sampleFailures', opt(str)], ['severity', str],
    ['totalFailures', opt(int)], ['totalRows', opt(int)], ['failureRate', opt(f64)],
  ],
  'quality-score-degraded': [
    ['table', str], ['schema', opt(str)], ['currentScore', opt(f64)],
    ['previousScore', opt(f64)], ['scoreChange', opt(f64)],
    ['thresholdType', str], ['explanation', opt(str)],
  ],
  'quality-threshold-breached': [
    ['table', str], ['schema', opt(str)], ['currentScore', opt(f64)],
    ['thresholdType', str], ['thresholdValue', opt(f64)],
    ['previousStatus', opt(str)], ['explanation', opt(str)],
  ],
  'retry-attempt': RETRY,
  'retry-exhausted': RETRY,
};

// The whole line: echo <id> <event-type> <timestamp> <severity> <metadata> <kind> <payload...>
export function canonical(event) {
  const parts = [
    'echo',
    str(event.id),
    str(event.eventType),
    str(event.timestamp),
    event.severity === undefined || event.severity === null ? '-' : event.severity,
    str(event.metadata),
    event.kind.tag,
  ];
  const payload = event.kind.val;
  if (event.kind.tag === 'custom') {
    parts.push(str(payload));
  } else {
    for (const [field, encode] of KIND_FIELDS[event.kind.tag]) {
      parts.push(encode(payload[field]));
    }
  }
  return parts.join(' ');
}
