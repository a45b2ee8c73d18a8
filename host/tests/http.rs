//! The HTTP capability against a real HTTP server on 127.0.0.1: allowed
//! requests go through; hosts, private addresses and redirects outside the
//! grant are denied with the config line that would allow them; requests
//! are bounded by the plugin's deadline and bodies by their cap; the
//! plugin's headers arrive, its credentials only at their own origin; a
//! connection the server drops is a connection failure; an idle connection
//! is reused by the next event and closed after a few idle seconds.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hookhost::{Event, Host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A small HTTP/1.1 server with a few fixed routes; stops with the runtime.
/// `/hangup` reads the request and closes the connection without an
/// answer.
async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let respond = |status: &str, extra: &str, body: &[u8]| {
                    let mut out = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
                        body.len()
                    )
                    .into_bytes();
                    out.extend_from_slice(body);
                    out
                };
                let response = match path.as_str() {
                    "/hangup" => return,
                    "/ok" => respond("200 OK", "", b"hello"),
                    "/redirect-in" => respond("302 Found", "location: /ok\r\n", b""),
                    "/redirect-out" => {
                        respond("302 Found", "location: http://example.com/\r\n", b"")
                    }
                    p if p.starts_with("/redirect-to-port/") => {
                        let port = &p["/redirect-to-port/".len()..];
                        let location = format!("location: http://127.0.0.1:{port}/ok\r\n");
                        respond("302 Found", &location, b"")
                    }
                    "/slow" => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        respond("200 OK", "", b"late")
                    }
                    "/big" => respond("200 OK", "", &vec![b'x'; 2 << 20]),
                    _ => respond("404 Not Found", "", b""),
                };
                let _ = conn.write_all(&response).await;
            });
        }
    });
    addr
}

async fn host(config: &str) -> Host {
    let dir = common::plugins_dir(&["http-client"]);
    let host = Host::builder()
        .plugins_dir(dir.path())
        .config(common::config(config))
        .build()
        .await
        .unwrap();
    assert!(host.load_errors().is_empty(), "{:?}", host.load_errors());
    host
}

/// Has the `http-client` plugin fetch `url`; returns its error message, or
/// "ok".
async fn fetch(host: &Host, url: &str) -> String {
    let event = Event::from_json(&format!(
        r#"{{"event_type": "Fetch", "metadata": {{"url":"{url}"}}}}"#
    ))
    .unwrap();
    let report = host.emit_with_report(event).unwrap().wait().await;
    match &report.outcomes[0].1.result {
        Ok(()) => "ok".to_owned(),
        Err(failure) => failure.message.clone(),
    }
}

fn granted(addr: SocketAddr) -> String {
    format!(
        "[plugins.http-client]\ntimeout_ms = 1000\nhttp_allow = [\"http://{addr}\"]\nhttp_private = [\"127.0.0.1\"]\n"
    )
}

#[tokio::test]
async fn an_allowed_destination_is_reached() {
    let addr = server().await;
    let host = host(&granted(addr)).await;
    assert_eq!(fetch(&host, &format!("http://{addr}/ok")).await, "ok");
    assert_eq!(
        fetch(&host, &format!("http://{addr}/nothing")).await,
        "status 404"
    );
    assert_eq!(
        fetch(&host, &format!("http://{addr}/redirect-in")).await,
        "ok"
    );
}

#[tokio::test]
async fn no_grant_means_no_network() {
    let addr = server().await;
    let host = host("").await;
    let message = fetch(&host, &format!("http://{addr}/ok")).await;
    assert!(message.starts_with("denied: "), "{message}");
    assert!(
        message.contains(&format!(
            "add \"http://{addr}\" to http_allow in [plugins.http-client]"
        )),
        "{message}"
    );
    let summaries = host.shutdown().await;
    assert_eq!(summaries[0].http_denied, 1, "the denial is counted");
}

#[tokio::test]
async fn another_host_is_denied() {
    let addr = server().await;
    let host = host(&granted(addr)).await;
    let message = fetch(&host, &format!("http://127.0.0.2:{}/ok", addr.port())).await;
    assert!(message.starts_with("denied: http://127.0.0.2"), "{message}");
}

#[tokio::test]
async fn a_private_address_needs_its_own_listing() {
    let addr = server().await;
    let config = format!("[plugins.http-client]\nhttp_allow = [\"http://{addr}\"]\n");
    let host = host(&config).await;
    let message = fetch(&host, &format!("http://{addr}/ok")).await;
    assert!(
        message.contains("non-public address (127.0.0.1)"),
        "{message}"
    );
    assert!(message.contains("to http_private"), "{message}");
}

#[tokio::test]
async fn an_allowed_name_that_resolves_to_loopback_is_denied() {
    let addr = server().await;
    let port = addr.port();
    let config = format!("[plugins.http-client]\nhttp_allow = [\"http://localhost:{port}\"]\n");
    let host = host(&config).await;
    let message = fetch(&host, &format!("http://localhost:{port}/ok")).await;
    assert!(
        message.starts_with("denied: localhost is a non-public address"),
        "{message}"
    );
}

#[tokio::test]
async fn a_redirect_outside_the_grant_is_denied() {
    let addr = server().await;
    let host = host(&granted(addr)).await;
    let message = fetch(&host, &format!("http://{addr}/redirect-out")).await;
    assert!(
        message.starts_with("denied: http://example.com/ is not allowed"),
        "{message}"
    );
}

#[tokio::test]
async fn a_slow_server_is_cut_off_at_the_plugins_deadline() {
    let addr = server().await;
    let host = host(&granted(addr)).await;
    let started = Instant::now();
    let message = fetch(&host, &format!("http://{addr}/slow")).await;
    assert!(
        message == "timeout" || message.contains("timed out"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_oversized_response_is_refused() {
    let addr = server().await;
    let host = host(&granted(addr)).await;
    let message = fetch(&host, &format!("http://{addr}/big")).await;
    assert!(message.starts_with("too large: "), "{message}");
}

#[tokio::test]
async fn the_plugins_own_headers_reach_the_server_with_the_hosts_host_header() {
    let (addr, mut received) = common::receiver::start().await;
    let host = host(&granted(addr)).await;
    let event = serde_json::json!({"event_type": "Fetch", "metadata": {
        "url": format!("http://{addr}/ok"),
        "headers": [["Authorization", "Bearer t0ken"], ["X-Custom", "1"]]}});
    let report = host
        .emit_with_report(Event::from_json(&event.to_string()).unwrap())
        .unwrap()
        .wait()
        .await;
    assert!(report.outcomes[0].1.result.is_ok(), "{report:?}");
    let request = received.recv().await.unwrap();
    assert_eq!(request.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(request.header("x-custom"), Some("1"));
    assert_eq!(request.header("host"), Some(addr.to_string().as_str()));
}

#[tokio::test]
async fn credentials_follow_a_redirect_only_within_their_origin() {
    let addr = server().await;
    let (other, mut received) = common::receiver::start().await;
    let config = format!(
        "[plugins.http-client]\ntimeout_ms = 1000\nhttp_allow = [\"http://{addr}\", \"http://{other}\"]\n\
         http_private = [\"127.0.0.1\"]\n"
    );
    let host = host(&config).await;
    let headers = serde_json::json!([
        ["Authorization", "Bearer t0ken"],
        ["Cookie", "s=1"],
        ["X-Custom", "1"]
    ]);
    for url in [
        format!("http://{addr}/redirect-to-port/{}", other.port()),
        format!("http://{other}/redirect/1"),
    ] {
        let event = serde_json::json!({"event_type": "Fetch",
            "metadata": {"url": url, "headers": headers}});
        let report = host
            .emit_with_report(Event::from_json(&event.to_string()).unwrap())
            .unwrap()
            .wait()
            .await;
        assert!(report.outcomes[0].1.result.is_ok(), "{report:?}");
    }
    // From the other origin: the redirect target gets no credentials.
    let moved = received.recv().await.unwrap();
    assert_eq!(moved.path, "/ok");
    assert_eq!(
        (moved.header("authorization"), moved.header("cookie")),
        (None, None)
    );
    assert_eq!(moved.header("x-custom"), Some("1"));
    // Within one origin: both requests carry them.
    for path in ["/redirect/1", "/redirect/0"] {
        let request = received.recv().await.unwrap();
        assert_eq!(request.path, path);
        assert_eq!(request.header("authorization"), Some("Bearer t0ken"));
        assert_eq!(request.header("cookie"), Some("s=1"));
    }
}

#[tokio::test]
async fn a_connection_closed_after_the_request_is_a_connection_failure() {
    let addr = server().await;
    let host = host(&granted(addr)).await;
    let message = fetch(&host, &format!("http://{addr}/hangup")).await;
    // Not `invalid request`, which the SDK takes as permanent: the request
    // was fine, the connection broke.
    assert!(message.starts_with("connection failed: "), "{message}");
}

/// What the keep-alive server saw on its connections, numbered in the
/// order they were accepted.
#[derive(Debug, PartialEq)]
enum Seen {
    Request(usize),
    Closed(usize),
}

/// An HTTP/1.1 server that answers every request `200 ok` and keeps the
/// connection open for the next one, reporting each request and each
/// connection the client closes.
async fn keep_alive_server() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sender, seen) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut next = 0;
        while let Ok((mut conn, _)) = listener.accept().await {
            let (id, sender) = (next, sender.clone());
            next += 1;
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            let _ = sender.send(Seen::Closed(id));
                            return;
                        }
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                    if request.windows(4).any(|w| w == b"\r\n\r\n") {
                        request.clear();
                        let _ = sender.send(Seen::Request(id));
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        let _ = conn.write_all(answer).await;
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn an_idle_connection_is_reused_then_closed_within_seconds() {
    let (addr, mut seen) = keep_alive_server().await;
    let host = host(&granted(addr)).await;
    for _ in 0..2 {
        assert_eq!(fetch(&host, &format!("http://{addr}/ok")).await, "ok");
    }
    assert_eq!(seen.recv().await, Some(Seen::Request(0)));
    assert_eq!(seen.recv().await, Some(Seen::Request(0)), "one connection");
    // reqwest's default keeps it for 90 seconds; the host's client closes
    // it after 5 idle seconds (checked every 5 seconds), with the host
    // still running.
    let idle = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(15), seen.recv()).await;
    assert_eq!(
        closed.ok().flatten(),
        Some(Seen::Closed(0)),
        "after {:?}",
        idle.elapsed()
    );
    host.shutdown().await;
}
