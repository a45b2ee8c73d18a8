//! `hookhost run --listen`: the HTTP ingest's part in a run. The server
//! starts once the host is built and stops before the host drains: first
//! no new events (`POST`s and `/readyz` answer `503`), then no new
//! connections, then the requests in progress are answered. The events
//! they were answered `202` for are the host's, drained like the others.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use hookhost::sources::{self, listen, Ingest, IngestSettings, IngestStats, WAIT_FOR_ROOM};
use hookhost::{Config, Host};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a stop waits for the requests in progress to be answered: the
/// longest a request waits for queue room, and time to write its answer.
/// A connection still open then (a client that never finishes sending its
/// request) is not waited for.
const STOP_PATIENCE: Duration = WAIT_FOR_ROOM.saturating_add(Duration::from_secs(5));

/// How often the host is checked for requests still holding it.
const UNSHARE_POLL: Duration = Duration::from_millis(10);

/// Whether and where `run` takes events over HTTP.
#[derive(Args)]
pub struct ServeArgs {
    /// Also take events over HTTP on ADDR (host:port, e.g. 127.0.0.1:8787;
    /// port 0 picks a free port): POST /events, POST /ingest/dbt-cloud, GET
    /// /healthz, GET /readyz, GET /metrics, GET /plugins. Overrides [server] listen. The run then ends
    /// at SIGTERM or Ctrl-C, not at the end of stdin, and stdin is read
    /// only when it is not a terminal.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Allow a listen address that is not loopback, as [server] listen_any
    /// = true does.
    #[arg(long)]
    pub listen_any: bool,
}

impl ServeArgs {
    /// The address to listen on and where it was given, when `--listen` or
    /// `[server] listen` gives one.
    fn address(&self, config: &Config, config_path: Option<&Path>) -> Option<(String, String)> {
        if let Some(address) = &self.listen {
            return Some((address.clone(), "--listen".to_owned()));
        }
        let address = config.server.listen.clone()?;
        let file = config_path.map_or_else(|| "the config".to_owned(), hookhost::printable::path);
        Some((address, format!("[server] listen in {file}")))
    }
}

/// The listening socket, bound before the host is built so that a wrong
/// address fails at once, not after the plugins compiled.
pub struct Bound {
    listener: tokio::net::TcpListener,
    local: std::net::SocketAddr,
    settings: IngestSettings,
}

impl ServeArgs {
    /// Binds the address `--listen` or `[server] listen` gives, if any.
    pub async fn bind(
        &self,
        config: &Config,
        config_path: Option<&Path>,
    ) -> anyhow::Result<Option<Bound>> {
        let Some((address, origin)) = self.address(config, config_path) else {
            return Ok(None);
        };
        let any = self.listen_any || config.server.listen_any();
        let listener = listen::bind(&address, &origin, any).await?;
        let local = listener
            .local_addr()
            .context("cannot read the listening socket's address")?;
        if !local.ip().is_loopback() && config.server.token().is_none() {
            eprintln!(
                "warning: listening on {local}, which is not loopback, without [server] token: \
                 anyone who can reach it can post events"
            );
        }
        Ok(Some(Bound {
            listener,
            local,
            settings: IngestSettings::from_config(&config.server),
        }))
    }
}

impl Bound {
    /// Starts serving `host`, and says where on stderr (`listening on
    /// http://127.0.0.1:8787`).
    pub fn start(self, host: &Arc<Host>) -> Server {
        let ingest = Ingest::new(host, self.settings);
        let observed = hookhost::observe::router(host, Some(ingest.stats().clone()));
        let router = sources::router(&ingest)
            .merge(observed)
            .layer(axum::middleware::from_fn(
                hookhost::observe::traces::propagate,
            ));
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let task = tokio::spawn(listen::serve(self.listener, router, stopped));
        eprintln!("listening on http://{}", self.local);
        Server {
            ingest,
            stop: Some(stop),
            task,
        }
    }
}

/// The running server.
pub struct Server {
    ingest: Arc<Ingest>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// What the endpoints accepted and refused.
    pub fn stats(&self) -> &Arc<IngestStats> {
        self.ingest.stats()
    }

    /// Stops taking events and connections; returns once the requests in
    /// progress are answered, or after [`STOP_PATIENCE`].
    pub async fn stop(mut self) {
        self.ingest.stop_accepting();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(STOP_PATIENCE, &mut self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::error!("the HTTP server stopped with an error: {err}"),
            Ok(Err(err)) => tracing::error!("the HTTP server failed: {err}"),
            Err(_) => tracing::warn!(
                "connections still open {} s after the stop; not waiting for them",
                STOP_PATIENCE.as_secs()
            ),
        }
    }
}

/// The host itself, once no request holds it any longer (a request holds
/// it only while it hands over its events), for the shutdown that takes
/// it. Gives up after [`STOP_PATIENCE`].
pub async fn unshared(mut host: Arc<Host>) -> anyhow::Result<Host> {
    let deadline = Instant::now() + STOP_PATIENCE;
    loop {
        match Arc::try_unwrap(host) {
            Ok(host) => return Ok(host),
            Err(shared) if Instant::now() < deadline => {
                host = shared;
                tokio::time::sleep(UNSHARE_POLL).await;
            }
            Err(_) => anyhow::bail!(
                "HTTP requests still hold the host {} s after the server stopped; the events \
                 accepted are in the write-ahead log for the next start (with a data directory)",
                STOP_PATIENCE.as_secs()
            ),
        }
    }
}
