//! What a running host shows of itself: `GET /metrics` (Prometheus text,
//! [`metrics`]), `GET /plugins` (JSON, [`status`], read by `hookhost
//! status`), the admission counts they report ([`admission`]), the JSON
//! form of the log ([`logs`]) and the traces exported over OTLP
//! ([`traces`]).
//!
//! [`router`] builds the axum routes; `hookhost run --listen` merges them
//! into the HTTP ingest's router, so one address serves both.

pub mod admission;
pub mod logs;
pub mod metrics;
pub mod status;
pub mod traces;

use std::sync::{Arc, Weak};

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::host::Host;
use crate::sources::IngestStats;

/// What the endpoints read: the host, weakly (a request holds it only
/// while it reads, so an open connection never keeps it from shutting
/// down), and the HTTP ingest's counts when there is an ingest.
struct Observed {
    host: Weak<Host>,
    collector: Arc<metrics::HostCollector>,
}

/// The routes over `host` (and `ingest`'s counts, when given):
///
/// - `GET /metrics`: the counts in the Prometheus text format;
/// - `GET /plugins`: each plugin's state, limits, grants and last
///   failures as JSON ([`status::PluginsReport`]).
///
/// Both answer `503` once the host has shut down.
pub fn router(host: &Arc<Host>, ingest: Option<Arc<IngestStats>>) -> Router {
    let observed = Arc::new(Observed {
        host: Arc::downgrade(host),
        collector: Arc::new(metrics::HostCollector::new(host, ingest)),
    });
    Router::new()
        .route("/metrics", get(get_metrics))
        .route("/plugins", get(get_plugins))
        .with_state(observed)
}

async fn get_metrics(State(observed): State<Arc<Observed>>) -> Response {
    match metrics::encode(&observed.collector) {
        Some(text) => with_type(StatusCode::OK, text, metrics::CONTENT_TYPE),
        None => shut_down(),
    }
}

async fn get_plugins(State(observed): State<Arc<Observed>>) -> Response {
    let Some(host) = observed.host.upgrade() else {
        return shut_down();
    };
    let report = status::report(&host);
    drop(host);
    match serde_json::to_string(&report) {
        Ok(json) => with_type(StatusCode::OK, json, "application/json"),
        Err(err) => with_type(
            StatusCode::INTERNAL_SERVER_ERROR,
            serde_json::json!({ "error": format!("cannot write the report: {err}") }).to_string(),
            "application/json",
        ),
    }
}

fn shut_down() -> Response {
    let body = serde_json::json!({ "error": "hookhost is shutting down" }).to_string();
    with_type(StatusCode::SERVICE_UNAVAILABLE, body, "application/json")
}

fn with_type(status: StatusCode, body: String, content_type: &'static str) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
