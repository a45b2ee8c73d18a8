//! Loopback servers for the tests of hooks that reach the network.
//!
//! - [`start`]: a webhook receiver on 127.0.0.1 that records every request
//!   and answers `/status/<code>` with that code, `/redirect/<n>` with a
//!   302 to `/redirect/<n-1>` (`/redirect/0` with 200), `/bytes/<n>` with
//!   a 200 and `n` bytes of body, anything else with 200.
//! - [`canary`]: a listener that only counts the connections made to it.
//! - [`smtp`]: a minimal SMTP server that accepts every message.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One request as received.
#[derive(Debug)]
pub struct Received {
    pub path: String,
    /// Header names lowercased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    /// The value of header `name` (lowercase), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Starts a receiver; every request arrives on the returned channel.
pub async fn start() -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sender, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut conn).await else {
                    return;
                };
                let response = answer(&request.path);
                let _ = sender.send(request);
                let _ = conn.write_all(&response).await;
            });
        }
    });
    (addr, received)
}

/// The response to a request for `path`.
fn answer(path: &str) -> Vec<u8> {
    let number = |prefix: &str| path.strip_prefix(prefix)?.parse::<usize>().ok();
    let (status, extra, body) = if let Some(status) = path.strip_prefix("/status/") {
        (status.to_owned(), String::new(), b"ok".to_vec())
    } else if let Some(n) = number("/redirect/").filter(|&n| n > 0) {
        let location = format!("location: /redirect/{}\r\n", n - 1);
        ("302".to_owned(), location, Vec::new())
    } else if let Some(n) = number("/bytes/") {
        ("200".to_owned(), String::new(), vec![b'x'; n])
    } else {
        ("200".to_owned(), String::new(), b"ok".to_vec())
    };
    let mut response = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    response.extend(body);
    response
}

/// Starts a listener on 127.0.0.1 that accepts connections, counts them and
/// closes them at once.
pub async fn canary() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    (addr, connections)
}

/// One message as the SMTP server received it.
#[derive(Debug, Default)]
pub struct Mail {
    pub from: String,
    pub recipients: Vec<String>,
    /// Headers and body, CRLFs turned into LFs.
    pub data: String,
}

/// Starts a minimal SMTP server on 127.0.0.1; every message it accepts
/// arrives on the returned channel.
pub async fn smtp() -> (SocketAddr, mpsc::UnboundedReceiver<Mail>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sender, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let sender = sender.clone();
            tokio::spawn(async move {
                let (read, mut write) = conn.into_split();
                let mut lines = BufReader::new(read).lines();
                let mut mail = Mail::default();
                let _ = write.write_all(b"220 localhost ESMTP test\r\n").await;
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 localhost\r\n"
                    } else if let Some(from) = upper.strip_prefix("MAIL FROM:") {
                        mail.from = line[line.len() - from.len()..].trim().to_owned();
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        mail.recipients.push(line[8..].trim().to_owned());
                        b"250 OK\r\n"
                    } else if upper == "DATA" {
                        let _ = write.write_all(b"354 go ahead\r\n").await;
                        while let Ok(Some(data)) = lines.next_line().await {
                            if data == "." {
                                break;
                            }
                            mail.data.push_str(&data);
                            mail.data.push('\n');
                        }
                        let _ = sender.send(std::mem::take(&mut mail));
                        b"250 OK queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        b"250 OK\r\n"
                    };
                    let _ = write.write_all(reply).await;
                }
            });
        }
    });
    (addr, received)
}

async fn read_request(conn: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut buf).await.ok().filter(|&n| n > 0)?;
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split_whitespace().nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok())
        .unwrap_or(0);
    let body_start = head_end + 4;
    while data.len() < body_start + length {
        let n = conn.read(&mut buf).await.ok().filter(|&n| n > 0)?;
        data.extend_from_slice(&buf[..n]);
    }
    Some(Received {
        path,
        headers,
        body: data[body_start..body_start + length].to_vec(),
    })
}
