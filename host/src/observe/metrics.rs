//! `GET /metrics`: the host's counts in the Prometheus (OpenMetrics) text
//! format. Nothing is counted twice: a [`Collector`] reads the counts the
//! host keeps anyway (each plugin's `PluginStats`, the reload counts, the
//! admission counts, the HTTP ingest's refusals) at scrape time, so a
//! scrape costs the host one snapshot of each and the hot path nothing.

use std::sync::{Arc, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::host::Host;
use crate::observe::admission::AdmissionRefusal;
use crate::outcome::{FailureClass, PluginStats};
use crate::registry::PluginSummary;
use crate::sources::{IngestStats, Refusal};

/// The `Content-Type` of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Reads the counts of a host, while it runs, at every scrape.
///
/// It holds the host weakly, as the HTTP ingest does, so that a scrape in
/// progress never keeps the host from shutting down.
#[derive(Debug)]
pub struct HostCollector {
    host: Weak<Host>,
    ingest: Option<Arc<IngestStats>>,
}

impl HostCollector {
    /// A collector of `host`'s counts and, when given, the HTTP ingest's.
    pub fn new(host: &Arc<Host>, ingest: Option<Arc<IngestStats>>) -> HostCollector {
        HostCollector {
            host: Arc::downgrade(host),
            ingest,
        }
    }
}

/// The text of one scrape of `collector`; `None` once its host is gone.
pub fn encode(collector: &Arc<HostCollector>) -> Option<String> {
    collector.host.upgrade()?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(collector.clone()));
    let mut text = String::new();
    // Writing to a String cannot fail; an encoder error would be a bug in
    // the metric names, which tests catch.
    prometheus_client::encoding::text::encode(&mut text, &registry).ok()?;
    Some(text)
}

impl Collector for HostCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if let Some(host) = self.host.upgrade() {
            encode_plugins(&mut encoder, &host.summaries())?;
            encode_host(&mut encoder, &host)?;
        }
        if let Some(ingest) = &self.ingest {
            encode_ingest(&mut encoder, ingest)?;
        }
        Ok(())
    }
}

/// A counter per plugin, read from its counts by `value`.
type PerPluginCounter = (&'static str, &'static str, fn(&PluginSummary) -> u64);

/// The per-plugin counters: name (`_total` is added), help, value.
const PLUGIN_COUNTERS: [PerPluginCounter; 8] = [
    (
        "hookhost_plugin_events_handled",
        "Events the plugin handled (on any attempt).",
        |s| s.stats.handled,
    ),
    (
        "hookhost_plugin_deliveries_retried",
        "Failed deliveries scheduled to be tried again.",
        |s| s.stats.retried,
    ),
    (
        "hookhost_plugin_events_dead_lettered",
        "Events that went to the dead letters.",
        |s| s.stats.dead_lettered,
    ),
    (
        "hookhost_plugin_events_filtered",
        "Events the plugin's routing kept from it.",
        |s| s.stats.filtered,
    ),
    (
        "hookhost_plugin_events_suppressed",
        "Events not delivered as repeats of their dedup_key.",
        |s| s.stats.suppressed,
    ),
    (
        "hookhost_plugin_fuel_consumed",
        "Fuel the plugin's calls consumed.",
        |s| s.stats.fuel_consumed,
    ),
    (
        "hookhost_plugin_breaker_opened",
        "Times the plugin's circuit breaker opened.",
        |s| s.stats.breaker_opened,
    ),
    (
        "hookhost_plugin_http_denied",
        "HTTP requests of the plugin that were denied.",
        |s| s.http_denied,
    ),
];

/// A gauge per plugin, read from its counts by `value`.
type PerPluginGauge = (&'static str, &'static str, fn(&PluginSummary) -> i64);

/// The per-plugin gauges: name, help, value.
const PLUGIN_GAUGES: [PerPluginGauge; 3] = [
    (
        "hookhost_plugin_queue_depth",
        "Events waiting in the plugin's queue.",
        |s| s.queued as i64,
    ),
    (
        "hookhost_plugin_breaker_state",
        "The plugin's circuit breaker: 0 closed, 1 open (cooling down), 2 half-open \
         (probing with one event).",
        |s| s.stats.breaker.as_number(),
    ),
    (
        "hookhost_plugin_events_held",
        "Events waiting in the plugin's open groups (group_by).",
        |s| s.stats.held as i64,
    ),
];

fn encode_plugins(
    encoder: &mut DescriptorEncoder<'_>,
    plugins: &[PluginSummary],
) -> Result<(), std::fmt::Error> {
    let labels: Vec<[(&str, String); 1]> = plugins
        .iter()
        .map(|summary| [("plugin", label(&summary.name))])
        .collect();
    for (name, help, value) in PLUGIN_COUNTERS {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (summary, labels) in plugins.iter().zip(&labels) {
            ConstCounter::new(value(summary)).encode(metric.encode_family(labels)?)?;
        }
    }

    let mut failed = encoder.encode_descriptor(
        "hookhost_plugin_deliveries_failed",
        "Failed deliveries (attempts) by class: error (returned), trap, fuel, timeout, memory.",
        None,
        MetricType::Counter,
    )?;
    for summary in plugins {
        for class in FailureClass::ALL {
            let labels = [
                ("plugin", label(&summary.name)),
                ("class", class.as_str().to_owned()),
            ];
            let count = summary.stats.failed(class);
            ConstCounter::new(count).encode(failed.encode_family(&labels)?)?;
        }
    }

    for (name, help, value) in PLUGIN_GAUGES {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (summary, labels) in plugins.iter().zip(&labels) {
            ConstGauge::new(value(summary)).encode(metric.encode_family(labels)?)?;
        }
    }

    let mut latency = encoder.encode_descriptor(
        "hookhost_plugin_delivery_duration_seconds",
        "Time from the start of a delivery's call to its end, instantiation included. A \
         bucket counts the deliveries that took less than its bound, a power of four of \
         nanoseconds.",
        None,
        MetricType::Histogram,
    )?;
    for (summary, labels) in plugins.iter().zip(&labels) {
        encode_latency(&summary.stats, latency.encode_family(labels)?)?;
    }
    Ok(())
}

fn encode_latency(
    stats: &PluginStats,
    mut encoder: prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    let histogram = stats.latency_buckets();
    // The encoder adds the buckets up itself, and writes `+Inf` for the
    // bound `f64::MAX`: each bucket goes in as its own count.
    let mut below = 0;
    let buckets: Vec<(f64, u64)> = histogram
        .buckets
        .iter()
        .map(|&(bound, cumulative)| {
            let own = cumulative.saturating_sub(below);
            below = cumulative;
            let bound = if bound.is_finite() { bound } else { f64::MAX };
            (bound, own)
        })
        .collect();
    encoder.encode_histogram::<NoLabelSet>(histogram.sum_seconds, histogram.count, &buckets, None)
}

fn encode_host(encoder: &mut DescriptorEncoder<'_>, host: &Host) -> Result<(), std::fmt::Error> {
    let admission = host.admission_stats();
    let accepted = ConstCounter::new(admission.accepted());
    accepted.encode(encoder.encode_descriptor(
        "hookhost_events_accepted",
        "Events the host accepted, from every source.",
        None,
        MetricType::Counter,
    )?)?;
    let mut refused = encoder.encode_descriptor(
        "hookhost_events_refused",
        "Events the host refused, by reason: too_large, queue_full, log_write_failed, \
         shut_down.",
        None,
        MetricType::Counter,
    )?;
    for reason in AdmissionRefusal::ALL {
        let labels = [("reason", reason.label())];
        ConstCounter::new(admission.refused(reason)).encode(refused.encode_family(&labels)?)?;
    }

    let unfinished = host.unfinished();
    let mut pending = encoder.encode_descriptor(
        "hookhost_plugin_events_unfinished",
        "Events given to the plugin that it has not completed yet (waiting for a retry \
         included).",
        None,
        MetricType::Gauge,
    )?;
    for row in &unfinished {
        let labels = [("plugin", label(&row.plugin))];
        ConstGauge::new(row.unfinished as i64).encode(pending.encode_family(&labels)?)?;
    }

    let reload = host.reload_stats();
    let mut reloads = encoder.encode_descriptor(
        "hookhost_plugin_reloads",
        "Plugin files hot reload applied, by change: loaded (new), swapped (new version), \
         unloaded (removed).",
        None,
        MetricType::Counter,
    )?;
    for (change, count) in [
        ("loaded", reload.loaded),
        ("swapped", reload.swapped),
        ("unloaded", reload.unloaded),
    ] {
        let labels = [("change", change)];
        ConstCounter::new(count).encode(reloads.encode_family(&labels)?)?;
    }
    let counters = [
        (
            "hookhost_plugin_reload_rejections",
            "Plugin files hot reload refused (the previous version, if any, kept serving).",
            reload.rejected,
        ),
        (
            "hookhost_config_reloads",
            "Config file edits applied.",
            reload.configs_applied,
        ),
        (
            "hookhost_config_reload_rejections",
            "Config file edits refused (the previous config stayed in force).",
            reload.configs_rejected,
        ),
    ];
    for (name, help, count) in counters {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(count).encode(metric)?;
    }
    let gauges = [
        (
            "hookhost_plugins_live",
            "Plugins serving events.",
            host.plugin_names().len() as i64,
        ),
        (
            "hookhost_plugin_load_errors",
            "Plugin files that failed to load when the host started.",
            host.load_errors().len() as i64,
        ),
    ];
    for (name, help, value) in gauges {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        ConstGauge::new(value).encode(metric)?;
    }
    Ok(())
}

fn encode_ingest(
    encoder: &mut DescriptorEncoder<'_>,
    ingest: &IngestStats,
) -> Result<(), std::fmt::Error> {
    let counters = [
        (
            "hookhost_http_events_accepted",
            "Events accepted over HTTP (POST /events, dbt Cloud webhooks).",
            ingest.events_accepted(),
        ),
        (
            "hookhost_http_requests_accepted",
            "HTTP requests whose events were accepted (answered 202).",
            ingest.requests_accepted(),
        ),
        (
            "hookhost_http_dbt_cloud_duplicates",
            "dbt Cloud deliveries whose eventId had been accepted already.",
            ingest.duplicates(),
        ),
    ];
    for (name, help, count) in counters {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(count).encode(metric)?;
    }
    let mut refused = encoder.encode_descriptor(
        "hookhost_http_requests_refused",
        "HTTP requests refused, by reason: unauthorized, bad_signature, malformed, too_large, \
         queue_full, unavailable, not_configured.",
        None,
        MetricType::Counter,
    )?;
    for reason in Refusal::ALL {
        let labels = [("reason", reason.label())];
        ConstCounter::new(ingest.refused(reason)).encode(refused.encode_family(&labels)?)?;
    }
    Ok(())
}

/// `value` as a label value of the text format, which the encoder writes
/// as given: backslash, double quote and line feed escaped.
fn label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(label("webhook"), "webhook");
    }
}
