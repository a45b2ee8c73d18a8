//! Traces (`--otlp-endpoint`): one span per accepted event and, under it,
//! one span per plugin delivery, exported as OpenTelemetry spans over
//! OTLP/HTTP (JSON bodies) by the official crates, through
//! `tracing-opentelemetry`: the host opens `tracing` spans, the layer
//! [`Traces::install`] builds turns them into OpenTelemetry ones.
//!
//! Until traces are installed nothing here costs more than one relaxed
//! load per event: no event span is opened and no delivery keeps one.
//!
//! A W3C `traceparent` header on a request to the HTTP ingest
//! ([`propagate`]) makes the request's span, and so the events it brings
//! and their deliveries, part of the caller's trace.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Instrument;
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::bindings::Event;
use crate::printable::escape_controls;

/// The target of the span of an accepted event (`event_id`,
/// `event_type`).
pub const EVENT_TARGET: &str = "hookhost::event";

/// The target of the span of an HTTP request to the ingest.
pub const HTTP_TARGET: &str = "hookhost::http";

/// How long the exit waits for the last spans to be sent: long enough for
/// one batch to a collector nearby, short enough that a collector that is
/// gone does not hold up a stop.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether traces are installed in this process.
static ON: AtomicBool = AtomicBool::new(false);

/// Why traces could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TracesError {
    /// The OTLP exporter could not be built (an endpoint that is not a URL).
    #[error("cannot export traces to {endpoint}: {reason}")]
    Exporter {
        /// The endpoint as given.
        endpoint: String,
        /// Why.
        reason: String,
    },
}

/// The exporter of a process's traces; [`Traces::shutdown`] sends what is
/// left.
pub struct Traces {
    provider: SdkTracerProvider,
}

impl Traces {
    /// Exports traces to the OTLP/HTTP collector at `endpoint`, the base
    /// URL as `OTEL_EXPORTER_OTLP_ENDPOINT` gives it (spans go to
    /// `endpoint/v1/traces`), as service `hookhost`. Returns the layer to
    /// add to the process's subscriber, which takes the event, delivery
    /// and HTTP request spans and nothing else.
    pub fn install<S>(endpoint: &str) -> Result<(impl Layer<S>, Traces), TracesError>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(url)
            .build()
            .map_err(|err| TracesError::Exporter {
                endpoint: endpoint.to_owned(),
                reason: err.to_string(),
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("hookhost").build())
            .build();
        let layer: OpenTelemetryLayer<S, SdkTracer> =
            tracing_opentelemetry::layer().with_tracer(provider.tracer("hookhost"));
        let spans = Targets::new()
            .with_target(EVENT_TARGET, LevelFilter::TRACE)
            .with_target(crate::observe::logs::DELIVERY_TARGET, LevelFilter::TRACE)
            .with_target(HTTP_TARGET, LevelFilter::TRACE);
        ON.store(true, Ordering::Relaxed);
        Ok((layer.with_filter(spans), Traces { provider }))
    }

    /// Sends the spans not sent yet, waiting at most a few seconds.
    /// Blocking: call it outside the async runtime.
    pub fn shutdown(self) {
        ON.store(false, Ordering::Relaxed);
        if let Err(err) = self.provider.shutdown_with_timeout(FLUSH_TIMEOUT) {
            tracing::warn!("the last spans may not have been sent: {err}");
        }
    }
}

/// Whether traces are installed.
pub(crate) fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// The span of `event`, accepted now, under the current span (the HTTP
/// request it came with, if any); `None` without traces. Entered while
/// its deliveries are queued, so that they keep it ([`current`]).
pub(crate) fn accepted(event: &Event) -> Option<tracing::span::EnteredSpan> {
    if !on() {
        return None;
    }
    let span = tracing::info_span!(
        target: EVENT_TARGET,
        "event",
        event_id = %escape_controls(&event.id),
        event_type = %escape_controls(&event.event_type),
    );
    Some(span.entered())
}

/// The span a delivery made now is part of; `None` without traces.
pub(crate) fn current() -> Option<tracing::Span> {
    on().then(tracing::Span::current)
}

/// Axum middleware: with traces on, runs the request in a span whose
/// parent is the caller's trace when it sent a W3C `traceparent` header.
pub async fn propagate(request: Request, next: Next) -> Response {
    if !on() {
        return next.run(request).await;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(request.headers()));
    let span = tracing::info_span!(
        target: HTTP_TARGET,
        "http request",
        method = %request.method(),
        path = %escape_controls(request.uri().path()),
    );
    if let Err(err) = span.set_parent(parent) {
        tracing::debug!("the request's traceparent was not used: {err}");
    }
    next.run(request).instrument(span).await
}

/// A request's headers, for the propagator.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}
