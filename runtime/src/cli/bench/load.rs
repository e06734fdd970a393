//! Driving enquiry journeys: the events and customers the scenarios send
//! and seed, and waiting for an instance to finish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;
use tokio::sync::oneshot;

use journey_runtime::executor::{IncomingEvent, Runtime};
use journey_runtime::store::{InstanceId, InstanceStatus};

const SAMPLE_ENQUIRIES: [&str; 6] = [
    "I was charged twice for my order, please refund the duplicate payment",
    "My package has not arrived and the tracking has not moved in a week",
    "How do I reset my password? The reset email never comes",
    "This is unacceptable, the product broke after one day and I want my money back now",
    "Can I change the delivery address for my order before it ships?",
    "The app crashes every time I open my invoices, please fix this",
];

/// Customers the enquiries come from.
pub const CUSTOMERS: usize = 1_000;

/// Enquiry number `n` (its id starts with `prefix`).
pub fn enquiry_event(prefix: &str, n: usize) -> IncomingEvent {
    IncomingEvent {
        id: format!("{prefix}-{n}"),
        kind: "enquiry.received".into(),
        customer: format!("c-{}", n % CUSTOMERS),
        data: serde_json::value::to_raw_value(&json!({
            "enquiry_id": format!("q-{prefix}-{n}"),
            "channel": if n.is_multiple_of(3) { "sms" } else { "email" },
            "text": SAMPLE_ENQUIRIES[n % SAMPLE_ENQUIRIES.len()],
        }))
        .expect("a JSON literal serializes"),
    }
}

/// Give every customer a profile.
pub fn seed_customers(runtime: &Runtime) -> anyhow::Result<()> {
    for customer in 0..CUSTOMERS {
        runtime.put_customer(
            &format!("c-{customer}"),
            &json!({
                "name": format!("Customer {customer}"),
                "email": format!("c{customer}@example.com"),
                "sms": format!("+4470000{customer:05}"),
                "preferred_channel": if customer.is_multiple_of(3) { "sms" } else { "email" },
                "tier": if customer.is_multiple_of(10) { "gold" } else { "standard" },
            }),
        )?;
    }
    Ok(())
}

/// Tells tasks when their instance finished, whichever comes first: the
/// task asking or the instance finishing.
pub struct Finishes {
    waiters: Mutex<Waiters>,
    listener: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Waiters {
    waiting: HashMap<InstanceId, oneshot::Sender<(Instant, InstanceStatus)>>,
    early: HashMap<InstanceId, (Instant, InstanceStatus)>,
}

impl Finishes {
    /// Listen to `runtime`'s finished instances from now on.
    pub fn start(runtime: &Runtime) -> Arc<Self> {
        let mut finished = runtime.subscribe();
        Arc::new_cyclic(|me: &std::sync::Weak<Finishes>| {
            let me = me.clone();
            let listener = tokio::spawn(async move {
                loop {
                    let done = match finished.recv().await {
                        Ok(done) => done,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(
                                missed,
                                "bench: missed finished instances; their senders wait on"
                            );
                            continue;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    };
                    let at = Instant::now();
                    let Some(finishes) = me.upgrade() else {
                        return;
                    };
                    let mut waiters = finishes.waiters();
                    match waiters.waiting.remove(&done.id) {
                        Some(waiter) => {
                            let _ = waiter.send((at, done.status));
                        }
                        None => {
                            waiters.early.insert(done.id, (at, done.status));
                        }
                    }
                }
            });
            Finishes {
                waiters: Mutex::new(Waiters::default()),
                listener,
            }
        })
    }

    fn waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters
            .lock()
            .expect("the waiters lock is never poisoned")
    }

    /// When instance `id` finished, and how.
    pub async fn of(&self, id: InstanceId) -> anyhow::Result<(Instant, InstanceStatus)> {
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = self.waiters();
            match waiters.early.remove(&id) {
                Some(done) => return Ok(done),
                None => {
                    waiters.waiting.insert(id, tx);
                }
            }
        }
        rx.await.context("the runtime stopped")
    }
}

impl Drop for Finishes {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Send enquiry `n` and wait for its instance to finish: the instance,
/// when the event was sent, and how long until it finished.
pub async fn run_enquiry(
    runtime: &Arc<Runtime>,
    finishes: &Finishes,
    prefix: &str,
    n: usize,
) -> anyhow::Result<(InstanceId, Instant, std::time::Duration, InstanceStatus)> {
    let sent = Instant::now();
    let receipt = runtime.ingest(enquiry_event(prefix, n)).await?;
    let id = *receipt
        .instances
        .first()
        .context("the event started no instance")?;
    let (at, status) = finishes.of(id).await?;
    Ok((id, sent, at.duration_since(sent), status))
}
