//! The listening socket and the server loop. hookhost listens on loopback
//! unless told otherwise: an address that is, or resolves to, anything else
//! is refused unless the caller allows it (`--listen-any`, `[server]
//! listen_any = true`), so a typo or a copied `0.0.0.0` never opens the
//! ingest to the network by accident.

use std::future::Future;
use std::net::SocketAddr;

use axum::serve::ListenerExt;
use axum::Router;
use tokio::net::TcpListener;

/// Why the server could not listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The address is not `host:port`, or its host does not resolve.
    #[error(
        "{origin} {address:?} is not an address to listen on ({reason}); give host:port, such \
         as 127.0.0.1:8787"
    )]
    Resolve {
        /// Where the address was given (`--listen`, `[server] listen in FILE`).
        origin: String,
        /// The address as given.
        address: String,
        /// Why it does not resolve.
        reason: String,
    },
    /// The address is not loopback, and that was not allowed.
    #[error(
        "{origin} {address} is not a loopback address ({ip}): hookhost listens on loopback only \
         unless told otherwise; to take events from other machines pass --listen-any (or set \
         [server] listen_any = true), and set [server] token so that only callers with the \
         token can post events"
    )]
    NotLoopback {
        /// Where the address was given.
        origin: String,
        /// The address as given.
        address: String,
        /// The first non-loopback address it stands for.
        ip: std::net::IpAddr,
    },
    /// The socket could not be bound (the port is taken, no permission).
    #[error("cannot listen on {address} ({origin}): {source}")]
    Bind {
        /// Where the address was given.
        origin: String,
        /// The address as given.
        address: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Binds `address` (`host:port`; port 0 picks a free port), given in
/// `origin`. Every address it resolves to must be loopback unless `any`.
pub async fn bind(address: &str, origin: &str, any: bool) -> Result<TcpListener, ListenError> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|err| ListenError::Resolve {
            origin: origin.to_owned(),
            address: address.to_owned(),
            reason: err.to_string(),
        })?
        .collect();
    if resolved.is_empty() {
        return Err(ListenError::Resolve {
            origin: origin.to_owned(),
            address: address.to_owned(),
            reason: "it resolves to no address".to_owned(),
        });
    }
    if !any {
        if let Some(outside) = resolved.iter().find(|addr| !addr.ip().is_loopback()) {
            return Err(ListenError::NotLoopback {
                origin: origin.to_owned(),
                address: address.to_owned(),
                ip: outside.ip(),
            });
        }
    }
    TcpListener::bind(&resolved[..])
        .await
        .map_err(|source| ListenError::Bind {
            origin: origin.to_owned(),
            address: address.to_owned(),
            source,
        })
}

/// Serves `router` on `listener` until `stop` completes, then stops
/// taking connections and returns once every request in progress has been
/// answered (axum's graceful shutdown).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Answers are small and written once: without Nagle's algorithm a
    // client waiting for one is not held up by a delayed ACK.
    let listener = listener.tap_io(|stream| {
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY on an accepted connection: {err}");
        }
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_binds_and_other_addresses_need_to_be_allowed() {
        let listener = bind("127.0.0.1:0", "--listen", false).await.unwrap();
        assert!(listener.local_addr().unwrap().ip().is_loopback());
        let err = bind("0.0.0.0:0", "--listen", false).await.unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("--listen 0.0.0.0:0 is not a loopback address"),
            "{text}"
        );
        assert!(text.contains("--listen-any"), "{text}");
        assert!(bind("0.0.0.0:0", "--listen", true).await.is_ok());
        let err = bind("nowhere", "--listen", false).await.unwrap_err();
        assert!(matches!(err, ListenError::Resolve { .. }), "{err}");
    }
}
