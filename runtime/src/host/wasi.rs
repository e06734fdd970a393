//! WASI for plugins: every WASI 0.2 interface a Rust, Python or JavaScript
//! toolchain imports, linked in a closed form, so a component from any of
//! them loads and the sandbox stays as closed as it is for Rust.
//!
//! - `wasi:cli`: no arguments, no environment, stdin at end of file,
//!   stdout discarded, the last [`STDERR_TAIL`] bytes of stderr kept for a
//!   trap's reason (where Python and JavaScript print their exceptions),
//!   `exit` traps the call.
//! - `wasi:filesystem`: no preopened directory, so there is nothing to
//!   open: a plugin that tries gets an error (its step fails, not the
//!   runtime).
//! - `wasi:sockets`: every TCP, UDP and name-lookup use refused.
//! - `wasi:clocks`: the wall clock frozen at the runtime clock's reading
//!   when the call started (a simulated clock too); the monotonic clock
//!   real, for measuring only.
//! - `wasi:random`: seeded from the call's idempotency key (a step's key,
//!   a message's id), so a re-run sees the same numbers, like everything
//!   else it is given. Not for secrets: plugins never make those.
//! - `wasi:io`: streams and polling over the above.
//!
//! `wasi:http` outgoing requests are `http.rs` (steps: granted hosts only;
//! channel plugins: none).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest as _;
use wasi_rand::SeedableRng as _;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::StepState;

/// How much of a plugin's stderr is kept: its last bytes.
pub const STDERR_TAIL: usize = 2048;

/// WASI context and resource table of one call.
pub struct WasiState {
    ctx: WasiCtx,
    table: ResourceTable,
    stderr: StderrTail,
}

impl WasiState {
    /// A closed context whose wall clock reads `now_ms` and whose random
    /// numbers are derived from `seed`.
    pub fn new(now_ms: u64, seed: &str) -> Self {
        let seed: [u8; 32] = sha2::Sha256::digest(seed.as_bytes()).into();
        let mut insecure_seed = [0u8; 16];
        insecure_seed.copy_from_slice(&seed[..16]);
        let mut insecure = seed;
        insecure[0] ^= 0xff;
        let stderr = StderrTail::default();
        let ctx = WasiCtx::builder()
            .stderr(stderr.clone())
            .wall_clock(FrozenWallClock(Duration::from_millis(now_ms)))
            .secure_random(wasi_rand::rngs::StdRng::from_seed(seed))
            .insecure_random(wasi_rand::rngs::StdRng::from_seed(insecure))
            .insecure_random_seed(u128::from_le_bytes(insecure_seed))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        WasiState {
            ctx,
            table: ResourceTable::new(),
            stderr,
        }
    }

    /// The end of what the plugin wrote to stderr (lossy UTF-8), trimmed.
    pub fn stderr(&self) -> String {
        let mut tail = self
            .stderr
            .0
            .lock()
            .expect("the stderr lock is never poisoned");
        String::from_utf8_lossy(tail.make_contiguous())
            .trim()
            .to_owned()
    }

    /// The resource table (shared with `wasi:http`).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The view WASI's host functions work on.
    pub fn view(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// A stderr that keeps only its last [`STDERR_TAIL`] bytes and never
/// refuses a write, so a chatty plugin is not stopped by it.
#[derive(Clone, Default)]
struct StderrTail(Arc<Mutex<std::collections::VecDeque<u8>>>);

impl StderrTail {
    fn append(&self, bytes: &[u8]) {
        let mut tail = self.0.lock().expect("the stderr lock is never poisoned");
        let keep = &bytes[bytes.len().saturating_sub(STDERR_TAIL)..];
        let overflow = (tail.len() + keep.len()).saturating_sub(STDERR_TAIL);
        let drop = overflow.min(tail.len());
        tail.drain(..drop);
        tail.extend(keep);
    }
}

impl wasmtime_wasi::cli::IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl wasmtime_wasi::p2::Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl wasmtime_wasi::p2::OutputStream for StderrTail {
    fn write(&mut self, bytes: bytes::Bytes) -> wasmtime_wasi::p2::StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> wasmtime_wasi::p2::StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> wasmtime_wasi::p2::StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        bytes: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(bytes);
        std::task::Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// The runtime clock's reading at call start, for `wasi:clocks/wall-clock`.
struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.view()
    }
}

/// Link WASI 0.2 into a linker for any store data with a WASI context
/// (steps and channels alike). What a plugin can reach through it is set
/// by [`WasiState::new`]: nothing outside.
pub fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)
}

/// The WASI interfaces [`add_to_linker`] provides, without versions
/// (`wasi:http` is linked beside them): what a refused plugin's imports
/// are compared with.
pub const PROVIDED: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:random/random",
    "wasi:sockets/instance-network",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];
