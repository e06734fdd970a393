//! `journey:plugin/outbox`: messages are collected here and written to the
//! durable outbox by the executor, in the step's commit. Never sent inline.

use wasmtime::component::{HasSelf, Linker};

use super::StepState;
use super::bindings::journey::plugin::outbox::{self, Message};

/// Messages one step may queue.
const MAX_MESSAGES: usize = 16;

/// A message queued by a step, with its idempotent id.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// `<idempotency key>/m<index>`: the same on every attempt.
    pub id: String,
    /// What the plugin asked to send.
    pub message: Message,
}

pub struct OutboxCapability {
    idempotency_key: String,
    messages: Vec<QueuedMessage>,
    refused: usize,
}

impl OutboxCapability {
    pub fn new(idempotency_key: &str) -> Self {
        OutboxCapability {
            idempotency_key: idempotency_key.to_owned(),
            messages: Vec::new(),
            refused: 0,
        }
    }

    pub fn into_messages(self) -> Vec<QueuedMessage> {
        if self.refused > 0 {
            tracing::warn!(
                key = %self.idempotency_key,
                refused = self.refused,
                "step queued more than {MAX_MESSAGES} messages; the rest were dropped"
            );
        }
        self.messages
    }
}

impl outbox::Host for OutboxCapability {
    fn send(&mut self, message: Message) -> String {
        let id = format!(
            "{}/m{}",
            self.idempotency_key,
            self.messages.len() + self.refused
        );
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(QueuedMessage {
                id: id.clone(),
                message,
            });
        } else {
            self.refused += 1;
        }
        id
    }
}

pub fn add_to_linker(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    outbox::add_to_linker::<_, HasSelf<OutboxCapability>>(linker, |state| &mut state.outbox)
}
