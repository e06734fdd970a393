//! Ingest: an event accepted durably with the instances it starts, the
//! waits it ends and the exits it causes (entry rules, single re-entry).

use super::*;
use crate::telemetry::Attribute;

/// An event as sent to the ingest API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncomingEvent {
    /// The sender's unique id; re-sending an id is a no-op.
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The customer the event is about.
    pub customer: String,
    /// Event data: a JSON object.
    pub data: Box<RawValue>,
}

/// What ingest answers once the event is durable.
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    /// The event id.
    pub event_id: String,
    /// True when this id was accepted before and nothing new happened.
    pub duplicate: bool,
    /// The instances the event started (the first time it was accepted).
    pub instances: Vec<InstanceId>,
    /// Journeys the event triggers but did not enter, and why (entry
    /// rules, re-entry policy).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<Skipped>,
    /// Instances the event ended through an exit rule.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exited: Vec<InstanceId>,
}

/// A journey an event triggers that the customer did not enter.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The journey.
    pub journey: String,
    /// Why: the segment condition that failed, the suppression that held,
    /// or the active instance under single re-entry.
    pub reason: String,
}

impl Receipt {
    fn new(event_id: String, duplicate: bool, instances: Vec<InstanceId>) -> Self {
        Receipt {
            event_id,
            duplicate,
            instances,
            skipped: Vec::new(),
            exited: Vec::new(),
        }
    }
}

/// What an event's ingest needs once its commit is durable.
struct PreparedEvent {
    record: EventRecord,
    instances: Vec<Instance>,
    skipped: Vec<Skipped>,
    woken: Vec<Instance>,
    exiting: HashSet<InstanceId>,
}

/// What preparing an event came to.
enum Prepared {
    /// An answer without a commit (an event accepted before).
    Answered(Receipt),
    /// A commit to make, and what follows it.
    Commit(Box<EventCommit>, Box<PreparedEvent>),
}

/// What became of a prepared event.
enum Ingested {
    /// Answered without a commit.
    Answered(Receipt),
    /// Committed (or not), and what follows.
    Committed(Result<Applied, CommitError>, Box<PreparedEvent>),
}

impl Runtime {
    /// Accept an event: once this returns `Ok`, the event and the instances
    /// it starts are durable and their first steps are scheduled. The
    /// store is read on the blocking pool, never on an async thread.
    pub async fn ingest(self: &Arc<Self>, event: IncomingEvent) -> Result<Receipt> {
        self.ingest_under(event, None).await
    }

    /// [`Runtime::ingest`], its `ingest` span a child of the caller's span
    /// (from the request's `traceparent`).
    pub async fn ingest_under(
        self: &Arc<Self>,
        event: IncomingEvent,
        caller: telemetry::Parent,
    ) -> Result<Receipt> {
        let mut span =
            telemetry::Span::start("ingest", telemetry::Kind::Server, caller.as_ref(), || {
                vec![
                    Attribute::new("journeyd.event.id", event.id.clone()),
                    Attribute::new("journeyd.event.type", event.kind.clone()),
                ]
            });
        let receipt = self.accept(event, span.context()).await;
        match &receipt {
            Ok(receipt) => span.set(|| {
                vec![
                    Attribute::new("journeyd.event.duplicate", receipt.duplicate),
                    Attribute::new("journeyd.instances.started", receipt.instances.len() as i64),
                    Attribute::new("journeyd.instances.skipped", receipt.skipped.len() as i64),
                    Attribute::new("journeyd.instances.exited", receipt.exited.len() as i64),
                ]
            }),
            Err(error) => span.fail(|| error.to_string()),
        }
        receipt
    }

    /// Accept an event, the steps it leads to under `trace`.
    async fn accept(
        self: &Arc<Self>,
        event: IncomingEvent,
        trace: telemetry::Parent,
    ) -> Result<Receipt> {
        if self.is_draining() {
            return Err(Error::Draining);
        }
        // Prepared on the blocking pool and handed to the committer from
        // there: the answer comes back once the commit is durable.
        let (reply, answer) = tokio::sync::oneshot::channel::<Result<Ingested>>();
        let runtime = self.clone();
        tokio::task::spawn_blocking(move || match runtime.prepare_event(event) {
            Ok(Prepared::Commit(commit, prepared)) => runtime.committer.submit_then(
                Commit::Event(commit),
                Box::new(move |applied| {
                    let _ = reply.send(Ok(Ingested::Committed(applied, prepared)));
                }),
            ),
            Ok(Prepared::Answered(receipt)) => {
                let _ = reply.send(Ok(Ingested::Answered(receipt)));
            }
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        });
        let (applied, prepared) = match answer.await.map_err(|_| CommitError::Stopped)?? {
            Ingested::Answered(receipt) => {
                // The earlier record may be applied but not yet durable
                // (its group still flushing): answer only once it is.
                self.committer.wait_durable().await;
                return Ok(receipt);
            }
            Ingested::Committed(applied, prepared) => (applied?, *prepared),
        };
        let PreparedEvent {
            record,
            mut instances,
            mut skipped,
            woken,
            exiting,
        } = prepared;
        let event_id = record.id.clone();
        let wit_event = Arc::new(wit_event(&record));
        match applied {
            Applied::DuplicateEvent { started } => Ok(Receipt::new(event_id, true, started)),
            Applied::Fenced { shard } => Err(Error::Fenced { shard }),
            Applied::Done | Applied::StaleStep | Applied::PartlyStarted { .. } => {
                if let Applied::PartlyStarted { refused } = applied {
                    for refused in refused {
                        if let Some(at) = instances
                            .iter()
                            .position(|instance| instance.id == refused.instance)
                        {
                            let instance = instances.remove(at);
                            skipped.push(Skipped {
                                journey: instance.journey,
                                reason: single_reentry_refusal(refused.active),
                            });
                        }
                    }
                }
                metrics::counter!("journeyd_events_accepted_total").increment(1);
                let ids = instances.iter().map(|instance| instance.id).collect();
                for instance in instances {
                    self.schedule(StepJob::new(instance, wit_event.clone()).under(trace.clone()));
                }
                if !woken.is_empty() {
                    let ids: Vec<InstanceId> = woken.iter().map(|instance| instance.id).collect();
                    let currents = self
                        .with_store(move |store| {
                            ids.iter()
                                .map(|id| store.instance(*id))
                                .collect::<Result<Vec<_>, _>>()
                        })
                        .await?;
                    for (instance, current) in woken.into_iter().zip(currents) {
                        // Its wake-up is skipped when its timer fired first.
                        let woke_here = current.is_some_and(|current| {
                            current.history_len == instance.history_len
                                && current.last_event_id.as_deref() == Some(event_id.as_str())
                        });
                        if woke_here {
                            self.run_next(instance, wit_event.clone(), trace.clone());
                        }
                    }
                }
                let mut exited = Vec::new();
                for id in exiting {
                    // The event is committed, so this answers `accepted`
                    // whatever happens here; a pending exit is retried at
                    // the next start.
                    match self.finish_exit(id, &record).await {
                        Ok(true) => exited.push(id),
                        Ok(false) => {}
                        Err(error) => {
                            tracing::error!(instance = %id, %error, "exit not applied yet; retried at the next start");
                        }
                    }
                }
                exited.sort();
                let mut receipt = Receipt::new(event_id, false, ids);
                receipt.skipped = skipped;
                receipt.exited = exited;
                Ok(receipt)
            }
        }
    }

    /// Check an event and build its commit: the instances it starts (entry
    /// rules checked), the waits it ends, the exits it causes. Reads the
    /// store: call it on the blocking pool.
    fn prepare_event(self: &Arc<Self>, event: IncomingEvent) -> Result<Prepared> {
        check_id("event id", &event.id)?;
        check_id("customer id", &event.customer)?;
        check_name("event type", &event.kind)?;
        let data: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(event.data.get()).map_err(|_| Error::EventDataNotObject {
                event: event.id.clone(),
            })?;
        let triggered = self.registry.triggered_by(&event.kind);
        let listening = self.registry.listening_to(&event.kind);
        let now = self.clock.now_ms();
        let mut skipped = Vec::new();
        let mut profile = None;
        let mut instances = Vec::with_capacity(triggered.len());
        // Starts under single re-entry: the journal checks them at commit.
        let mut exclusive = Vec::new();
        for (version, journey) in &triggered {
            let key = &journey.definition.trigger.correlation_key;
            let correlation = match data.get(key) {
                Some(serde_json::Value::String(text)) => text.clone(),
                Some(serde_json::Value::Number(number)) => number.to_string(),
                _ => {
                    return Err(Error::MissingCorrelationKey {
                        event: event.id,
                        journey: journey.name().to_owned(),
                        key: key.clone(),
                    });
                }
            };
            check_id("correlation value", &correlation)?;
            let refusal = self.entry_refusal(journey, &event.customer, &mut profile)?;
            if let Some(reason) = refusal {
                skipped.push(Skipped {
                    journey: journey.name().to_owned(),
                    reason,
                });
                continue;
            }
            let id = InstanceId(self.store.next_id()?);
            if journey.definition.entry.reentry == Reentry::Single {
                exclusive.push(id);
            }
            instances.push(Instance {
                id,
                journey: journey.name().to_owned(),
                journey_version: *version,
                customer_id: event.customer.clone(),
                correlation,
                trigger_event_id: event.id.clone(),
                status: InstanceStatus::Running,
                current_step: Some(journey.start.clone()),
                terminal: None,
                failure: None,
                state: empty_object(),
                history_len: 1,
                created_at_ms: now,
                updated_at_ms: now,
                wake_at_ms: None,
                waiting_for: None,
                waiting_at: None,
                last_event_id: None,
                indexed_by_customer: journey.indexes_by_customer(),
                attempts: None,
            });
        }
        let text = data
            .get("text")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let data_channel = data
            .get("channel")
            .and_then(serde_json::Value::as_str)
            .filter(|channel| journey::is_valid_name(channel));
        let channel = data_channel.unwrap_or("api").to_owned();
        let preference = channel_preference(&event, data_channel, now)?;
        let engagement = engagement(&event, data_channel, &listening, now);
        let record = EventRecord {
            id: event.id,
            kind: event.kind,
            customer_id: event.customer,
            data: event.data,
            received_at_ms: now,
            started: instances.iter().map(|instance| instance.id).collect(),
        };
        let interaction = Interaction {
            at_ms: now,
            channel,
            kind: record.kind.clone(),
            text,
            details: record.data.clone(),
        };
        let exits = self.exits_for(&record, &data, &listening)?;
        let exiting: HashSet<InstanceId> = exits.iter().map(|exit| exit.instance.id).collect();
        let mut wakes = self.wakes_for(&record, &data)?;
        // An instance the event both wakes and ends just ends.
        wakes.retain(|wake| !exiting.contains(&wake.instance.id));
        let accepted = !triggered.is_empty()
            || !listening.is_empty()
            || !wakes.is_empty()
            || preference.is_some();
        if !accepted {
            // A re-sent event is a no-op even once nothing waits for it.
            if let Some(earlier) = self.store.event(&record.id)? {
                return Ok(Prepared::Answered(Receipt::new(
                    record.id,
                    true,
                    earlier.started,
                )));
            }
            return Err(Error::UnknownEventType {
                event: record.id,
                kind: record.kind,
            });
        }
        let woken: Vec<Instance> = wakes.iter().map(|wake| wake.instance.clone()).collect();
        let commit = EventCommit {
            exclusive,
            wakes,
            exits,
            preference,
            engagement,
            ..EventCommit::new(record.clone(), instances.clone(), interaction)
        };
        Ok(Prepared::Commit(
            Box::new(commit),
            Box::new(PreparedEvent {
                record,
                instances,
                skipped,
                woken,
                exiting,
            }),
        ))
    }

    /// Why the customer does not enter `journey` now, if they do not: its
    /// segment and suppression rules (their profile is read once per
    /// event), or single re-entry with an instance active or starting.
    pub(super) fn entry_refusal(
        &self,
        journey: &Journey,
        customer: &str,
        profile: &mut Option<serde_json::Value>,
    ) -> Result<Option<String>> {
        let entry = &journey.definition.entry;
        if !entry.segment.is_empty() || !entry.suppress.is_empty() {
            let profile = match profile {
                Some(profile) => profile,
                None => {
                    let view = self.store.customer_view(customer, 0, &[])?;
                    profile.insert(serde_json::from_str(view.profile.get()).unwrap_or_default())
                }
            };
            if let Some(reason) = journey.entry_refusal(profile) {
                return Ok(Some(reason));
            }
        }
        // Checked here for a clear answer; the journal checks it again at
        // commit (see `EventCommit::exclusive`), where it cannot race.
        if entry.reentry == Reentry::Single
            && let Some(id) = self.store.active_of(journey.name(), customer)?.first()
        {
            return Ok(Some(single_reentry_refusal(*id)));
        }
        Ok(None)
    }

    /// The exits an accepted event causes: every unfinished instance of a
    /// journey with an exit rule for its type, about its customer or (when
    /// the rule correlates) carrying the value.
    pub(super) fn exits_for(
        &self,
        event: &EventRecord,
        data: &serde_json::Map<String, serde_json::Value>,
        listening: &[Arc<Journey>],
    ) -> Result<Vec<InstanceCommit>> {
        let mut exits = Vec::new();
        let mut seen = HashSet::new();
        for journey in listening {
            for rule in &journey.definition.exit {
                if rule.event != event.kind {
                    continue;
                }
                let ids = match &rule.correlate_on {
                    Some(key) => match data.get(key) {
                        Some(serde_json::Value::String(text)) => {
                            self.store.correlated(journey.name(), text)?
                        }
                        Some(serde_json::Value::Number(number)) => {
                            self.store.correlated(journey.name(), &number.to_string())?
                        }
                        // Without the value the rule ends nothing.
                        _ => continue,
                    },
                    None => self.store.active_of(journey.name(), &event.customer_id)?,
                };
                for id in ids {
                    if !seen.insert(id) {
                        continue;
                    }
                    if let Some(instance) = self.store.instance(id)?
                        && !instance.status.is_finished()
                    {
                        exits.push(exit_commit(&instance, event));
                    }
                }
            }
        }
        Ok(exits)
    }

    /// Make sure instance `id` is ended by exit event `event`: its exit was
    /// committed with the event unless one of its steps committed first, in
    /// which case the exit is committed again from where it now is. Returns
    /// whether this event ended it.
    pub(super) async fn finish_exit(&self, id: InstanceId, event: &EventRecord) -> Result<bool> {
        for _ in 0..EXIT_ATTEMPTS {
            let Some(current) = self.with_store(move |store| store.instance(id)).await? else {
                self.with_store(move |store| store.forget_exit(id)).await?;
                return Ok(false);
            };
            if current.status.is_finished() {
                let ended_here = current.status == InstanceStatus::Exited
                    && current.last_event_id.as_deref() == Some(event.id.as_str());
                if ended_here {
                    self.finish(&current);
                } else {
                    // It completed, failed or exited another way first.
                    self.with_store(move |store| store.forget_exit(id)).await?;
                }
                return Ok(ended_here);
            }
            let commit = exit_commit(&current, event);
            if self.committer.submit(commit).await? == Applied::Done {
                continue;
            }
            // A step committed first; try again from its new position.
            tokio::task::yield_now().await;
        }
        tracing::error!(instance = %id, event = %event.id, "instance kept moving; exit not applied");
        Ok(false)
    }

    /// Apply the exits that events still owe instances: their exit lost to
    /// a step and the runtime stopped before trying again. Returns how
    /// many were pending.
    pub async fn resume_exits(self: &Arc<Self>) -> Result<usize> {
        let pending = self.store.pending_exits()?;
        for (id, event_id) in &pending {
            let Some(event) = self.store.event(event_id)? else {
                tracing::error!(instance = %id, event = %event_id, "the exit's event is missing; exit dropped");
                self.store.forget_exit(*id)?;
                continue;
            };
            self.finish_exit(*id, &event).await?;
        }
        Ok(pending.len())
    }

    /// The wake-ups an accepted event causes: every instance waiting for an
    /// event of its type about its customer, or carrying the value it
    /// correlates on.
    pub(super) fn wakes_for(
        &self,
        event: &EventRecord,
        data: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Vec<InstanceCommit>> {
        if !self.store.any_waiting_for(&event.kind)? {
            return Ok(Vec::new());
        }
        let mut correlations = vec![format!("customer={}", event.customer_id)];
        for (key, value) in data {
            match value {
                serde_json::Value::String(text) => correlations.push(format!("{key}={text}")),
                serde_json::Value::Number(number) => correlations.push(format!("{key}={number}")),
                _ => {}
            }
        }
        let mut wakes = Vec::new();
        for correlation in &correlations {
            for id in self.store.waiting_for(&event.kind, correlation)? {
                let Some(asleep) = self.store.instance(id)? else {
                    continue;
                };
                let Some(wait) = asleep
                    .waiting_for
                    .as_ref()
                    .filter(|wait| wait.kind == event.kind && &wait.correlation == correlation)
                else {
                    continue;
                };
                let next = asleep.woken(
                    wait.on_event.clone(),
                    self.is_step(&asleep, &wait.on_event),
                    Some(&event.id),
                    event.received_at_ms,
                );
                let entry = HistoryEntry::EventArrived {
                    at_ms: event.received_at_ms,
                    event_id: event.id.clone(),
                    kind: event.kind.clone(),
                };
                wakes.push(InstanceCommit::leaving(next, entry, &asleep));
            }
        }
        Ok(wakes)
    }
}

/// Why single re-entry kept a customer out: `active` is still unfinished.
fn single_reentry_refusal(active: InstanceId) -> String {
    format!("re-entry is single and instance {active} is still active")
}

/// The channel choice an opt-in or opt-out event records; `None` for other
/// events. Those two must name the channel in `data.channel`.
fn channel_preference(
    event: &IncomingEvent,
    data_channel: Option<&str>,
    now: u64,
) -> Result<Option<ChannelPreference>> {
    if event.kind != OPTED_IN && event.kind != OPTED_OUT {
        return Ok(None);
    }
    let Some(channel) = data_channel else {
        return Err(Error::EventDataField {
            event: event.id.clone(),
            kind: event.kind.clone(),
            field: "channel",
            reason: "must name the channel: 1-64 of A-Z a-z 0-9 . _ -, e.g. \"sms\"",
        });
    };
    Ok(Some(ChannelPreference {
        channel: channel.to_owned(),
        opted_in: event.kind == OPTED_IN,
        changed_at_ms: now,
    }))
}

/// The engagement an event records, when a journey listening to it
/// declares it as engagement (the first such journey decides).
fn engagement(
    event: &IncomingEvent,
    data_channel: Option<&str>,
    listening: &[Arc<Journey>],
    now: u64,
) -> Option<Engagement> {
    listening.iter().find_map(|journey| {
        let declared = journey.definition.events.get(&event.kind)?;
        Some(Engagement {
            at_ms: now,
            action: declared.engagement.clone()?,
            channel: data_channel
                .map(str::to_owned)
                .or_else(|| declared.channel.clone())
                .unwrap_or_default(),
            event_kind: event.kind.clone(),
            details: event.data.clone(),
        })
    })
}

/// The exit of `instance` (unfinished) through exit event `event`.
fn exit_commit(instance: &Instance, event: &EventRecord) -> InstanceCommit {
    let next = instance.exited(&event.id, event.received_at_ms);
    let entry = HistoryEntry::Exited {
        at_ms: event.received_at_ms,
        event_id: event.id.clone(),
        kind: event.kind.clone(),
        step: instance.current_step.clone(),
    };
    InstanceCommit::leaving(next, entry, instance)
}
