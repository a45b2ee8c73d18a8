//! `POST /ingest/dbt-cloud`: dbt Cloud job webhooks (`job.run.started`,
//! `job.run.completed`, `job.run.errored`), turned into events.
//!
//! dbt Cloud signs each delivery: `Authorization` holds the hex
//! HMAC-SHA256 of the raw body under the webhook's secret (`[server]
//! dbt_cloud_secret`). A delivery without a matching signature is refused
//! with `401` and counted. A verified one becomes one event whose
//! `event_id` is the payload's `eventId` and whose `event_type` is its
//! `eventType`, with the job, run, environment and status in `metadata`.
//! dbt Cloud retries a delivery it thinks failed, so deliveries are
//! deduplicated on `eventId`: one seen among the last [`RECENT_IDS`]
//! accepted is answered `200` and not accepted again (and since the event
//! keeps the `eventId` as its id, a repeat that outlives that memory, or a
//! restart, reaches the `sql` hook's "on conflict do nothing" and the
//! `webhook` hook's `webhook-id` as the same event).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::StatusCode;
use axum::response::Response;
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use super::{answer, Ingest, Refusal};
use crate::config::Secret;
use crate::printable::escape_controls;
use crate::Event;

/// How many accepted `eventId`s are remembered for deduplication. dbt
/// Cloud retries a delivery five times within minutes; a busy account
/// sends a few thousand job events a day, so ten thousand ids (about a
/// megabyte) cover its retries many times over.
pub const RECENT_IDS: usize = 10_000;

/// The event types dbt Cloud sends for jobs.
pub const EVENT_TYPES: [&str; 3] = ["job.run.started", "job.run.completed", "job.run.errored"];

/// The handler of `POST /ingest/dbt-cloud`.
pub(super) async fn post_webhook(State(ingest): State<Arc<Ingest>>, request: Request) -> Response {
    let Some(secret) = ingest.settings.dbt_cloud_secret.clone() else {
        let body = json!({
            "error": "dbt Cloud webhooks are not set up on this host: set [server] \
                      dbt_cloud_secret to the webhook's secret",
        });
        return ingest.refuse(Refusal::NotConfigured, StatusCode::NOT_FOUND, body);
    };
    let (parts, body) = request.into_parts();
    let body = match ingest.read_body(&parts.headers, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let signature = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
    if let Err(why) = verify(&secret, &body, signature) {
        tracing::debug!("dbt Cloud webhook refused: {why}");
        let body = json!({ "error": format!("{why}; nothing was accepted") });
        return ingest.refuse(Refusal::BadSignature, StatusCode::UNAUTHORIZED, body);
    }
    let event = match to_event(&body) {
        Ok(event) => event,
        Err(why) => {
            let body = json!({ "error": format!("{why}; nothing was accepted") });
            return ingest.refuse(Refusal::Malformed, StatusCode::BAD_REQUEST, body);
        }
    };
    let id = event.id.clone();
    if !ingest.recent_dbt_events.insert(&id) {
        ingest.stats.count_duplicate();
        return answer(StatusCode::OK, json!({ "duplicate": true, "event_id": id }));
    }
    let response = ingest.admit(vec![event]).await;
    if response.status() != StatusCode::ACCEPTED {
        // Not accepted: dbt Cloud's retry must not pass for a repeat.
        ingest.recent_dbt_events.remove(&id);
    }
    response
}

/// Checks the signature dbt Cloud puts in `Authorization`: the hex
/// HMAC-SHA256 of `body` under `secret`, compared in constant time.
fn verify(secret: &Secret, body: &[u8], signature: Option<&[u8]>) -> Result<(), &'static str> {
    let signature = signature.ok_or("no Authorization header: dbt Cloud signs every delivery")?;
    let signature = hex::decode(signature.trim_ascii())
        .map_err(|_| "the Authorization header is not a hex HMAC-SHA256 signature")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| "the configured dbt_cloud_secret cannot key an HMAC")?;
    mac.update(body);
    mac.verify_slice(&signature)
        .map_err(|_| "the signature does not match the body under [server] dbt_cloud_secret")
}

/// The event for a verified dbt Cloud payload.
pub fn to_event(body: &[u8]) -> Result<Event, String> {
    let payload: Value =
        serde_json::from_slice(body).map_err(|err| format!("not valid JSON: {err}"))?;
    let payload = payload
        .as_object()
        .ok_or("the payload is not a JSON object")?;
    let event_id = text(payload, "eventId")?
        .filter(|id| !id.is_empty())
        .ok_or("eventId is missing")?;
    let event_type = text(payload, "eventType")?.ok_or("eventType is missing")?;
    if !EVENT_TYPES.contains(&event_type.as_str()) {
        return Err(format!(
            "eventType {:?} is not one of {}",
            escape_controls(&event_type),
            EVENT_TYPES.join(", ")
        ));
    }
    let data = payload
        .get("data")
        .and_then(Value::as_object)
        .ok_or("data is missing or not an object")?;
    let status = text(data, "runStatus")?;
    let mut metadata = Map::new();
    metadata.insert("source".into(), "dbt_cloud".into());
    let fields = [
        (payload, "accountId", "account_id"),
        (payload, "webhookName", "webhook_name"),
        (data, "jobId", "job_id"),
        (data, "jobName", "job_name"),
        (data, "runId", "run_id"),
        (data, "environmentId", "environment_id"),
        (data, "environmentName", "environment_name"),
        (data, "projectId", "project_id"),
        (data, "projectName", "project_name"),
        (data, "dbtVersion", "dbt_version"),
        (data, "runReason", "run_reason"),
        (data, "runStatus", "status"),
        (data, "runStatusCode", "status_code"),
        (data, "runStatusMessage", "status_message"),
        (data, "runStartedAt", "started_at"),
        (data, "runFinishedAt", "finished_at"),
        (data, "runErroredAt", "errored_at"),
    ];
    for (object, key, name) in fields {
        if let Some(value) = text(object, key)? {
            metadata.insert(name.into(), value.into());
        }
    }
    for required in ["job_id", "run_id"] {
        if !metadata.contains_key(required) {
            return Err(format!(
                "data.{} is missing",
                if required == "job_id" {
                    "jobId"
                } else {
                    "runId"
                }
            ));
        }
    }
    metadata.insert(
        "severity".into(),
        severity(&event_type, status.as_deref()).into(),
    );
    let mut envelope = Map::new();
    envelope.insert("event_id".into(), event_id.into());
    envelope.insert("event_type".into(), event_type.into());
    if let Some(timestamp) = text(payload, "timestamp")? {
        envelope.insert("timestamp".into(), timestamp.into());
    }
    envelope.insert("metadata".into(), Value::Object(metadata));
    Event::from_json_value(Value::Object(envelope)).map_err(|err| err.to_string())
}

/// `high` for a run that failed (`job.run.errored`, or a completion whose
/// status is not a success), `info` otherwise.
fn severity(event_type: &str, status: Option<&str>) -> &'static str {
    let failed = match event_type {
        "job.run.errored" => true,
        "job.run.completed" => !status.is_some_and(|s| s.eq_ignore_ascii_case("success")),
        _ => false,
    };
    if failed {
        "high"
    } else {
        "info"
    }
}

/// `key` of `object` as text: a string as it is, a number in its JSON
/// spelling (dbt Cloud has sent ids both ways), `None` when missing or
/// null; any other type is an error naming the key.
fn text(object: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(_) => Err(format!("{key} must be a string or a number")),
    }
}

/// The ids of the dbt Cloud events accepted last, at most `capacity`; the
/// oldest is forgotten for each new one past that.
pub(super) struct RecentIds {
    capacity: usize,
    ids: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl RecentIds {
    pub(super) fn new(capacity: usize) -> RecentIds {
        RecentIds {
            capacity,
            ids: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// Remembers `id`; `false` when it is remembered already.
    pub(super) fn insert(&self, id: &str) -> bool {
        let mut guard = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        if set.contains(id) {
            return false;
        }
        if order.len() >= self.capacity {
            if let Some(oldest) = order.pop_front() {
                set.remove(&oldest);
            }
        }
        set.insert(id.to_owned());
        order.push_back(id.to_owned());
        true
    }

    /// Forgets `id` (its event was not accepted after all).
    pub(super) fn remove(&self, id: &str) {
        let mut guard = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *guard;
        if set.remove(id) {
            order.retain(|kept| kept != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dbt Cloud's documented payload for an errored run.
    const ERRORED: &str = r#"{
      "accountId": 1,
      "eventId": "wev_2L6m5BggBw9uPNuSmtg4MUiW4Re",
      "timestamp": "2023-01-31T21:15:20.419714619Z",
      "eventType": "job.run.errored",
      "webhookName": "test",
      "data": {
        "jobId": "123", "jobName": "dbt Vault", "runId": "12345",
        "environmentId": "1234", "environmentName": "dbt Vault Demo",
        "dbtVersion": "1.0.0", "projectName": "Snowflake Github Demo",
        "runReason": "Kicked off from UI by test@test.com",
        "runStartedAt": "2023-01-31T21:14:41Z", "runErroredAt": "2023-01-31T21:15:20Z",
        "runStatus": "Errored", "runStatusMessage": "None"
      }
    }"#;

    #[test]
    fn a_payload_maps_to_an_event_with_the_job_run_environment_and_status() {
        let event = to_event(ERRORED.as_bytes()).unwrap();
        assert_eq!(event.id, "wev_2L6m5BggBw9uPNuSmtg4MUiW4Re");
        assert_eq!(event.event_type, "job.run.errored");
        assert_eq!(event.severity, Some(crate::Severity::High));
        let metadata: Value = serde_json::from_str(&event.metadata).unwrap();
        assert_eq!(metadata["job_id"], "123");
        assert_eq!(metadata["job_name"], "dbt Vault");
        assert_eq!(metadata["run_id"], "12345");
        assert_eq!(metadata["environment_name"], "dbt Vault Demo");
        assert_eq!(metadata["status"], "Errored");
        assert_eq!(metadata["account_id"], "1");
        assert_eq!(metadata["source"], "dbt_cloud");
    }

    #[test]
    fn a_success_is_info_and_a_failed_completion_high() {
        assert_eq!(severity("job.run.completed", Some("Success")), "info");
        assert_eq!(severity("job.run.completed", Some("Error")), "high");
        assert_eq!(severity("job.run.started", Some("Running")), "info");
    }

    #[test]
    fn unknown_types_and_missing_ids_are_refused_by_name() {
        let other = ERRORED.replace("job.run.errored", "job.run.exploded");
        assert!(to_event(other.as_bytes())
            .unwrap_err()
            .contains("job.run.exploded"));
        let no_run = ERRORED.replace("\"runId\": \"12345\",", "");
        assert_eq!(
            to_event(no_run.as_bytes()).unwrap_err(),
            "data.runId is missing"
        );
        let no_id = ERRORED.replace("\"eventId\"", "\"eventID\"");
        assert_eq!(
            to_event(no_id.as_bytes()).unwrap_err(),
            "eventId is missing"
        );
    }

    #[test]
    fn the_signature_is_the_hex_hmac_of_the_body() {
        let secret = Secret::new("dbt-secret");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"dbt-secret").unwrap();
        mac.update(b"body");
        let good = hex::encode(mac.finalize().into_bytes());
        assert_eq!(verify(&secret, b"body", Some(good.as_bytes())), Ok(()));
        assert!(verify(&secret, b"other", Some(good.as_bytes())).is_err());
        assert!(verify(&secret, b"body", Some(b"zz")).is_err());
        assert!(verify(&secret, b"body", None).is_err());
    }

    #[test]
    fn recent_ids_forget_the_oldest_past_their_capacity() {
        let recent = RecentIds::new(2);
        assert!(recent.insert("a"));
        assert!(!recent.insert("a"));
        assert!(recent.insert("b"));
        assert!(recent.insert("c"));
        assert!(recent.insert("a"), "a was forgotten for c");
        recent.remove("a");
        assert!(recent.insert("a"));
    }
}
