//! A plugin's route filter: which events it is given, from the routing keys
//! of its `[plugins.<name>]` section (`events`, `exclude_events`,
//! `min_severity`, `require_severity`, `tables`, `columns`).
//!
//! Patterns are normalized once, when the filter is built; checking an
//! event allocates nothing for event types and severities of up to 64
//! bytes, and reads the event's metadata (`table`, `column`) only when the
//! filter has a `tables` or `columns` rule, once for every plugin (see
//! [`EventFields`]). A filter with no rule answers
//! at once ([`RouteFilter::is_pass_all`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::bindings::{Event, Severity};
use crate::printable;
use crate::routing::metadata::EventFields;

/// Every severity, lowest first: the order `min_severity` compares in.
pub const SEVERITIES: [Severity; 5] = [
    Severity::Info,
    Severity::Low,
    Severity::Medium,
    Severity::High,
    Severity::Critical,
];

/// Where `severity` stands in [`SEVERITIES`] (0 for `info`).
pub fn severity_rank(severity: Severity) -> u8 {
    match severity {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

/// The routing keys of one plugin as written; see [`RouteFilter::new`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouteRules {
    /// Event types delivered (either spelling, `*` globs); empty: all.
    pub events: Vec<String>,
    /// Event types never delivered, even when `events` lists them.
    pub exclude_events: Vec<String>,
    /// Lowest severity delivered; events without one pass unless
    /// `require_severity`.
    pub min_severity: Option<Severity>,
    /// Skip events that carry no severity.
    pub require_severity: bool,
    /// `metadata.table` patterns (`*` globs, any case); empty: all.
    pub tables: Vec<String>,
    /// `metadata.column` patterns (`*` globs, any case); empty: all.
    pub columns: Vec<String>,
}

/// Which events one plugin is given; built once per configuration and
/// shared (`Config::route_filter`). The default lets every event through.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteFilter {
    /// No rule at all: every event passes.
    pass_all: bool,
    events: Rule,
    exclude_events: Rule,
    min_severity: Option<Severity>,
    require_severity: bool,
    tables: Rule,
    columns: Rule,
}

impl Default for RouteFilter {
    fn default() -> RouteFilter {
        RouteFilter::pass_all()
    }
}

impl RouteFilter {
    /// The filter that lets every event through.
    pub fn pass_all() -> RouteFilter {
        RouteFilter::new(&RouteRules::default())
    }

    /// The filter for `rules`, its patterns normalized: event types
    /// lowercased with `_` removed (so `DataDriftDetected`,
    /// `data_drift_detected` and `DATA_DRIFT_DETECTED` are one type), table
    /// and column names lowercased.
    pub fn new(rules: &RouteRules) -> RouteFilter {
        let events = Rule::new(&rules.events, Fold::EventType);
        let exclude_events = Rule::new(&rules.exclude_events, Fold::EventType);
        let tables = Rule::new(&rules.tables, Fold::Name);
        let columns = Rule::new(&rules.columns, Fold::Name);
        let pass_all = events.is_empty()
            && exclude_events.is_empty()
            && rules.min_severity.is_none()
            && !rules.require_severity
            && tables.is_empty()
            && columns.is_empty();
        RouteFilter {
            pass_all,
            events,
            exclude_events,
            min_severity: rules.min_severity,
            require_severity: rules.require_severity,
            tables,
            columns,
        }
    }

    /// Whether every event passes (no rule is set); [`check`](Self::check)
    /// then returns at once.
    pub fn is_pass_all(&self) -> bool {
        self.pass_all
    }

    /// `Ok` when the plugin is to be given `event`, otherwise the first rule
    /// that turns it away, in the order `events`, `exclude_events`,
    /// `min_severity` / `require_severity`, `tables`, `columns`.
    pub fn check(&self, event: &Event) -> Result<(), Skip> {
        self.check_with(&mut EventFields::new(event))
    }

    /// [`check`](Self::check), reading the event at most once for all the
    /// plugins it is checked for: `fields` keeps what was read.
    pub fn check_with(&self, fields: &mut EventFields<'_>) -> Result<(), Skip> {
        if self.pass_all {
            return Ok(());
        }
        let event = fields.event();
        if !self.events.is_empty() || !self.exclude_events.is_empty() {
            let event_type = fields.folded_event_type();
            if !self.events.is_empty() && !self.events.matches(event_type) {
                return Err(Skip::NotInEvents {
                    event_type: event.event_type.clone(),
                    events: self.events.written.clone(),
                });
            }
            if self.exclude_events.matches(event_type) {
                return Err(Skip::Excluded {
                    event_type: event.event_type.clone(),
                    exclude_events: self.exclude_events.written.clone(),
                });
            }
        }
        match event.severity {
            None if self.require_severity => return Err(Skip::NoSeverity),
            Some(severity) => {
                if let Some(min) = self.min_severity {
                    if severity_rank(severity) < severity_rank(min) {
                        return Err(Skip::BelowMinSeverity {
                            severity,
                            min_severity: min,
                        });
                    }
                }
            }
            None => {}
        }
        if !self.tables.is_empty() && !self.tables.matches_name(fields.folded_table()) {
            let table = fields.metadata().get("table").into_text();
            return Err(Skip::NotInTables {
                table: table.map(Cow::into_owned),
                tables: self.tables.written.clone(),
            });
        }
        if !self.columns.is_empty() && !self.columns.matches_name(fields.folded_column()) {
            let column = fields.metadata().get("column").into_text();
            return Err(Skip::NotInColumns {
                column: column.map(Cow::into_owned),
                columns: self.columns.written.clone(),
            });
        }
        Ok(())
    }
}

/// Why a plugin's route filter turned an event away. `Display` names the
/// rule and the value: `severity low is below min_severity = high`.
#[derive(Debug, Clone, PartialEq)]
pub enum Skip {
    /// `events` is set and the event's type matches none of it.
    NotInEvents {
        /// The event type as the emitter spelled it.
        event_type: String,
        /// `events` as written.
        events: Patterns,
    },
    /// The event's type matches `exclude_events`.
    Excluded {
        /// The event type as the emitter spelled it.
        event_type: String,
        /// `exclude_events` as written.
        exclude_events: Patterns,
    },
    /// The event's severity is below `min_severity`.
    BelowMinSeverity {
        /// The event's severity.
        severity: Severity,
        /// The plugin's `min_severity`.
        min_severity: Severity,
    },
    /// The event has no severity and `require_severity = true`.
    NoSeverity,
    /// `tables` is set and the event's `metadata.table` matches none of it
    /// (or the event has none).
    NotInTables {
        /// The event's `metadata.table`, when it has one (a string).
        table: Option<String>,
        /// `tables` as written.
        tables: Patterns,
    },
    /// `columns` is set and the event's `metadata.column` matches none of
    /// it (or the event has none).
    NotInColumns {
        /// The event's `metadata.column`, when it has one (a string).
        column: Option<String>,
        /// `columns` as written.
        columns: Patterns,
    },
}

impl Skip {
    /// The config key of the rule: `events`, `exclude_events`,
    /// `min_severity`, `require_severity`, `tables` or `columns`.
    pub fn rule(&self) -> &'static str {
        match self {
            Skip::NotInEvents { .. } => "events",
            Skip::Excluded { .. } => "exclude_events",
            Skip::BelowMinSeverity { .. } => "min_severity",
            Skip::NoSeverity => "require_severity",
            Skip::NotInTables { .. } => "tables",
            Skip::NotInColumns { .. } => "columns",
        }
    }
}

/// Longest value (event type, table, column) a [`Skip`] message quotes, in
/// bytes; an event type can be as long as the event itself.
const SHOWN_VALUE_BYTES: usize = 200;

/// A value from an event, made safe and short for a message.
fn shown(value: &str) -> Cow<'_, str> {
    let cut = printable::truncate(value, SHOWN_VALUE_BYTES);
    let escaped = printable::escape_controls(cut);
    if cut.len() < value.len() {
        Cow::Owned(format!("{escaped}..."))
    } else {
        escaped
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NotInEvents { event_type, events } => write!(
                f,
                "event type {} is not in events = {events}",
                shown(event_type)
            ),
            Skip::Excluded {
                event_type,
                exclude_events,
            } => write!(
                f,
                "event type {} matches exclude_events = {exclude_events}",
                shown(event_type)
            ),
            Skip::BelowMinSeverity {
                severity,
                min_severity,
            } => write!(
                f,
                "severity {severity} is below min_severity = {min_severity}"
            ),
            Skip::NoSeverity => f.write_str("no severity and require_severity = true"),
            Skip::NotInTables {
                table: Some(table),
                tables,
            } => write!(f, "table {} is not in tables = {tables}", shown(table)),
            Skip::NotInTables {
                table: None,
                tables,
            } => {
                write!(f, "no metadata.table and tables = {tables}")
            }
            Skip::NotInColumns {
                column: Some(column),
                columns,
            } => write!(f, "column {} is not in columns = {columns}", shown(column)),
            Skip::NotInColumns {
                column: None,
                columns,
            } => write!(f, "no metadata.column and columns = {columns}"),
        }
    }
}

/// A list of patterns as written in the config file, shared between the
/// filter and every [`Skip`] it returns. `Display` is the TOML array:
/// `["DataDriftDetected", "schema_*"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patterns(Arc<[String]>);

impl Patterns {
    /// The patterns.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, pattern) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            // Debug quotes and escapes, as TOML's basic strings do.
            write!(f, "{pattern:?}")?;
        }
        f.write_str("]")
    }
}

/// One list rule: the patterns as written and normalized.
#[derive(Debug, Clone, Default, PartialEq)]
struct Rule {
    written: Patterns,
    globs: Box<[Box<[u8]>]>,
}

impl Rule {
    fn new(patterns: &[String], fold: Fold) -> Rule {
        Rule {
            written: Patterns(patterns.iter().cloned().collect()),
            globs: patterns
                .iter()
                .map(|pattern| fold.apply(pattern).into_vec().into_boxed_slice())
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.globs.is_empty()
    }

    /// Whether normalized `text` matches any pattern.
    fn matches(&self, text: &[u8]) -> bool {
        self.globs.iter().any(|glob| glob_match(glob, text))
    }

    /// Whether a folded table or column name matches any pattern; no name
    /// matches none.
    fn matches_name(&self, name: Option<&[u8]>) -> bool {
        name.is_some_and(|name| self.matches(name))
    }
}

/// How text is normalized before matching.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fold {
    /// Lowercased, `_` removed: `DataDriftDetected` = `data_drift_detected`.
    EventType,
    /// Lowercased: table and column names, whose underscores matter.
    Name,
}

impl Fold {
    /// `text` normalized, on the stack when short.
    pub(crate) fn apply(self, text: &str) -> SmallVec<[u8; 64]> {
        let mut folded = if text.is_ascii() {
            let mut folded = SmallVec::from_slice(text.as_bytes());
            folded.make_ascii_lowercase();
            folded
        } else {
            SmallVec::from_slice(text.to_lowercase().as_bytes())
        };
        if let Fold::EventType = self {
            folded.retain(|b| *b != b'_');
        }
        folded
    }
}

/// Whether `text` matches `pattern`, where `*` in the pattern matches any
/// run of bytes (none included) and every other byte matches itself.
/// Matching UTF-8 bytewise is exact: the literal parts are whole
/// characters, so they only ever match whole characters.
///
/// The usual backtracking to the last `*`: time at most the product of
/// the two lengths, no allocation.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // The last `*` seen and the text position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            // A trailing `*` takes the rest, whatever it is.
            Some(b'*') if p + 1 == pattern.len() => return true,
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` take one more byte and try again.
                Some((star_p, star_t)) => {
                    star = Some((star_p, star_t + 1));
                    p = star_p + 1;
                    t = star_t + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event of `event_type` with `metadata` (a JSON object).
    fn event(event_type: &str, metadata: &str) -> Event {
        Event::from_json(&format!(
            r#"{{"event_type": "{event_type}", "timestamp": "2025-01-15T10:30:00", "metadata": {metadata}}}"#
        ))
        .unwrap()
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn events(list: &[&str]) -> RouteFilter {
        RouteFilter::new(&RouteRules {
            events: strings(list),
            ..RouteRules::default()
        })
    }

    #[test]
    fn glob_matches_runs_of_any_length() {
        let m = |p: &str, t: &str| glob_match(p.as_bytes(), t.as_bytes());
        assert!(m("orders", "orders"));
        assert!(!m("orders", "orders2"));
        assert!(!m("orders", "order"));
        assert!(m("*", ""));
        assert!(m("*", "anything"));
        assert!(m("analytics.*", "analytics."));
        assert!(m("analytics.*", "analytics.orders"));
        assert!(!m("analytics.*", "raw.analytics.orders"));
        assert!(m("*.orders", "raw.orders"));
        assert!(m("a*b*c", "abc"));
        assert!(m("a*b*c", "axxbyybzc"));
        assert!(!m("a*b*c", "axxbyybz"));
        assert!(m("*drift*", "datadriftdetected"));
        assert!(m("**", "x"));
        assert!(!m("", "x"));
        assert!(m("", ""));
        // Backtracking past a partial match.
        assert!(m("*aab", "aaaab"));
        assert!(m("é*ü", "étüdü"));
    }

    #[test]
    fn nothing_set_passes_everything_at_once() {
        let filter = RouteFilter::new(&RouteRules::default());
        assert!(filter.is_pass_all());
        assert_eq!(filter, RouteFilter::pass_all());
        assert!(RouteFilter::default().is_pass_all());
        assert_eq!(filter.check(&event("Anything", "{}")), Ok(()));
        // require_severity alone is a rule.
        let filter = RouteFilter::new(&RouteRules {
            require_severity: true,
            ..RouteRules::default()
        });
        assert!(!filter.is_pass_all());
    }

    #[test]
    fn events_match_either_spelling() {
        let filter = events(&["DataDriftDetected"]);
        assert!(!filter.is_pass_all());
        for spelling in [
            "DataDriftDetected",
            "data_drift_detected",
            "DATA_DRIFT_DETECTED",
        ] {
            assert_eq!(filter.check(&event(spelling, "{}")), Ok(()), "{spelling}");
        }
        let filter = events(&["data_drift_detected"]);
        assert_eq!(filter.check(&event("DataDriftDetected", "{}")), Ok(()));
        let skip = filter.check(&event("ProfilingStarted", "{}")).unwrap_err();
        assert_eq!(skip.rule(), "events");
        assert_eq!(
            skip.to_string(),
            r#"event type ProfilingStarted is not in events = ["data_drift_detected"]"#
        );
    }

    #[test]
    fn events_take_globs() {
        let filter = events(&["schema_*", "*Failed"]);
        assert_eq!(filter.check(&event("SchemaChangeDetected", "{}")), Ok(()));
        assert_eq!(filter.check(&event("schema_change_detected", "{}")), Ok(()));
        assert_eq!(filter.check(&event("ProfilingFailed", "{}")), Ok(()));
        assert_eq!(filter.check(&event("validation_failed", "{}")), Ok(()));
        let skip = filter.check(&event("DataDriftDetected", "{}")).unwrap_err();
        assert_eq!(
            skip.to_string(),
            r#"event type DataDriftDetected is not in events = ["schema_*", "*Failed"]"#
        );
    }

    #[test]
    fn exclude_events_wins_over_events() {
        let filter = RouteFilter::new(&RouteRules {
            events: strings(&["*"]),
            exclude_events: strings(&["profiling_*"]),
            ..RouteRules::default()
        });
        assert_eq!(filter.check(&event("DataDriftDetected", "{}")), Ok(()));
        let skip = filter.check(&event("ProfilingStarted", "{}")).unwrap_err();
        assert_eq!(skip.rule(), "exclude_events");
        assert_eq!(
            skip.to_string(),
            r#"event type ProfilingStarted matches exclude_events = ["profiling_*"]"#
        );
        // Alone, it lets everything else through.
        let filter = RouteFilter::new(&RouteRules {
            exclude_events: strings(&["ProfilingCompleted"]),
            ..RouteRules::default()
        });
        assert_eq!(filter.check(&event("ProfilingStarted", "{}")), Ok(()));
        assert!(filter.check(&event("profiling_completed", "{}")).is_err());
    }

    #[test]
    fn min_severity_compares_in_order() {
        let filter = RouteFilter::new(&RouteRules {
            min_severity: Some(Severity::High),
            ..RouteRules::default()
        });
        let drift = |severity: &str| {
            event(
                "DataDriftDetected",
                &format!(r#"{{"table": "t", "column": "c", "drift_severity": "{severity}"}}"#),
            )
        };
        assert_eq!(filter.check(&drift("high")), Ok(()));
        assert_eq!(filter.check(&drift("critical")), Ok(()));
        let skip = filter.check(&drift("low")).unwrap_err();
        assert_eq!(skip.rule(), "min_severity");
        assert_eq!(
            skip.to_string(),
            "severity low is below min_severity = high"
        );
        assert!(filter.check(&drift("medium")).is_err());
        // No severity: passes unless required.
        assert_eq!(filter.check(&event("ProfilingStarted", "{}")), Ok(()));
        let ranks: Vec<u8> = SEVERITIES.iter().map(|&s| severity_rank(s)).collect();
        assert_eq!(ranks, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn require_severity_skips_events_without_one() {
        let filter = RouteFilter::new(&RouteRules {
            min_severity: Some(Severity::Info),
            require_severity: true,
            ..RouteRules::default()
        });
        let skip = filter.check(&event("ProfilingStarted", "{}")).unwrap_err();
        assert_eq!(skip, Skip::NoSeverity);
        assert_eq!(skip.rule(), "require_severity");
        assert_eq!(skip.to_string(), "no severity and require_severity = true");
        let anomaly = event("AnomalyDetected", r#"{"severity": "info"}"#);
        assert_eq!(filter.check(&anomaly), Ok(()));
    }

    #[test]
    fn tables_match_any_case_and_globs() {
        let filter = RouteFilter::new(&RouteRules {
            tables: strings(&["orders", "Analytics.*"]),
            ..RouteRules::default()
        });
        assert_eq!(filter.check(&event("X", r#"{"table": "orders"}"#)), Ok(()));
        assert_eq!(filter.check(&event("X", r#"{"table": "ORDERS"}"#)), Ok(()));
        assert_eq!(
            filter.check(&event("X", r#"{"table": "analytics.daily_sales"}"#)),
            Ok(())
        );
        // Underscores in names are not dropped.
        let filter = RouteFilter::new(&RouteRules {
            tables: strings(&["order_items"]),
            ..RouteRules::default()
        });
        let skip = filter
            .check(&event("X", r#"{"table": "orderitems"}"#))
            .unwrap_err();
        assert_eq!(skip.rule(), "tables");
        assert_eq!(
            skip.to_string(),
            r#"table orderitems is not in tables = ["order_items"]"#
        );
    }

    #[test]
    fn an_event_without_the_key_matches_no_list() {
        let filter = RouteFilter::new(&RouteRules {
            tables: strings(&["*"]),
            ..RouteRules::default()
        });
        let skip = filter.check(&event("X", "{}")).unwrap_err();
        assert_eq!(
            skip,
            Skip::NotInTables {
                table: None,
                tables: Patterns(Arc::from(strings(&["*"]))),
            }
        );
        assert_eq!(skip.to_string(), r#"no metadata.table and tables = ["*"]"#);
        // A value that is not a string counts as absent; other keys of any
        // shape are skipped.
        for metadata in [
            r#"{"table": 5}"#,
            r#"{"table": null}"#,
            r#"{"table": ["orders"]}"#,
            r#"{"table": {"name": "orders"}}"#,
        ] {
            assert!(filter.check(&event("X", metadata)).is_err(), "{metadata}");
        }
        let busy = r#"{"rows": [1, {"a": [null, true]}], "table": "t", "x": {"table": 1}}"#;
        assert_eq!(filter.check(&event("X", busy)), Ok(()));
    }

    #[test]
    fn columns_match_like_tables() {
        let filter = RouteFilter::new(&RouteRules {
            tables: strings(&["orders"]),
            columns: strings(&["*_id", "Amount"]),
            ..RouteRules::default()
        });
        let with = |column: &str| {
            event(
                "X",
                &format!(r#"{{"table": "orders", "column": "{column}"}}"#),
            )
        };
        assert_eq!(filter.check(&with("customer_id")), Ok(()));
        assert_eq!(filter.check(&with("AMOUNT")), Ok(()));
        let skip = filter.check(&with("status")).unwrap_err();
        assert_eq!(skip.rule(), "columns");
        assert_eq!(
            skip.to_string(),
            r#"column status is not in columns = ["*_id", "Amount"]"#
        );
        let skip = filter
            .check(&event("X", r#"{"table": "orders"}"#))
            .unwrap_err();
        assert_eq!(
            skip.to_string(),
            r#"no metadata.column and columns = ["*_id", "Amount"]"#
        );
        // The table rule is checked first.
        let skip = filter
            .check(&event("X", r#"{"table": "users", "column": "user_id"}"#))
            .unwrap_err();
        assert_eq!(skip.rule(), "tables");
    }

    #[test]
    fn escaped_and_non_ascii_names_are_read() {
        let filter = RouteFilter::new(&RouteRules {
            tables: strings(&["straße*"]),
            ..RouteRules::default()
        });
        assert_eq!(
            filter.check(&event("X", r#"{"table": "STRAßE_1"}"#)),
            Ok(())
        );
        assert_eq!(
            filter.check(&event("X", r#"{"table": "stra\u00dfe"}"#)),
            Ok(())
        );
        let filter = events(&["Überwachung*"]);
        assert_eq!(filter.check(&event("überwachung_start", "{}")), Ok(()));
    }

    #[test]
    fn metadata_that_is_not_an_object_has_no_table() {
        let filter = RouteFilter::new(&RouteRules {
            tables: strings(&["*"]),
            ..RouteRules::default()
        });
        let mut built = event("X", r#"{"table": "t"}"#);
        for junk in ["", "not json", "[1, 2]", r#"{"table": "t""#] {
            built.metadata = junk.to_owned();
            assert!(filter.check(&built).is_err(), "{junk}");
        }
    }

    #[test]
    fn messages_escape_and_shorten_event_values() {
        let filter = events(&["a"]);
        let mut odd = event("X", "{}");
        odd.event_type = format!("b\n{}", "c".repeat(500));
        let text = filter.check(&odd).unwrap_err().to_string();
        assert!(text.starts_with("event type b\\u{a}ccc"), "{text}");
        assert!(text.contains("c... is not in events"), "{text}");
        assert!(text.len() < 300, "{}", text.len());
    }

    #[test]
    fn rules_apply_in_order_and_all_must_pass() {
        let filter = RouteFilter::new(&RouteRules {
            events: strings(&["data_drift_*"]),
            exclude_events: strings(&[]),
            min_severity: Some(Severity::Medium),
            require_severity: false,
            tables: strings(&["orders"]),
            columns: strings(&[]),
        });
        let drift = |table: &str, severity: &str| {
            event(
                "DataDriftDetected",
                &format!(
                    r#"{{"table": "{table}", "column": "c", "drift_severity": "{severity}"}}"#
                ),
            )
        };
        assert_eq!(filter.check(&drift("orders", "high")), Ok(()));
        assert_eq!(
            filter.check(&drift("orders", "low")).unwrap_err().rule(),
            "min_severity"
        );
        assert_eq!(
            filter.check(&drift("users", "high")).unwrap_err().rule(),
            "tables"
        );
        assert_eq!(
            filter
                .check(&event("SchemaChangeDetected", r#"{"table": "orders"}"#))
                .unwrap_err()
                .rule(),
            "events"
        );
    }
}
