//! The WASI 0.2 environment a plugin sees: empty by design. No files, no
//! environment variables, no arguments, no sockets, and clocks frozen at the
//! Unix epoch unless the plugin is granted `wall_clock`, so a plugin learns
//! nothing about the host it was not given. Standard output and error become
//! host log lines tagged with the plugin, its secrets masked.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

use crate::capabilities::Grants;
use crate::settings::Settings;
use crate::state::MemoryBudget;

/// Longest line a plugin can print before it is cut into several log lines.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// A WASI context that grants nothing but, with `wall_clock`, the time.
pub(crate) fn sandboxed_ctx(plugin: &Arc<str>, grants: &Grants, _memory: &MemoryBudget) -> WasiCtx {
    let settings = &grants.settings;
    let mut builder = WasiCtx::builder();
    builder
        .stdout(LogOutput::new(plugin, settings, "stdout"))
        .stderr(LogOutput::new(plugin, settings, "stderr"))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if !grants.wall_clock {
        builder.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
    }
    builder.build()
}

/// A clock that always reads zero.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// A plugin's stdout or stderr, written to the host log line by line.
#[derive(Clone)]
struct LogOutput {
    plugin: Arc<str>,
    settings: Arc<Settings>,
    stream: &'static str,
}

impl LogOutput {
    fn new(plugin: &Arc<str>, settings: &Arc<Settings>, stream: &'static str) -> Self {
        LogOutput {
            plugin: plugin.clone(),
            settings: settings.clone(),
            stream,
        }
    }
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        // Only WASI 0.3 guests use this; 0.2 guests get `p2_stream`.
        Box::new(tokio::io::sink())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineLogger {
            output: self.clone(),
            pending: Vec::new(),
        })
    }
}

/// Collects bytes until a newline, then logs the line.
struct LineLogger {
    output: LogOutput,
    pending: Vec<u8>,
}

impl LineLogger {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = self
            .output
            .settings
            .redact(line.trim_end_matches(['\r', '\n']));
        tracing::info!(
            target: "hookhost::plugin",
            plugin = &*self.output.plugin,
            stream = self.output.stream,
            "{line}"
        );
    }
}

impl OutputStream for LineLogger {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.pending.extend_from_slice(&bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.emit(&line);
        }
        if self.pending.len() >= MAX_LINE_BYTES {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE_BYTES)
    }
}

#[async_trait::async_trait]
impl Pollable for LineLogger {
    async fn ready(&mut self) {}
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit(&self.pending);
        }
    }
}
