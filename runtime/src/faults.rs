//! Host faults a test build can switch on, to prove that the runtime
//! treats a failure of its own as a host fault: the customer's step is
//! retried, never failed, and `/readyz` shows the fault while it lasts.
//!
//! Compiled in only with the `fault-injection` feature (the black-box
//! tests enable it; `cargo build -p journey-runtime` does not). Without
//! it [`armed`] is a constant `false` and the fault points cost nothing.
//! With it, `PUT /v1/faults` switches faults on and off.

use serde::{Deserialize, Serialize};

/// A fault that can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Reading a customer's view fails as if the store could not be read:
    /// the `customer.view` host call, and the time zone lookup of a sleep
    /// in the customer's sending window.
    CustomerView,
    /// Every group commit fails as if the store could not be written.
    Commit,
    /// `customer.view` panics inside the host call.
    HostPanic,
}

impl Fault {
    /// Every fault, in a fixed order.
    pub const ALL: [Fault; 3] = [Fault::CustomerView, Fault::Commit, Fault::HostPanic];
}

#[cfg(feature = "fault-injection")]
static ARMED: [std::sync::atomic::AtomicBool; 3] = [
    std::sync::atomic::AtomicBool::new(false),
    std::sync::atomic::AtomicBool::new(false),
    std::sync::atomic::AtomicBool::new(false),
];

/// Whether `fault` is switched on.
#[inline]
pub fn armed(fault: Fault) -> bool {
    #[cfg(feature = "fault-injection")]
    {
        ARMED[fault as usize].load(std::sync::atomic::Ordering::Relaxed)
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = fault;
        false
    }
}

/// Switch `fault` on or off.
#[cfg(feature = "fault-injection")]
pub fn set(fault: Fault, on: bool) {
    ARMED[fault as usize].store(on, std::sync::atomic::Ordering::Relaxed);
}

/// The faults switched on.
pub fn armed_faults() -> Vec<Fault> {
    Fault::ALL
        .into_iter()
        .filter(|fault| armed(*fault))
        .collect()
}
