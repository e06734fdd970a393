//! The WASI subset granted to plugins: what a Rust, Python or JavaScript
//! component needs to start and print, and nothing that reaches outside.
//!
//! Linked: `wasi:cli` (no arguments, no environment, closed stdin, output
//! discarded), `wasi:io`, `wasi:random`, and `wasi:clocks` where the wall
//! clock is frozen at the runtime clock's step-start time (`wasi:http`
//! for steps is `http.rs`). Not linked: `wasi:filesystem` and
//! `wasi:sockets`, so a plugin importing them is refused when pushed
//! instead of failing at run time.

use std::time::Duration;

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::StepState;

/// WASI context and resource table of one step.
pub struct WasiState {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiState {
    pub fn new(now_ms: u64) -> Self {
        let ctx = WasiCtx::builder()
            .wall_clock(FrozenWallClock(Duration::from_millis(now_ms)))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        WasiState {
            ctx,
            table: ResourceTable::new(),
        }
    }
}

/// The runtime clock's reading at step start, for `wasi:clocks/wall-clock`.
struct FrozenWallClock(Duration);

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

impl WasiState {
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

impl WasiView for StepState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.view()
    }
}

/// Host data for `wasi:io`: only the resource table.
struct HasTable;

impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// Link the WASI subset into a linker for any store data with a WASI
/// context (steps and channels alike).
pub fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    use wasmtime_wasi::p2::bindings::{cli, clocks, random, sync};

    let l = linker;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<_, HasTable>(l, |state| {
        state.ctx().table
    })?;
    sync::io::poll::add_to_linker::<_, HasTable>(l, |state| state.ctx().table)?;
    sync::io::streams::add_to_linker::<_, HasTable>(l, |state| state.ctx().table)?;
    clocks::wall_clock::add_to_linker::<_, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(l, T::clocks)?;
    random::random::add_to_linker::<_, WasiRandom>(l, |state| state.ctx().ctx.random())?;
    random::insecure::add_to_linker::<_, WasiRandom>(l, |state| state.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<_, WasiRandom>(l, |state| state.ctx().ctx.random())?;
    cli::exit::add_to_linker::<_, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<_, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<_, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<_, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<_, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<_, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<_, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, T::cli)?;
    Ok(())
}
