//! `journey:plugin/customer`: the single customer view, read from the
//! store on demand, and interaction notes collected for the step's commit.

use std::sync::Arc;

use serde_json::value::RawValue;
use wasmtime::component::{HasSelf, Linker};

use super::bindings::journey::plugin::customer::{
    self, ChannelPreference, CustomerView, Engagement, Interaction,
};
use super::contract::{OutputLimits, Violation, check_channel, check_object, check_size};
use super::{HostFault, StepState};
use crate::store::Customers;

/// Notes one step may add.
const MAX_NOTES: usize = 16;

/// Where a step's customer view comes from.
pub struct CustomerSource {
    /// Where customers are kept (the store's customer part, nothing more).
    pub customers: Arc<dyn Customers>,
    /// The instance's customer.
    pub customer_id: String,
}

/// An interaction a step noted.
#[derive(Debug, Clone)]
pub struct Note {
    /// When (the step's clock).
    pub at_ms: u64,
    /// What the plugin passed.
    pub interaction: Interaction,
}

pub struct CustomerCapability {
    source: CustomerSource,
    now_ms: u64,
    limits: OutputLimits,
    notes: Vec<Note>,
}

impl CustomerCapability {
    pub fn new(source: CustomerSource, now_ms: u64, limits: OutputLimits) -> Self {
        CustomerCapability {
            source,
            now_ms,
            limits,
            notes: Vec::new(),
        }
    }

    pub fn into_notes(self) -> Vec<Note> {
        self.notes
    }
}

impl customer::Host for CustomerCapability {
    fn view(
        &mut self,
        max_interactions: u32,
        kinds: Vec<String>,
    ) -> wasmtime::Result<CustomerView> {
        use crate::faults::{self, Fault};
        if faults::armed(Fault::HostPanic) {
            panic!("injected fault: a host call panicked");
        }
        if faults::armed(Fault::CustomerView) {
            return Err(HostFault::trap(
                "the customer view could not be read: injected fault",
            ));
        }
        // A store failure is the host's fault, not the plugin's: the step
        // is dropped and run again, and the instance does not fail.
        let view = self
            .source
            .customers
            .customer_view(&self.source.customer_id, max_interactions as usize, &kinds)
            .map_err(|error| {
                HostFault::trap(format_args!(
                    "the customer view could not be read: {}",
                    crate::error_chain(&error)
                ))
            })?;
        Ok(CustomerView {
            id: view.id,
            profile: json_text(view.profile),
            interactions: view
                .interactions
                .into_iter()
                .map(|interaction| Interaction {
                    at_ms: interaction.at_ms,
                    channel: interaction.channel,
                    kind: interaction.kind,
                    text: interaction.text,
                    details: json_text(interaction.details),
                })
                .collect(),
            channels: view
                .channels
                .into_iter()
                .map(|preference| ChannelPreference {
                    channel: preference.channel,
                    opted_in: preference.opted_in,
                    changed_at_ms: preference.changed_at_ms,
                })
                .collect(),
            engagement: view
                .engagement
                .into_iter()
                .map(|engagement| Engagement {
                    at_ms: engagement.at_ms,
                    action: engagement.action,
                    channel: engagement.channel,
                    event_kind: engagement.event_kind,
                    details: json_text(engagement.details),
                })
                .collect(),
        })
    }

    fn note(
        &mut self,
        channel: String,
        kind: String,
        text: String,
        details: String,
    ) -> wasmtime::Result<()> {
        const PLACE: &str = "customer.note";
        let limits = &self.limits;
        if self.notes.len() >= MAX_NOTES {
            return Err(Violation::TooMany {
                place: PLACE,
                limit: MAX_NOTES,
            }
            .trap());
        }
        check_channel(PLACE, &channel)
            .and_then(|()| check_size(PLACE, "kind", &kind, limits.name_bytes))
            .and_then(|()| check_size(PLACE, "text", &text, limits.text_bytes))
            .and_then(|()| check_object(PLACE, "details", &details, limits.json_bytes))
            .map_err(|violation| violation.trap())?;
        self.notes.push(Note {
            at_ms: self.now_ms,
            interaction: Interaction {
                at_ms: self.now_ms,
                channel,
                kind,
                text,
                details,
            },
        });
        Ok(())
    }
}

/// Raw JSON as the plugin's `json` text, without copying it.
fn json_text(raw: Box<RawValue>) -> String {
    Box::<str>::from(raw).into()
}

pub fn add_to_linker(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    customer::add_to_linker::<_, HasSelf<CustomerCapability>>(linker, |state| &mut state.customer)
}
