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
//! The body is the event's JSON (`event_id`, `event_type`, `timestamp`,
//! `metadata`); when the host suppressed repeats of the event before it
//! (the plugin's `dedup_key`; `hookhost_sdk::delivery::suppressed`), it
//! also has `"suppressed": N` after `metadata`, and without repeats it is
//! as before. A digest (the one event the host delivers for a group of
//! events when the plugin has `group_by`) needs nothing of its own: it is
//! posted as its JSON like any event, its summary in `metadata`.
//!
//! A 429 or 5xx answer, a timeout and a failed connection are retryable;
//! a 429 or 503 answer's `Retry-After` is passed on to the host (see
//! `hookhost_sdk::http::delivered`).
//!
//! Settings: `url` (required; grant its host in `http_allow`); `secret`
//! and/or `secrets` (a list), each `whsec_` followed by the base64 key;
//! `headers` (a table of extra headers); `template` (a minijinja template
//! for the body, given `event`, `event_id`, `event_type`, `timestamp`,
//! `severity`, `metadata` and `suppressed`, 0 without repeats); `content_type`
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
        let template = config::get("template");
        let body = body(&event, template.as_deref(), delivery::suppressed(&event))?;
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
/// `timestamp` and `metadata`, then `suppressed` when the host suppressed
/// repeats of it. Left out at 0, so a receiver of a plugin without
/// `dedup_key` gets the same body as before there was one.
fn envelope(event: &Event, suppressed: u32) -> Value {
    let metadata = serde_json::from_str(&event.metadata).unwrap_or(Value::Object(Map::new()));
    let mut envelope = serde_json::json!({
        "event_id": event.id,
        "event_type": event.event_type,
        "timestamp": event.timestamp,
        "metadata": metadata,
    });
    if suppressed > 0 {
        envelope["suppressed"] = suppressed.into();
    }
    envelope
}

/// The request body: the event's JSON, or `template` rendered with the
/// event (`event`, and its parts `event_id`, `event_type`, `timestamp`,
/// `severity` and `metadata`) and `suppressed`, always a number.
fn body(event: &Event, template: Option<&str>, suppressed: u32) -> Result<String, HookError> {
    let envelope = envelope(event, suppressed);
    let Some(template) = template else {
        return Ok(envelope.to_string());
    };
    let mut env = minijinja::Environment::new();
    env.add_template("template", template)
        .map_err(|err| HookError::Permanent(format!("setting `template`: {err:#}")))?;
    let context = minijinja::context! {
        event => &envelope,
        event_id => &event.id,
        event_type => &event.event_type,
        timestamp => &event.timestamp,
        severity => event.severity.map(|s| s.as_str()),
        metadata => &envelope["metadata"],
        suppressed => suppressed,
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

#[cfg(test)]
mod tests {
    use super::*;
    use hookhost_sdk::{EventKind, Severity};

    fn event() -> Event {
        Event {
            id: "e1".to_owned(),
            event_type: "TableRefreshed".to_owned(),
            timestamp: "2025-01-15T10:30:00Z".to_owned(),
            severity: Some(Severity::Low),
            metadata: r#"{"table": "orders", "rows": 10}"#.to_owned(),
            kind: EventKind::Custom("TableRefreshed".to_owned()),
        }
    }

    const ENVELOPE: &str = concat!(
        r#"{"event_id":"e1","event_type":"TableRefreshed","timestamp":"2025-01-15T10:30:00Z","#,
        r#""metadata":{"table":"orders","rows":10}}"#,
    );

    #[test]
    fn the_body_without_repeats_is_the_envelope_as_before() {
        assert_eq!(body(&event(), None, 0).expect("a body"), ENVELOPE);
    }

    #[test]
    fn the_body_after_repeats_says_how_many_after_the_metadata() {
        let expected = ENVELOPE.replacen(r#"10}}"#, r#"10},"suppressed":12}"#, 1);
        assert_eq!(body(&event(), None, 12).expect("a body"), expected);
    }

    #[test]
    fn a_template_always_gets_suppressed() {
        // `event`, the body without a template, has it only after repeats.
        let template = "{{ event_type }} {{ suppressed }} {{ event.suppressed | default('-') }}";
        assert_eq!(
            body(&event(), Some(template), 0).expect("a body"),
            "TableRefreshed 0 -"
        );
        assert_eq!(
            body(&event(), Some(template), 2).expect("a body"),
            "TableRefreshed 2 2"
        );
    }

    #[test]
    fn a_template_that_does_not_parse_is_a_permanent_error() {
        let error = body(&event(), Some("{{ oops"), 0).expect_err("a bad template");
        assert!(
            matches!(error, HookError::Permanent(why) if why.starts_with("setting `template`"))
        );
    }
}
