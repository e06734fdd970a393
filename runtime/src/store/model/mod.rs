//! The domain records the store keeps: ids, plugin and journey versions,
//! tags and rollouts, run counts, events, instances and their state
//! machine (how a step, a retry, a restart or a split moves one), history
//! entries, outbox messages, and the customer view. Backends store these;
//! how they lay them out is theirs.
//!
//! Files: `catalog.rs`, `instance.rs` (with the state machine),
//! `history.rs`, `customer.rs`, `funnel.rs` (the counts purged instances
//! leave behind) and `scrub.rs` (how a forgotten customer leaves the
//! records an anonymised instance keeps).

mod catalog;
mod customer;
mod funnel;
mod history;
mod instance;
mod scrub;

use serde::{Deserialize, Serialize};

pub use self::catalog::*;
pub use self::customer::*;
pub use self::funnel::*;
pub use self::history::*;
pub use self::instance::*;
pub use self::scrub::*;

/// An instance id: allocated by the store, unique for the store's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InstanceId(pub u64);

impl std::fmt::Display for InstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "i-{}", self.0)
    }
}

impl std::str::FromStr for InstanceId {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        text.strip_prefix("i-")
            .unwrap_or(text)
            .parse()
            .map(InstanceId)
    }
}

#[cfg(test)]
mod tests;
