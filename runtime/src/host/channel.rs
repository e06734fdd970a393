//! Channel plugins: components that export `journey:plugin/channel` and
//! turn a queued message into a provider request, read the provider's
//! answer and parse its status callbacks.
//!
//! Each call runs in a fresh store with the step's memory limit and
//! deadline, the same closed WASI and `log` only: a channel plugin has no
//! customer view, no outbox and no clock, so it is a pure function of its
//! input and safe to call again on every retry. `wasi:http` is linked (a
//! JavaScript build imports it) but refuses every request, and a call that
//! tried one fails. This module does not send anything; the dispatcher
//! does. At most [`super::Limits::concurrent_channel_calls`] calls run at
//! once, so the dispatcher's many deliveries in flight never exhaust the
//! instance pool the steps use.

use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::Linker;
use wasmtime_wasi::{WasiCtxView, WasiView};

use super::{Host, Limits, LoadedPlugin, MemoryLimiter, Plugin, StepFailure, http, log, wasi};

/// Bindings of the `channel-plugin` world; the shared interfaces are the
/// step world's.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "channel-plugin",
        with: {
            "journey:plugin/types@0.2.0": crate::host::bindings::journey::plugin::types,
            "journey:plugin/log@0.2.0": crate::host::bindings::journey::plugin::log,
        },
    });
}

pub use bindings::exports::journey::plugin::channel::{
    Callback, DeliveryStatus, Header, OutgoingMessage, ProviderRequest, ProviderResponse,
    RenderError, RetryLater, Signature, StatusUpdate, Verdict,
};

/// Why a render gave no request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderFailure {
    /// The plugin refused this message for good.
    Rejected(String),
    /// The plugin says it is misconfigured, or it failed (trapped, ran too
    /// long): worth retrying.
    Failed(StepFailure),
}

impl std::fmt::Display for RenderFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderFailure::Rejected(reason) => write!(f, "refused: {reason}"),
            RenderFailure::Failed(failure) => failure.fmt(f),
        }
    }
}

/// Store data of one channel call.
pub struct ChannelState {
    wasi: wasi::WasiState,
    log: log::LogCapability,
    /// Refuses every request.
    http: http::HttpCapability,
    memory: MemoryLimiter,
}

impl WasiView for ChannelState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.wasi.view()
    }
}

impl wasmtime_wasi_http::WasiHttpView for ChannelState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http.ctx,
            table: self.wasi.table(),
            hooks: &mut self.http.hooks,
        }
    }
}

/// The linker of channel plugins: closed WASI, `wasi:http` that refuses,
/// and `log`.
pub(super) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<ChannelState>> {
    let mut linker = Linker::new(engine);
    wasi::add_to_linker(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
    bindings::journey::plugin::log::add_to_linker::<_, wasmtime::component::HasSelf<_>>(
        &mut linker,
        |state: &mut ChannelState| &mut state.log,
    )?;
    Ok(linker)
}

/// A fixed number of permits, taken by blocking: bounds the channel calls
/// running at once.
pub(super) struct Slots {
    give: crossbeam_channel::Sender<()>,
    take: crossbeam_channel::Receiver<()>,
}

/// A taken slot, given back when dropped.
pub(super) struct Slot<'a>(&'a Slots);

impl Slots {
    pub(super) fn new(count: u32) -> Slots {
        let (give, take) = crossbeam_channel::bounded(count.max(1) as usize);
        for _ in 0..count.max(1) {
            give.send(())
                .expect("the slots channel has room for every slot");
        }
        Slots { give, take }
    }

    /// Wait for a free slot.
    pub(super) fn acquire(&self) -> Slot<'_> {
        self.take
            .recv()
            .expect("the slots channel lives as long as its owner");
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let _ = self.0.give.send(());
    }
}

/// Who a channel call's log lines are attributed to.
#[derive(Debug, Clone)]
pub struct ChannelCall<'a> {
    /// The instance whose message it is (or the integration, for a callback).
    pub subject: &'a str,
    /// The integration, e.g. `email`.
    pub integration: &'a str,
    /// What the call's random numbers are derived from (the message id):
    /// the same on every retry.
    pub key: &'a str,
}

impl Host {
    /// Run one call of a channel plugin in a fresh store.
    fn call_channel<R>(
        &self,
        plugin: &LoadedPlugin,
        call: &ChannelCall<'_>,
        run: impl FnOnce(
            &bindings::exports::journey::plugin::channel::Guest,
            &mut Store<ChannelState>,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, StepFailure> {
        let Plugin::Channel(pre) = &plugin.kind else {
            return Err(StepFailure::Instantiate(
                "a step plugin, not a channel plugin: it does not export `journey:plugin/channel`"
                    .into(),
            ));
        };
        let limits: &Limits = &self.limits;
        let _slot = self.channel_slots.acquire();
        let state = ChannelState {
            wasi: wasi::WasiState::new(0, call.key),
            log: log::LogCapability::attributed(
                call.subject,
                &format!("channel {}", call.integration),
                limits.output.text_bytes,
            ),
            http: http::HttpCapability::new(
                &format!("channel {}", call.integration),
                None,
                call.key,
                self.outbound.clone(),
            ),
            memory: MemoryLimiter {
                limit: limits.memory_bytes,
                exceeded: false,
            },
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        let deadline = limits.deadline;
        store.set_epoch_deadline(self.deadline_ticks(deadline));
        let started = Instant::now();
        let result = match pre.instantiate(&mut store) {
            Ok(instance) => run(instance.journey_plugin_channel(), &mut store).map_err(|error| {
                super::failure::classify_trap(limits, store.data().memory.exceeded, error, deadline)
            }),
            Err(error) => Err(super::failure::classify_instantiate_error(
                limits,
                store.data().memory.exceeded,
                error,
                deadline,
            )),
        };
        tracing::trace!(integration = call.integration, elapsed = ?started.elapsed(), "channel call");
        match store.data().http.refused() {
            Some(reason) => Err(StepFailure::Refused(reason)),
            None => result.map_err(|failure| failure.with_stderr(&store.data().wasi.stderr())),
        }
    }

    /// `render`: the provider request for one attempt.
    pub fn render_message(
        &self,
        plugin: &LoadedPlugin,
        call: &ChannelCall<'_>,
        message: &OutgoingMessage,
        config: &String,
    ) -> Result<ProviderRequest, RenderFailure> {
        self.call_channel(plugin, call, |guest, store| {
            guest.call_render(store, message, config)
        })
        .map_err(RenderFailure::Failed)?
        .map_err(|error| match error {
            RenderError::Rejected(reason) => RenderFailure::Rejected(reason),
            RenderError::Misconfigured(reason) => {
                RenderFailure::Failed(StepFailure::Returned(reason))
            }
        })
    }

    /// `interpret`: what the provider's answer means.
    pub fn interpret_response(
        &self,
        plugin: &LoadedPlugin,
        call: &ChannelCall<'_>,
        message: &OutgoingMessage,
        response: &ProviderResponse,
        config: &String,
    ) -> Result<Verdict, StepFailure> {
        self.call_channel(plugin, call, |guest, store| {
            guest.call_interpret(store, message, response, config)
        })
    }

    /// `parse-callback`: the statuses in a verified callback.
    pub fn parse_callback(
        &self,
        plugin: &LoadedPlugin,
        call: &ChannelCall<'_>,
        callback: &Callback,
        config: &String,
    ) -> Result<Vec<StatusUpdate>, StepFailure> {
        self.call_channel(plugin, call, |guest, store| {
            guest.call_parse_callback(store, callback, config)
        })?
        .map_err(StepFailure::Returned)
    }
}
