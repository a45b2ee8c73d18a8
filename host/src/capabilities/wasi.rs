//! The WASI 0.2 environment a plugin sees: empty by design. No files, no
//! environment variables, no arguments, no sockets, and clocks frozen at the
//! Unix epoch unless the plugin is granted `wall_clock`, so a plugin learns
//! nothing about the host it was not given. Standard output and error become
//! host log lines through [`PluginOutput`] (masked, cut, escaped and under
//! the plugin's output limit); the bytes of a line still being collected
//! count against the instance's memory cap, however many streams it opens.

use std::time::Duration;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx};

use crate::bindings::LogLevel;
use crate::capabilities::log::{PluginOutput, MAX_LINE_BYTES};
use crate::capabilities::Grants;
use crate::state::{HostCharge, MemoryBudget};

/// Most bytes one `get-random-bytes` call may ask for. A hook needs a few
/// dozen (an id, a nonce); wasmtime's default, 64 MiB, would let any hook
/// make the host allocate that much outside its memory cap on every call.
pub const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// A WASI context that grants nothing but, with `wall_clock`, the time.
pub(crate) fn sandboxed_ctx(
    output: &PluginOutput,
    grants: &Grants,
    memory: &MemoryBudget,
) -> WasiCtx {
    let stream = |name| LogOutput {
        output: output.clone(),
        memory: memory.clone(),
        stream: name,
    };
    let mut builder = WasiCtx::builder();
    builder
        .stdout(stream("stdout"))
        .stderr(stream("stderr"))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .max_random_size(MAX_RANDOM_BYTES);
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

/// A plugin's stdout or stderr: every stream the guest opens on it collects
/// lines for the host log.
#[derive(Clone)]
struct LogOutput {
    output: PluginOutput,
    memory: MemoryBudget,
    stream: &'static str,
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
        Box::new(LineCollector {
            charge: None,
            output: self.clone(),
            pending: Vec::new(),
        })
    }
}

/// Collects bytes until a newline, then logs the line; a line longer than
/// [`MAX_LINE_BYTES`] is logged in pieces. What it holds (its buffer's
/// capacity, at most about twice that) is charged to the instance's memory
/// budget, and one write may carry at most what `check-write` allows, as
/// WASI requires.
struct LineCollector {
    output: LogOutput,
    pending: Vec<u8>,
    /// The buffer's capacity, counted against the memory cap.
    charge: Option<HostCharge>,
}

impl LineCollector {
    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        let stream = Some(self.output.stream);
        self.output.output.line(LogLevel::Info, stream, line);
    }

    /// Makes the charge equal to `bytes`, before the buffer grows to it or
    /// after it shrank.
    fn charge_to(&mut self, bytes: usize) -> StreamResult<()> {
        let what = "pending output";
        let result = match &mut self.charge {
            Some(charge) => charge.resize(bytes, what),
            None => self
                .output
                .memory
                .charge(bytes, what)
                .map(|charge| self.charge = Some(charge)),
        };
        result.map_err(|err| StreamError::Trap(wasmtime::Error::new(err)))
    }

    /// Where to cut a pending line that is too long: short of any secret
    /// that straddles the cut, and of the last bytes, which may be the start
    /// of a secret whose rest has not been written yet; on a character
    /// boundary.
    fn cut_point(&self) -> usize {
        let settings = self.output.output.settings();
        let hold_back = settings.longest_secret().saturating_sub(1);
        let mut cut = self.pending.len().saturating_sub(hold_back);
        // Moving the cut before one secret may put it inside another.
        let mut moved = true;
        while moved {
            moved = false;
            for secret in settings.secrets().map(str::as_bytes) {
                let from = cut.saturating_sub(secret.len() - 1);
                let to = (cut + secret.len() - 1).min(self.pending.len());
                let window = &self.pending[from..to];
                if let Some(at) = window.windows(secret.len()).position(|w| w == secret) {
                    if from + at < cut {
                        cut = from + at;
                        moved = true;
                    }
                }
            }
        }
        while cut > 0 && cut < self.pending.len() && (self.pending[cut] & 0xc0) == 0x80 {
            cut -= 1;
        }
        cut.max(1)
    }
}

impl OutputStream for LineCollector {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.len() > MAX_LINE_BYTES {
            return Err(StreamError::trap(&format!(
                "a write of {} bytes is more than check-write allows ({MAX_LINE_BYTES})",
                bytes.len()
            )));
        }
        let needed = self.pending.len() + bytes.len();
        if needed > self.pending.capacity() {
            self.charge_to(needed)?;
            self.pending.reserve_exact(bytes.len());
        }
        self.pending.extend_from_slice(&bytes);
        // Every finished line, then one move of what is left: a write full
        // of newlines costs its length, not its length squared.
        let mut start = 0;
        while let Some(end) = self.pending[start..].iter().position(|&b| b == b'\n') {
            self.emit(&self.pending[start..=start + end]);
            start += end + 1;
        }
        self.pending.drain(..start);
        let hold_back = self.output.output.settings().longest_secret();
        while self.pending.len() >= MAX_LINE_BYTES + hold_back {
            let cut = self.cut_point();
            self.emit(&self.pending[..cut]);
            self.pending.drain(..cut);
        }
        if self.pending.capacity() > 2 * MAX_LINE_BYTES + hold_back {
            self.pending.shrink_to(self.pending.len());
        }
        self.charge_to(self.pending.capacity())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE_BYTES)
    }
}

#[async_trait::async_trait]
impl Pollable for LineCollector {
    async fn ready(&mut self) {}
}

impl Drop for LineCollector {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            self.emit(&self.pending);
        }
    }
}
