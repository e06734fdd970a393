//! Running a step: the sandbox run, how its outcome moves the instance
//! (or retries it on its policy), splits, migrations, and its commit.

use super::*;
use crate::telemetry::Attribute;

impl Runtime {
    /// Run an instance's current step on this thread and hand its effects
    /// to the committer. Once they are durable, the committer thread
    /// schedules the instance's next step (or records it finished), so an
    /// instance has at most one step queued, running or committing.
    pub(super) fn run_step(self: &Arc<Self>, job: StepJob) {
        if let Some(migration) = self
            .registry
            .migration(&job.instance.journey, job.instance.journey_version)
        {
            self.migrate(job, &migration);
            return;
        }
        let StepJob {
            instance,
            event,
            attempt,
            trace,
        } = job;
        let Some(step_name) = instance
            .current_step
            .clone()
            .filter(|_| instance.status == InstanceStatus::Running)
        else {
            tracing::warn!(instance = %instance.id, status = ?instance.status, "a step was scheduled for an instance with no step to run; dropped");
            return;
        };
        let journey = self
            .registry
            .journey(&instance.journey, instance.journey_version);
        let step = journey
            .as_ref()
            .and_then(|journey| journey.step(&step_name));
        let started_ms = self.clock.now_ms();
        if let Some((step, journey)) = step.zip(journey.as_deref())
            && let Some(variant) = step.variant_for(&instance.journey, instance.id.0)
        {
            let variant = variant.to_owned();
            let target = step.definition.on[&variant].clone();
            let is_step = journey.step(&target).is_some();
            self.take_split(
                instance, event, step_name, variant, target, is_step, started_ms, trace,
            );
            return;
        }
        let idempotency_key = instance.idempotency_key();
        let mut span =
            telemetry::Span::start("step", telemetry::Kind::Internal, trace.as_ref(), || {
                vec![
                    Attribute::new("journeyd.journey", instance.journey.clone()),
                    Attribute::new(
                        "journeyd.journey.version",
                        i64::from(instance.journey_version),
                    ),
                    Attribute::new("journeyd.instance", instance.id.0 as i64),
                    Attribute::new("journeyd.step", step_name.clone()),
                    Attribute::new("journeyd.attempt", i64::from(attempt)),
                ]
            });

        // An operator's retry may name another plugin version for this step.
        let chosen = instance
            .attempts
            .as_ref()
            .and_then(|attempts| attempts.plugin.as_deref())
            .and_then(PluginRef::parse);
        let (plugin, run) = match step {
            Some(step) => {
                match self.resolve_plugin(chosen.as_ref().unwrap_or(&step.plugin), instance.id) {
                    Ok((resolved, loaded)) => {
                        let _running = self.health.step_running();
                        self.notify_start(&resolved.record.digest);
                        let request = StepRequest {
                            input: host::StepInput {
                                journey: instance.journey.clone(),
                                journey_version: instance.journey_version,
                                instance_id: instance.id.to_string(),
                                step: step_name.clone(),
                                event: (*event).clone(),
                                state: instance.state.get().to_owned(),
                                config: step.config_json.clone(),
                                attempt,
                                idempotency_key: idempotency_key.clone(),
                            },
                            customer: host::CustomerSource {
                                customers: self.store.clone(),
                                customer_id: instance.customer_id.clone(),
                            },
                            now_ms: started_ms,
                            deadline: step.definition.timeout_ms.map(Duration::from_millis),
                            sends: self.sends.clone(),
                            http: self.step_grant(&resolved.record.name),
                            plugin: resolved.record.name.clone(),
                        };
                        (Some(resolved), self.host.run_step(&loaded, request))
                    }
                    Err(failure) => (None, failed_run(failure)),
                }
            }
            None => (
                None,
                failed_run(StepFailure::Instantiate(format!(
                    "journey `{}` version {} has no step `{step_name}`",
                    instance.journey, instance.journey_version
                ))),
            ),
        };
        // A sleep inside the customer's sending window needs their time
        // zone; a store that cannot say is the host's fault, not UTC.
        let customer_zone = match &run.result {
            Err(failure) if failure.is_host_fault() => Err(failure.to_string()),
            Ok(output) if needs_customer_zone(output) => self.customer_zone(&instance.customer_id),
            _ => Ok(None),
        };
        let customer_zone = match customer_zone {
            Ok(zone) => zone,
            Err(reason) => {
                // Nothing of the attempt is committed: its cap reservations
                // are given back and the step runs again.
                self.release_counted(&run.effects.messages, &instance.customer_id, started_ms);
                return self.host_fault(instance.id, attempt, reason);
            }
        };
        let plugin_name = plugin.as_ref().map(|resolved| resolved.record.name.clone());
        let (mut commit, mut samples) = self.build_commit(
            &instance,
            journey.as_deref(),
            &step_name,
            plugin,
            attempt,
            idempotency_key,
            started_ms,
            run,
            customer_zone.as_deref(),
        );
        samples.retain(|sample| {
            plugin_name
                .as_deref()
                .is_some_and(|plugin| self.metric_names.admit(plugin, &sample.name))
        });
        record_step(&mut span, &commit.entry);
        if let Some(traceparent) = span.traceparent() {
            // Its deliveries join this step's trace, however late.
            for message in &mut commit.messages {
                message.trace = Some(traceparent.clone());
            }
        }
        let commit_span = telemetry::Span::start(
            "commit",
            telemetry::Kind::Internal,
            span.context().as_ref(),
            Vec::new,
        );
        span.end();
        let next = commit.instance.clone();
        let queued_messages = !commit.messages.is_empty();
        let counted: Vec<String> = commit
            .counted
            .iter()
            .map(|counted| counted.channel.clone())
            .collect();
        let runtime = self.clone();
        self.committer.submit_then(
            commit,
            Box::new(move |result| {
                // Committed, the store counts them; discarded, they never
                // happened: either way their reservations end here.
                for channel in &counted {
                    runtime
                        .sends
                        .release(&next.customer_id, channel, started_ms);
                }
                if queued_messages && matches!(result, Ok(Applied::Done)) {
                    runtime.outbox_changed.notify_one();
                }
                record_commit(commit_span, &result);
                runtime.after_step_commit(result, next, event, samples, &step_name, trace);
            }),
        );
    }

    /// What follows a step's commit: its metrics and next step, or the
    /// instance's end.
    pub(super) fn after_step_commit(
        self: &Arc<Self>,
        result: Result<Applied, CommitError>,
        next: Instance,
        event: Arc<host::Event>,
        samples: Vec<host::MetricSample>,
        step_name: &str,
        trace: telemetry::Parent,
    ) {
        self.health.host_fault_over(next.id);
        match result {
            Ok(Applied::Done) => {
                for sample in samples {
                    metrics::counter!(format!("journey_plugin_{}_total", sample.name))
                        .increment(sample.value);
                }
                match next.status {
                    InstanceStatus::Running => {
                        self.schedule(StepJob::new(next, event).under(trace))
                    }
                    // Its timer is in the store; the timer loop may be
                    // sleeping until a later one.
                    InstanceStatus::Waiting => self.timers_changed.notify_one(),
                    InstanceStatus::Completed
                    | InstanceStatus::Failed
                    | InstanceStatus::Exited
                    | InstanceStatus::Cancelled => {
                        self.finish(&next);
                    }
                }
            }
            Ok(Applied::Fenced { shard }) => {
                metrics::counter!("journeyd_fenced_commits_total").increment(1);
                tracing::warn!(instance = %next.id, step = %step_name, shard, "step discarded: this node no longer holds the instance's shard; its holder runs the step again");
            }
            Ok(_) => {
                tracing::info!(instance = %next.id, step = %step_name, "step discarded: the instance moved on first (another attempt, or an exit event)");
            }
            Err(CommitError::Stopped) => {
                tracing::info!(instance = %next.id, "the runtime is stopping; the step runs again at the next start");
            }
        }
    }

    /// Send an instance down the variant of a split step it is assigned
    /// to, recorded in its history; then run what follows.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn take_split(
        self: &Arc<Self>,
        instance: Instance,
        event: Arc<host::Event>,
        step: String,
        variant: String,
        target: String,
        is_step: bool,
        now: u64,
        trace: telemetry::Parent,
    ) {
        let mut next = instance;
        next.follow_split(&target, is_step, now);
        let entry = HistoryEntry::Split {
            at_ms: now,
            step,
            variant,
            target,
        };
        let commit = InstanceCommit::new(next.clone(), entry);
        metrics::counter!("journeyd_steps_total", "outcome" => "split").increment(1);
        let runtime = self.clone();
        self.committer.submit_then(
            commit,
            Box::new(move |result| match result {
                Ok(Applied::Done) if next.status == InstanceStatus::Running => {
                    runtime.schedule(StepJob::new(next, event).under(trace));
                }
                Ok(Applied::Done) => runtime.finish(&next),
                Ok(_) => {
                    tracing::warn!(instance = %next.id, "split was already committed by another attempt");
                }
                Err(CommitError::Stopped) => {
                    tracing::info!(instance = %next.id, "the runtime is stopping; the split is taken at the next start");
                }
            }),
        );
    }

    /// Move an instance to the version `migration` leads to, before its
    /// next step; once that is durable, the step runs under the new version.
    pub(super) fn migrate(self: &Arc<Self>, job: StepJob, migration: &MigrationRecord) {
        let StepJob {
            instance,
            event,
            trace,
            ..
        } = job;
        let Some(from_step) = instance.current_step.clone() else {
            tracing::warn!(instance = %instance.id, "a migration was scheduled for an instance with no step to run; dropped");
            return;
        };
        let to_step = migration
            .steps
            .get(&from_step)
            .cloned()
            .unwrap_or_else(|| from_step.clone());
        let next = instance.migrated(migration.to_version, to_step.clone(), self.clock.now_ms());
        let entry = HistoryEntry::Migrated {
            at_ms: next.updated_at_ms,
            from_version: migration.from_version,
            to_version: migration.to_version,
            from_step,
            to_step,
        };
        let commit = InstanceCommit::new(next.clone(), entry);
        let runtime = self.clone();
        self.committer.submit_then(
            commit,
            Box::new(move |result| match result {
                Ok(Applied::Done) => runtime.schedule(StepJob::new(next, event).under(trace)),
                Ok(_) => {
                    tracing::warn!(instance = %next.id, "migration was already committed by another attempt");
                }
                Err(CommitError::Stopped) => {
                    tracing::info!(instance = %next.id, "the runtime is stopping; the migration is made at the next start");
                }
            }),
        );
    }

    /// Give back the frequency-cap slots an attempt's messages took: the
    /// attempt commits none of them.
    fn release_counted(&self, messages: &[host::QueuedMessage], customer: &str, started_ms: u64) {
        for queued in messages.iter().filter(|queued| queued.counted) {
            self.sends
                .release(customer, &queued.message.channel, started_ms);
        }
    }

    /// The time zone in `customer`'s profile, if it names one; an error
    /// (the host's fault) when the store cannot say.
    fn customer_zone(&self, customer: &str) -> Result<Option<String>, String> {
        use crate::faults::{self, Fault};
        let unreadable =
            |reason: String| format!("the customer's time zone could not be read: {reason}");
        if faults::armed(Fault::CustomerView) {
            return Err(unreadable("injected fault".into()));
        }
        let view = self
            .store
            .customer_view(customer, 0, &[])
            .map_err(|error| unreadable(crate::error_chain(&error)))?;
        let profile: serde_json::Value =
            serde_json::from_str(view.profile.get()).unwrap_or_default();
        Ok(profile
            .get("time_zone")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned))
    }

    /// What a step's run commits: its outcome (or a retry on its policy),
    /// the instance moved on, the history entry, messages and notes.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build_commit(
        &self,
        instance: &Instance,
        journey: Option<&Journey>,
        step: &str,
        plugin: Option<Resolved>,
        attempt: u32,
        idempotency_key: String,
        started_ms: u64,
        run: host::StepRun,
        customer_zone: Option<&str>,
    ) -> (InstanceCommit, Vec<host::MetricSample>) {
        let duration_us = run.duration.as_micros() as u64;
        self.step_stats
            .steps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.step_stats.sandbox_nanos.fetch_add(
            run.duration.as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        metrics::histogram!("journeyd_step_duration_seconds").record(run.duration.as_secs_f64());

        let decided = match run.result {
            Ok(output) => outcome_of(journey, step, instance, output, started_ms, customer_zone),
            Err(failure) => Err(failure.to_string()),
        };
        let (outcome, new_state, effects, plugin_failed) = match decided {
            Ok((outcome, state)) => (outcome, state, run.effects, false),
            Err(reason) => {
                // A failed attempt's effects came from an unfinished step:
                // none of them are committed, and the cap slots its
                // messages took are given back. Its log lines are kept:
                // they say what went wrong.
                self.release_counted(&run.effects.messages, &instance.customer_id, started_ms);
                let kept = host::Effects {
                    logs: run.effects.logs,
                    ..host::Effects::default()
                };
                (StepOutcome::Fail { reason }, None, kept, true)
            }
        };
        // A failed plugin runs again while its step's retry policy allows,
        // on a durable timer.
        let retry_at_ms = if plugin_failed {
            let policy = journey
                .and_then(|journey| journey.step(step))
                .map_or(RetryPolicy::DEFAULT, |step| step.retry);
            let failed = instance
                .attempts
                .as_ref()
                .map_or(0, |attempts| attempts.failed)
                + 1;
            (failed < policy.attempts)
                .then(|| self.clock.now_ms().max(started_ms) + policy.delay_ms(failed))
        } else {
            None
        };
        if retry_at_ms.is_some() {
            metrics::counter!("journeyd_step_retries_total").increment(1);
        }
        metrics::counter!("journeyd_steps_total", "outcome" => outcome_label(&outcome))
            .increment(1);

        let host::Effects {
            messages,
            capped,
            notes,
            logs,
            metrics,
        } = effects;
        let counted: Vec<CountedSend> = messages
            .iter()
            .filter(|queued| queued.counted)
            .map(|queued| CountedSend {
                channel: queued.message.channel.clone(),
                at_ms: started_ms,
            })
            .collect();
        let capped: Vec<CappedMessage> = capped
            .into_iter()
            .map(|capped| CappedMessage {
                channel: capped.message.channel,
                subject: capped.message.subject,
                limit: capped.cap.limit,
                period_ms: capped.cap.period_ms,
                next_allowed_ms: capped.cap.next_allowed_ms,
            })
            .collect();
        let messages: Vec<OutboxMessage> = messages
            .into_iter()
            .map(|queued| {
                let message = queued.message;
                OutboxMessage {
                    id: queued.id,
                    instance_id: instance.id,
                    journey: instance.journey.clone(),
                    step: step.to_owned(),
                    customer_id: instance.customer_id.clone(),
                    channel: message.channel,
                    to: message.to,
                    subject: message.subject,
                    body: message.body,
                    // The host checked it is a JSON object.
                    metadata: raw_json(message.metadata),
                    queued_at_ms: started_ms,
                    trace: None,
                }
            })
            .collect();
        let notes = notes
            .into_iter()
            .map(|note| Interaction {
                at_ms: note.at_ms,
                channel: note.interaction.channel,
                kind: note.interaction.kind,
                text: note.interaction.text,
                // The host checked it is a JSON object.
                details: raw_json(note.interaction.details),
            })
            .collect();
        let state = match &new_state {
            Some(new_state) => {
                StateChanges::between(&state_map(instance.state.get()), state_map(new_state.get()))
            }
            None => StateChanges::default(),
        };
        if let Some(resolved) = &plugin {
            let failed = matches!(outcome, StepOutcome::Fail { .. });
            self.count_run(resolved, failed, duration_us);
        }
        let (plugin_name, plugin_version, digest) = match plugin {
            Some(resolved) => (
                resolved.record.name,
                resolved.record.version,
                resolved.record.digest,
            ),
            None => (String::new(), 0, String::new()),
        };
        let record = StepRecord {
            at_ms: started_ms,
            step: step.to_owned(),
            plugin: plugin_name,
            plugin_version,
            digest,
            attempt,
            idempotency_key,
            state,
            outcome,
            duration_us,
            messages: messages.iter().map(|message| message.id.clone()).collect(),
            capped,
            logs: logs
                .into_iter()
                .map(|line| LogLine {
                    level: line.level,
                    message: line.message,
                })
                .collect(),
            retry_at_ms,
        };
        let mut next = instance.clone();
        let entry = match retry_at_ms {
            Some(retry_at_ms) => {
                next.retry_later(&record, retry_at_ms);
                HistoryEntry::StepFailed(Box::new(record))
            }
            None => {
                next.advance(&record, |target| {
                    journey.is_some_and(|journey| journey.step(target).is_some())
                });
                if let Some(new_state) = new_state {
                    next.state = new_state;
                }
                HistoryEntry::StepRan(Box::new(record))
            }
        };
        let commit = InstanceCommit {
            messages,
            interactions: notes,
            counted,
            ..InstanceCommit::new(next, entry)
        };
        (commit, metrics)
    }
}

/// Turn a plugin's output into a recorded outcome and new state, or the
/// reason the step fails.
fn outcome_of(
    journey: Option<&Journey>,
    step: &str,
    instance: &Instance,
    output: host::StepOutput,
    started_ms: u64,
    customer_zone: Option<&str>,
) -> Result<(StepOutcome, Option<Box<RawValue>>), String> {
    // Where a wait or sleep continues: a step, or a terminal state that
    // completes the instance when it wakes.
    let step_target = |transition: &str, what: &str| match journey
        .and_then(|journey| journey.target(step, transition))
    {
        Some(Target::Step(target) | Target::Terminal(target)) => Ok(target.to_owned()),
        None => Err(format!(
            "plugin chose to {what}, then take transition `{transition}`, which step `{step}` does not define"
        )),
    };
    let state = match output.state {
        None => None,
        Some(text) => match crate::json::check_object(&text) {
            Ok(()) => Some(raw_json(text)),
            Err(error) => {
                return Err(format!(
                    "plugin returned a state that is not a JSON object: {error}"
                ));
            }
        },
    };
    let outcome = match output.outcome {
        host::Outcome::Goto(transition) => {
            match journey.and_then(|journey| journey.target(step, &transition)) {
                Some(Target::Step(target)) | Some(Target::Terminal(target)) => StepOutcome::Goto {
                    target: target.to_owned(),
                    transition,
                },
                None => {
                    return Err(format!(
                        "plugin chose transition `{transition}`, which step `{step}` does not define"
                    ));
                }
            }
        }
        host::Outcome::Complete => StepOutcome::Complete,
        host::Outcome::Fail(reason) => StepOutcome::Fail { reason },
        host::Outcome::WaitForEvent(spec) => {
            if spec.kind.is_empty() {
                return Err("plugin chose to wait for an event with no event type".into());
            }
            if spec.timeout_ms == 0 {
                return Err(format!(
                    "plugin chose to wait for `{}` without a timeout: `timeout-ms` must be above 0, so nobody waits forever",
                    spec.kind
                ));
            }
            let correlation = match journey
                .and_then(|journey| journey.step(step))
                .and_then(|step| step.definition.correlate_on.as_deref())
            {
                Some(key) => format!("{key}={}", instance.correlation),
                None => format!("customer={}", instance.customer_id),
            };
            StepOutcome::WaitForEvent {
                event_target: step_target(&spec.on_event, "wait for an event")?,
                timeout_target: step_target(&spec.on_timeout, "wait for an event")?,
                event: spec.kind,
                correlation,
                until_ms: started_ms.saturating_add(spec.timeout_ms),
                on_event: spec.on_event,
                on_timeout: spec.on_timeout,
            }
        }
        host::Outcome::SleepUntil(spec) => {
            let (until_ms, window) = match &spec.window {
                None => (spec.until_ms, None),
                Some(window) => {
                    let (zone, source) = match window.time_zone.as_str() {
                        "" => match customer_zone {
                            Some(zone) => (zone.to_owned(), "the customer's profile `time_zone`: "),
                            None => ("UTC".to_owned(), ""),
                        },
                        zone => (zone.to_owned(), ""),
                    };
                    let window = SendingWindow::new(window.from_minute, window.to_minute, &zone)
                        .map_err(|reason| {
                            format!(
                                "plugin chose to sleep within a sending window: {source}{reason}"
                            )
                        })?;
                    let opens = window
                        .next_open(spec.until_ms)
                        .map_err(|error| crate::error_chain(&error))?;
                    (opens, Some(window.to_string()))
                }
            };
            StepOutcome::Sleep {
                until_ms,
                target: step_target(&spec.then, "sleep")?,
                transition: spec.then,
                requested_ms: (until_ms != spec.until_ms).then_some(spec.until_ms),
                window,
            }
        }
    };
    Ok((outcome, state))
}

/// Instance state as a map. It is always a JSON object: [`decide`]
/// checks what plugins return before it is recorded.
fn state_map(state: &str) -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_str(state).unwrap_or_default()
}

fn failed_run(failure: StepFailure) -> host::StepRun {
    host::StepRun {
        result: Err(failure),
        effects: host::Effects::default(),
        duration: Duration::ZERO,
    }
}

/// What a step run's history entry says, on its span.
fn record_step(span: &mut telemetry::Span, entry: &HistoryEntry) {
    let (HistoryEntry::StepRan(record) | HistoryEntry::StepFailed(record)) = entry else {
        return;
    };
    span.set(|| {
        vec![
            Attribute::new("journeyd.plugin", record.plugin.clone()),
            Attribute::new("journeyd.plugin.version", i64::from(record.plugin_version)),
            Attribute::new("journeyd.plugin.digest", record.digest.clone()),
            Attribute::new("journeyd.outcome", outcome_label(&record.outcome)),
            Attribute::new("journeyd.step.duration_us", record.duration_us as i64),
            Attribute::new("journeyd.retry", record.retry_at_ms.is_some()),
            Attribute::new("journeyd.messages", record.messages.len() as i64),
        ]
    });
    if let StepOutcome::Fail { reason } = &record.outcome {
        span.fail(|| reason.clone());
    }
}

/// How a commit ended, on its span (which ends here).
fn record_commit(mut span: telemetry::Span, result: &Result<Applied, CommitError>) {
    let applied = match result {
        Ok(Applied::Done) => "done",
        Ok(Applied::Fenced { .. }) => "fenced",
        Ok(_) => "stale",
        Err(CommitError::Stopped) => {
            span.fail(|| "the runtime stopped before the commit".to_owned());
            "stopped"
        }
    };
    span.set(|| vec![Attribute::new("journeyd.commit", applied)]);
}

fn outcome_label(outcome: &StepOutcome) -> &'static str {
    match outcome {
        StepOutcome::Goto { .. } => "goto",
        StepOutcome::Sleep { .. } => "sleep",
        StepOutcome::WaitForEvent { .. } => "wait_for_event",
        StepOutcome::Complete => "complete",
        StepOutcome::Fail { .. } => "fail",
    }
}

/// Whether the outcome sleeps inside a window of the customer's own time
/// zone (one that names no zone).
fn needs_customer_zone(output: &host::StepOutput) -> bool {
    matches!(
        &output.outcome,
        host::Outcome::SleepUntil(sleep)
            if sleep.window.as_ref().is_some_and(|window| window.time_zone.is_empty())
    )
}
