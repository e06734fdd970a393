//! `journey:plugin/outbox`: messages are collected here and written to the
//! durable outbox by the executor, in the step's commit. Never sent inline.
//!
//! Each message is first offered to the runtime's [`SendPolicy`] (its
//! frequency caps), which counts it or refuses it; the plugin sees the
//! answer, and the executor records refused messages in history.

use std::sync::Arc;

use wasmtime::component::{HasSelf, Linker};

use super::bindings::journey::plugin::outbox::{self, FrequencyCap, Message, SendError};
use super::contract::{OutputLimits, check_channel, check_object, check_size};
use super::{HostFault, StepState};

/// Messages one step may queue.
const MAX_MESSAGES: usize = 16;

/// What the runtime's send policy says about one message.
#[derive(Debug, Clone)]
pub enum Admission {
    /// The channel has no cap.
    Uncapped,
    /// Counted against the channel's cap: the executor records it in the
    /// step's commit, or gives it back if the step does not commit.
    Counted,
    /// Over the cap: not queued.
    Capped(FrequencyCap),
}

/// The runtime's frequency caps, as the host sees them.
pub trait SendPolicy: Send + Sync {
    /// Decide on a message to `customer` on `channel` from a step of
    /// `journey` at `now_ms`. An error is the host's fault (the store
    /// could not say what was sent): the step is run again later.
    fn admit(
        &self,
        customer: &str,
        channel: &str,
        journey: &str,
        now_ms: u64,
    ) -> Result<Admission, HostFault>;
}

/// A message queued by a step, with its idempotent id.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// `<idempotency key>/m<index>`: the same on every attempt.
    pub id: String,
    /// What the plugin asked to send.
    pub message: Message,
    /// Whether it was counted against a frequency cap.
    pub counted: bool,
}

/// A message a frequency cap refused.
#[derive(Debug, Clone)]
pub struct CappedSend {
    /// What the plugin asked to send.
    pub message: Message,
    /// The cap it hit.
    pub cap: FrequencyCap,
}

pub struct OutboxCapability {
    idempotency_key: String,
    customer_id: String,
    journey: String,
    now_ms: u64,
    policy: Arc<dyn SendPolicy>,
    limits: OutputLimits,
    messages: Vec<QueuedMessage>,
    capped: Vec<CappedSend>,
}

impl OutboxCapability {
    pub fn new(
        idempotency_key: &str,
        customer_id: &str,
        journey: &str,
        now_ms: u64,
        policy: Arc<dyn SendPolicy>,
        limits: OutputLimits,
    ) -> Self {
        OutboxCapability {
            idempotency_key: idempotency_key.to_owned(),
            customer_id: customer_id.to_owned(),
            journey: journey.to_owned(),
            now_ms,
            policy,
            limits,
            messages: Vec::new(),
            capped: Vec::new(),
        }
    }

    pub fn into_parts(self) -> (Vec<QueuedMessage>, Vec<CappedSend>) {
        (self.messages, self.capped)
    }
}

impl outbox::Host for OutboxCapability {
    fn send(&mut self, message: Message) -> wasmtime::Result<Result<String, SendError>> {
        const PLACE: &str = "outbox.send";
        let limits = &self.limits;
        check_channel(PLACE, &message.channel)
            .and_then(|()| check_size(PLACE, "to", &message.to, limits.name_bytes))
            .and_then(|()| check_size(PLACE, "subject", &message.subject, limits.name_bytes))
            .and_then(|()| check_size(PLACE, "body", &message.body, limits.message_bytes))
            .and_then(|()| check_object(PLACE, "metadata", &message.metadata, limits.json_bytes))
            .map_err(|violation| violation.trap())?;
        if self.messages.len() >= MAX_MESSAGES {
            return Ok(Err(SendError::TooManyMessages));
        }
        let admission = self
            .policy
            .admit(
                &self.customer_id,
                &message.channel,
                &self.journey,
                self.now_ms,
            )
            .map_err(wasmtime::Error::new)?;
        let counted = match admission {
            Admission::Uncapped => false,
            Admission::Counted => true,
            Admission::Capped(cap) => {
                self.capped.push(CappedSend {
                    message,
                    cap: cap.clone(),
                });
                return Ok(Err(SendError::FrequencyCapped(cap)));
            }
        };
        let id = format!("{}/m{}", self.idempotency_key, self.messages.len());
        self.messages.push(QueuedMessage {
            id: id.clone(),
            message,
            counted,
        });
        Ok(Ok(id))
    }
}

pub fn add_to_linker(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    outbox::add_to_linker::<_, HasSelf<OutboxCapability>>(linker, |state| &mut state.outbox)
}
