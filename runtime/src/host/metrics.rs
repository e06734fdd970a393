//! `journey:plugin/metrics`: counters a plugin emits, applied to the
//! host's Prometheus registry only after the step commits.

use wasmtime::component::{HasSelf, Linker};

use super::StepState;
use super::bindings::journey::plugin::metrics;

/// Counter increments per step beyond which samples are dropped.
const MAX_SAMPLES: usize = 64;

/// One counter increment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSample {
    /// The plugin's counter name, already checked to be `[a-z0-9_]`.
    pub name: String,
    /// The increment.
    pub value: u64,
}

#[derive(Default)]
pub struct MetricsCapability {
    samples: Vec<MetricSample>,
}

impl MetricsCapability {
    pub fn into_samples(self) -> Vec<MetricSample> {
        self.samples
    }
}

fn is_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}

impl metrics::Host for MetricsCapability {
    fn count(&mut self, name: String, value: u64) {
        // Bad names and floods are dropped, not trapped: metrics must never
        // fail a customer's step.
        if is_metric_name(&name) && self.samples.len() < MAX_SAMPLES {
            self.samples.push(MetricSample { name, value });
        }
    }
}

pub fn add_to_linker(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    metrics::add_to_linker::<_, HasSelf<MetricsCapability>>(linker, |state| &mut state.metrics)
}
