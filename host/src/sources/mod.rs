//! Events from outside the process: JSON lines ([`lines`], stdin for
//! `hookhost run`), the HTTP ingest of `hookhost run
//! --listen` (`POST /events`, [`http`]), dbt Cloud job webhooks
//! (`POST /ingest/dbt-cloud`, [`dbt_cloud`]), and the health checks.
//!
//! [`router`] builds the axum `Router` over an [`Ingest`] (the host and
//! what the endpoints check); other modules `.merge()` their routes into
//! it. Every endpoint hands its events to [`Host::admit_all`], so a `202`
//! means what "accepted" means for the library: in the write-ahead log when
//! the host has a data directory. [`listen`] binds the socket (loopback
//! unless asked otherwise) and serves the router until told to stop.

pub mod dbt_cloud;
pub mod http;
pub mod lines;
pub mod listen;
mod stats;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

pub use stats::{IngestStats, Refusal};

use crate::config::{Secret, ServerConfig};
use crate::host::{EmitError, Host, Refused};

/// How long a request waits for room in the queue of a plugin whose
/// `on_full` is `"wait"` before it is refused with `503`. Long enough to
/// ride out a burst; short enough that the caller (dbt Cloud gives up after
/// 10 s) hears back, and that a stop is not held up by waiting requests.
pub const WAIT_FOR_ROOM: Duration = Duration::from_secs(5);

/// The `Retry-After` of a `503`, in seconds. A full queue drains in
/// milliseconds to seconds; a caller that comes back after a second finds
/// room, or is told to wait again.
pub const RETRY_AFTER_SECS: u64 = 1;

/// What the endpoints check, and their limits.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// The bearer token `POST /events` asks for; `None`: none is asked.
    pub token: Option<Secret>,
    /// The dbt Cloud webhook's secret; `None`: `/ingest/dbt-cloud` answers
    /// `404`.
    pub dbt_cloud_secret: Option<Secret>,
    /// The largest request body read, in bytes.
    pub max_body_bytes: usize,
    /// How long a request waits for room under `on_full = "wait"`.
    pub wait_for_room: Duration,
}

impl IngestSettings {
    /// The settings of a `[server]` section.
    pub fn from_config(server: &ServerConfig) -> IngestSettings {
        IngestSettings {
            token: server.token().cloned(),
            dbt_cloud_secret: server.dbt_cloud_secret().cloned(),
            max_body_bytes: server.max_body_bytes(),
            wait_for_room: WAIT_FOR_ROOM,
        }
    }
}

/// What every endpoint shares: the host, the settings, the counts, and the
/// dbt Cloud deliveries seen lately.
///
/// It holds the host weakly: a request holds it only while it hands over
/// its events, so a connection left open after the server stopped never
/// keeps the host from shutting down (`Host::shutdown` takes the host).
pub struct Ingest {
    host: Weak<Host>,
    settings: IngestSettings,
    stats: Arc<IngestStats>,
    recent_dbt_events: dbt_cloud::RecentIds,
    stopping: AtomicBool,
}

impl Ingest {
    /// The shared state of the endpoints over `host`.
    pub fn new(host: &Arc<Host>, settings: IngestSettings) -> Arc<Ingest> {
        Arc::new(Ingest {
            host: Arc::downgrade(host),
            settings,
            stats: Arc::default(),
            recent_dbt_events: dbt_cloud::RecentIds::new(dbt_cloud::RECENT_IDS),
            stopping: AtomicBool::new(false),
        })
    }

    /// The host the events go to, while it runs.
    pub fn host(&self) -> Option<Arc<Host>> {
        self.host.upgrade()
    }

    /// What the endpoints accepted and refused so far.
    pub fn stats(&self) -> &Arc<IngestStats> {
        &self.stats
    }

    /// From now on, events are refused with `503` and `/readyz` answers
    /// `503`: the process is stopping. Requests already past this check
    /// finish.
    pub fn stop_accepting(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Hands `events` to the host, all or none, and answers: `202` with
    /// their ids once accepted, or why not.
    async fn admit(&self, events: Vec<crate::Event>) -> Response {
        let host = match self.host() {
            Some(host) if !self.is_stopping() => host,
            _ => return self.refuse_stopping(),
        };
        let ids: Vec<String> = events.iter().map(|event| event.id.clone()).collect();
        match host.admit_all(events, self.settings.wait_for_room).await {
            Ok(()) => {
                self.stats.count_accepted(ids.len());
                answer(StatusCode::ACCEPTED, json!({ "accepted": ids }))
            }
            Err(refused) => self.refused_by_host(refused),
        }
    }

    /// The answer to a request the host refused.
    fn refused_by_host(&self, refused: Refused) -> Response {
        let Refused { index, error } = refused;
        let (status, reason) = match &error {
            EmitError::QueueFull { .. } | EmitError::QueueBytesFull { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, Refusal::QueueFull)
            }
            EmitError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, Refusal::TooLarge),
            EmitError::ShutDown => return self.refuse_stopping(),
            EmitError::Log(err) => {
                tracing::warn!("an HTTP request was refused: {err}");
                let body = json!({
                    "error": "the events could not be written to the write-ahead log; nothing \
                              of this request was accepted",
                });
                return self.refuse(Refusal::Unavailable, StatusCode::SERVICE_UNAVAILABLE, body);
            }
        };
        let mut body = json!({
            "error": format!("event {index}: {error}; nothing of this request was accepted"),
            "index": index,
        });
        if let EmitError::QueueFull { plugin, .. } | EmitError::QueueBytesFull { plugin, .. } =
            &error
        {
            body["plugin"] = plugin.clone().into();
        }
        self.refuse(reason, status, body)
    }

    fn refuse_stopping(&self) -> Response {
        let body =
            json!({ "error": "hookhost is shutting down; nothing of this request was accepted" });
        self.refuse(Refusal::Unavailable, StatusCode::SERVICE_UNAVAILABLE, body)
    }

    /// Counts a refusal for `reason` and answers `status` with `body`; a
    /// `503` carries `Retry-After`.
    fn refuse(&self, reason: Refusal, status: StatusCode, body: serde_json::Value) -> Response {
        self.stats.count_refused(reason);
        tracing::debug!(
            reason = reason.label(),
            status = status.as_u16(),
            "request refused"
        );
        let mut response = answer(status, body);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        response
    }

    /// The body of a request, read whole up to `max_body_bytes`; past it,
    /// `413` (told by `Content-Length` before anything is read, when the
    /// client sent one).
    async fn read_body(&self, headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
        let limit = self.settings.max_body_bytes;
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(self.refuse_body_too_large());
        }
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
                Err(self.refuse_body_too_large())
            }
            Err(err) => Err(self.refuse(
                Refusal::Malformed,
                StatusCode::BAD_REQUEST,
                json!({ "error": format!("cannot read the request body: {err}") }),
            )),
        }
    }

    fn refuse_body_too_large(&self) -> Response {
        let limit = self.settings.max_body_bytes;
        let body = json!({
            "error": format!(
                "the request body is over the limit of {limit} bytes ([server] max_body_kib = {}); \
                 nothing of this request was accepted",
                limit >> 10
            ),
        });
        self.refuse(Refusal::TooLarge, StatusCode::PAYLOAD_TOO_LARGE, body)
    }
}

/// The routes of the HTTP sources and the health checks, over `ingest`:
///
/// - `POST /events`: events in the README's JSON form ([`http`]);
/// - `POST /ingest/dbt-cloud`: dbt Cloud job webhooks ([`dbt_cloud`]);
/// - `GET /healthz`: `200` while the process serves;
/// - `GET /readyz`: `200` while events are accepted, `503` once stopping.
pub fn router(ingest: &Arc<Ingest>) -> Router {
    Router::new()
        .route("/events", post(http::post_events))
        .route("/ingest/dbt-cloud", post(dbt_cloud::post_webhook))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ingest.clone())
}

async fn healthz() -> Response {
    answer(StatusCode::OK, json!({ "status": "ok" }))
}

async fn readyz(State(ingest): State<Arc<Ingest>>) -> Response {
    let host = match ingest.host() {
        Some(host) if !ingest.is_stopping() => host,
        _ => {
            return answer(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({ "ready": false, "reason": "shutting down" }),
            )
        }
    };
    let plugins = host.plugin_names().len();
    answer(StatusCode::OK, json!({ "ready": true, "plugins": plugins }))
}

/// `status` with `body` as JSON.
fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
