//! Built-in `webhook` hook: POSTs every event to a URL, signed following
//! the Standard Webhooks scheme (<https://www.standardwebhooks.com>), so
//! any receiver with a Standard Webhooks library can verify it.
//!
//! Each delivery carries `webhook-id` (the event id, the same on every
//! retry), `webhook-timestamp` (Unix seconds at sending) and
//! `webhook-signature`: `v1,` and the base64 HMAC-SHA256 of
//! `<id>.<timestamp>.<body>`, once per configured secret, space-separated,
//! so a receiver can switch secrets without missing a delivery. It also
//! carries `webhook-attempt`, hookhost's own header (not part of Standard
//! Webhooks, and not signed): 1 on the first delivery, 2 on the first
//! retry, and so on.
//!
//! A 429 or 5xx answer, a timeout and a failed connection are retryable;
//! a 429 or 503 answer's `Retry-After` is passed on to the host (see
//! `hookhost_sdk::http::delivered`).
//!
//! Settings: `url` (required; grant its host in `http_allow`); `secret`
//! and/or `secrets` (a list), each `whsec_` followed by the base64 key;
//! `headers` (a table of extra headers); `template` (a minijinja template
//! for the body; the default body is the event's JSON); `content_type`
//! (default `application/json`). The plugin needs `wall_clock = true` in
//! its section to stamp deliveries with the real time.

mod signature;

use std::time::{SystemTime, UNIX_EPOCH};

use hookhost_sdk::{config, Event, Hook, HookError};
use hookhost_sdk::{delivery, http};
use serde_json::{Map, Value};

use signature::{sign, Secret};

/// 2001-09-09 in Unix seconds: a clock reading below it is the sandbox's
/// frozen clock, not the time.
const EARLIEST_PLAUSIBLE_TIME: u64 = 1_000_000_000;

struct Webhook;

impl Hook for Webhook {
    fn handle(event: Event) -> Result<(), HookError> {
        let url = config::get("url")
            .ok_or_else(|| HookError::Permanent("setting `url` is not set".to_owned()))?;
        let secrets = secrets()?;
        let body = body(&event)?;
        let timestamp = now()?;
        let mut request = http::request("POST", &url);
        request.headers = headers()?;
        request.headers.extend([
            ("webhook-id".to_owned(), event.id.clone()),
            ("webhook-timestamp".to_owned(), timestamp.to_string()),
            (
                "webhook-attempt".to_owned(),
                delivery::attempt().to_string(),
            ),
        ]);
        if !secrets.is_empty() {
            let signatures: Vec<String> = secrets
                .iter()
                .map(|secret| sign(secret, &event.id, timestamp, body.as_bytes()))
                .collect();
            request
                .headers
                .push(("webhook-signature".to_owned(), signatures.join(" ")));
        }
        request.body = body.into_bytes();
        http::delivered(http::send(&request), "the webhook receiver")?;
        Ok(())
    }
}

hookhost_sdk::export_hook!(Webhook);

/// Every secret from `secret` and `secrets`.
fn secrets() -> Result<Vec<Secret>, HookError> {
    let mut texts: Vec<(String, String)> = Vec::new();
    if let Some(secret) = config::get("secret") {
        texts.push(("secret".to_owned(), secret));
    }
    if let Some(list) = config::get("secrets") {
        let list: Vec<String> = serde_json::from_str(&list).map_err(|_| {
            HookError::Permanent("setting `secrets` must be a list of strings".to_owned())
        })?;
        texts.extend(
            list.into_iter()
                .enumerate()
                .map(|(i, secret)| (format!("secrets[{i}]"), secret)),
        );
    }
    // An empty entry (`"${OLD_SECRET:-}"` while no rotation is under way)
    // is skipped.
    texts
        .into_iter()
        .filter(|(_, text)| !text.is_empty())
        .map(|(key, text)| {
            Secret::parse(&text)
                .map_err(|why| HookError::Permanent(format!("setting `{key}`: {why}")))
        })
        .collect()
}

/// The `content-type` header and those from `headers`.
fn headers() -> Result<Vec<(String, String)>, HookError> {
    let mut headers = vec![(
        "content-type".to_owned(),
        config::get_or("content_type", "application/json"),
    )];
    if let Some(table) = config::get("headers") {
        let table: Map<String, Value> = serde_json::from_str(&table).map_err(|_| {
            HookError::Permanent("setting `headers` must be a table of strings".to_owned())
        })?;
        for (name, value) in table {
            let Value::String(value) = value else {
                return Err(HookError::Permanent(format!(
                    "setting `headers`: `{name}` must be a string"
                )));
            };
            headers.push((name, value));
        }
    }
    Ok(headers)
}

/// The event's JSON form, as the host reads it: `event_id`, `event_type`,
/// `timestamp` and `metadata`.
fn envelope(event: &Event) -> Value {
    let metadata = serde_json::from_str(&event.metadata).unwrap_or(Value::Object(Map::new()));
    serde_json::json!({
        "event_id": event.id,
        "event_type": event.event_type,
        "timestamp": event.timestamp,
        "metadata": metadata,
    })
}

/// The request body: the event's JSON, or the `template` rendered with the
/// event (`event`, and its parts `event_id`, `event_type`, `timestamp`,
/// `severity` and `metadata`).
fn body(event: &Event) -> Result<String, HookError> {
    let envelope = envelope(event);
    let Some(template) = config::get("template") else {
        return Ok(envelope.to_string());
    };
    let mut env = minijinja::Environment::new();
    env.add_template("template", &template)
        .map_err(|err| HookError::Permanent(format!("setting `template`: {err:#}")))?;
    let context = minijinja::context! {
        event => &envelope,
        event_id => &event.id,
        event_type => &event.event_type,
        timestamp => &event.timestamp,
        severity => event.severity.map(|s| s.as_str()),
        metadata => &envelope["metadata"],
    };
    env.get_template("template")
        .and_then(|template| template.render(context))
        .map_err(|err| HookError::Permanent(format!("setting `template`: {err:#}")))
}

/// The current Unix time in seconds, or an error saying how to grant the
/// clock when the sandbox's clock is frozen.
fn now() -> Result<u64, HookError> {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    if seconds < EARLIEST_PLAUSIBLE_TIME {
        return Err(HookError::Permanent(
            "signing needs the real time: add `wall_clock = true` to this hook's \
             [plugins.<name>] section"
                .to_owned(),
        ));
    }
    Ok(seconds)
}
