//! A programmable webhook receiver on 127.0.0.1 for the delivery tests.
//!
//! It answers every request by a [`Policy`] that the test can change while
//! it runs ([`Flaky::set_policy`], [`Flaky::heal`]), and records every try
//! of every `webhook-id`: when it arrived, the status it was answered with,
//! the `webhook-attempt` the hook numbered it with and the `event_id` in
//! its JSON body. It speaks just enough HTTP/1.1 for
//! the host's client, keep-alive included (the client reuses connections;
//! closing each would leave thousands of sockets in `TIME_WAIT` in a long
//! test).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How the receiver answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Policy {
    /// 200 to every request.
    Healthy,
    /// 503 to the first `failures` tries of each `webhook-id`, with
    /// `Retry-After: <seconds>` when `retry_after` is set; 200 after that.
    FailFirst {
        failures: usize,
        retry_after: Option<u32>,
    },
    /// This status to every request.
    Down(u16),
    /// Holds every request unanswered until the policy changes, then
    /// answers it by the new policy. The try is recorded with its arrival
    /// time once answered.
    Stall,
}

/// One request for one `webhook-id`.
#[derive(Debug, Clone)]
pub struct Try {
    /// When its request had fully arrived.
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
    /// Its `webhook-attempt` header (1 for a first delivery), if sent.
    pub attempt: Option<u32>,
    /// The `event_id` of its JSON body, if the body had one.
    pub event_id: Option<String>,
}

/// A running receiver; it stops with the test's runtime.
pub struct Flaky {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

struct Shared {
    policy: watch::Sender<Policy>,
    /// Every try by `webhook-id` (`""` for a request without one), in
    /// arrival order per id.
    tries: Mutex<BTreeMap<String, Vec<Try>>>,
}

impl Flaky {
    /// Starts a receiver on 127.0.0.1 answering by `policy`. Call it inside
    /// a tokio runtime.
    pub async fn start(policy: Policy) -> Flaky {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("the bound address");
        let shared = Arc::new(Shared {
            policy: watch::Sender::new(policy),
            tries: Mutex::new(BTreeMap::new()),
        });
        let serving = shared.clone();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(serve(conn, serving.clone()));
            }
        });
        Flaky { addr, shared }
    }

    /// The URL to configure as the webhook's `url`.
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// The `[plugins.<name>]` section (and its settings) that points the
    /// built-in `webhook` hook, loaded as `name`, at this receiver, with
    /// `limits` (lines of `key = value`) added to the section.
    pub fn webhook_config(&self, name: &str, limits: &str) -> String {
        format!(
            "[plugins.{name}]\nhttp_allow = [\"http://{addr}\"]\nhttp_private = [\"127.0.0.1\"]\n\
             wall_clock = true\n{limits}\n[plugins.{name}.settings]\nurl = \"{url}\"\n",
            addr = self.addr,
            url = self.url()
        )
    }

    /// Answers by `policy` from now on, including requests held by
    /// [`Policy::Stall`].
    pub fn set_policy(&self, policy: Policy) {
        self.shared.policy.send_replace(policy);
    }

    /// Answers 200 to everything from now on.
    pub fn heal(&self) {
        self.set_policy(Policy::Healthy);
    }

    /// Every try for `webhook_id`, in arrival order.
    pub fn tries(&self, webhook_id: &str) -> Vec<Try> {
        self.lock().get(webhook_id).cloned().unwrap_or_default()
    }

    /// Every try by `webhook-id`.
    pub fn all_tries(&self) -> BTreeMap<String, Vec<Try>> {
        self.lock().clone()
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    /// Requests answered with `status` so far.
    pub fn answered(&self, status: u16) -> usize {
        self.lock()
            .values()
            .flatten()
            .filter(|t| t.status == status)
            .count()
    }

    /// The ids of every request answered so far.
    pub fn ids(&self) -> BTreeSet<String> {
        self.lock().keys().cloned().collect()
    }

    /// The ids with at least one try answered with 200.
    pub fn ids_with_200(&self) -> BTreeSet<String> {
        self.ids_with(|tries| tries.iter().any(|t| t.status == 200))
    }

    /// The ids whose tries satisfy `test`.
    pub fn ids_with(&self, mut test: impl FnMut(&[Try]) -> bool) -> BTreeSet<String> {
        self.lock()
            .iter()
            .filter(|(_, tries)| test(tries))
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<Try>>> {
        self.shared
            .tries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Answers the requests of one connection until the client closes it or
/// asks to.
async fn serve(mut conn: TcpStream, shared: Arc<Shared>) {
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut conn, &mut buffer).await {
        let at = Instant::now();
        let (status, retry_after) = decide(&shared, &request.webhook_id).await;
        let event_id = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|body| body.get("event_id")?.as_str().map(str::to_owned));
        shared
            .tries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(request.webhook_id)
            .or_default()
            .push(Try {
                at,
                status,
                attempt: request.attempt,
                event_id,
            });
        let retry_after = retry_after
            .map(|seconds| format!("retry-after: {seconds}\r\n"))
            .unwrap_or_default();
        let connection = if request.close { "close" } else { "keep-alive" };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: {connection}\r\n\
             {retry_after}\r\nok"
        );
        if conn.write_all(response.as_bytes()).await.is_err() || request.close {
            return;
        }
    }
}

/// The status (and `Retry-After` seconds) for the next try of
/// `webhook_id`, waiting while the policy is [`Policy::Stall`].
async fn decide(shared: &Shared, webhook_id: &str) -> (u16, Option<u32>) {
    let mut policy = shared.policy.subscribe();
    loop {
        let current = policy.borrow_and_update().clone();
        match current {
            Policy::Healthy => return (200, None),
            Policy::Down(status) => return (status, None),
            Policy::FailFirst {
                failures,
                retry_after,
            } => {
                let earlier = shared
                    .tries
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .get(webhook_id)
                    .map_or(0, Vec::len);
                return if earlier < failures {
                    (503, retry_after)
                } else {
                    (200, None)
                };
            }
            Policy::Stall => {
                if policy.changed().await.is_err() {
                    return (503, None);
                }
            }
        }
    }
}

/// What the receiver needs of one request.
struct Request {
    webhook_id: String,
    attempt: Option<u32>,
    body: Vec<u8>,
    /// The client sent `connection: close`.
    close: bool,
}

/// Reads the next request from `conn`; `buffer` keeps bytes read past it
/// for the next call. `None` at the end of the connection.
async fn read_request(conn: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    let mut chunk = [0u8; 16 << 10];
    let head_end = loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = conn.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let headers: Vec<(String, String)> = head
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let length = header("content-length")
        .and_then(|value| value.parse::<usize>().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while buffer.len() < body_start + length {
        let n = conn.read(&mut chunk).await.ok().filter(|&n| n > 0)?;
        buffer.extend_from_slice(&chunk[..n]);
    }
    let request = Request {
        webhook_id: header("webhook-id").unwrap_or_default().to_owned(),
        attempt: header("webhook-attempt").and_then(|value| value.parse().ok()),
        body: buffer[body_start..body_start + length].to_vec(),
        close: header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")),
    };
    buffer.drain(..body_start + length);
    Some(request)
}
