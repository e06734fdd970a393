//! `journey:plugin/clock`: the runtime's time, frozen for one step attempt
//! so a step is deterministic in its input.

use wasmtime::component::{HasSelf, Linker};

use super::StepState;
use super::bindings::journey::plugin::clock;

pub struct ClockCapability {
    now_ms: u64,
}

impl ClockCapability {
    pub fn new(now_ms: u64) -> Self {
        ClockCapability { now_ms }
    }
}

impl clock::Host for ClockCapability {
    fn now_ms(&mut self) -> u64 {
        self.now_ms
    }
}

pub fn add_to_linker(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    clock::add_to_linker::<_, HasSelf<ClockCapability>>(linker, |state| &mut state.clock)
}
