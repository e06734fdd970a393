//! Time: the timer loop that wakes sleeping and waiting instances, and
//! moving a simulated clock timer by timer.

use super::*;

impl Runtime {
    /// The clock the runtime reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Move the simulated clock forward to `to_ms` and let timers that
    /// fell due fire; returns the new time. `None` on the system clock.
    pub fn advance_clock(&self, to_ms: u64) -> Result<Option<u64>> {
        let Some(clock) = self.clock.simulated() else {
            return Ok(None);
        };
        let now = clock.advance_to(to_ms);
        self.store
            .put_meta(SIMULATED_CLOCK_META, &serde_json::json!(now))?;
        self.timers_changed.notify_one();
        self.outbox_changed.notify_one();
        self.retention_due.notify_one();
        Ok(Some(now))
    }

    /// Move the simulated clock to `to_ms` one due timer at a time: the
    /// clock stops at each timer's due time until the runtime has settled
    /// (the woken steps, and whatever they set in motion, are committed),
    /// so every timer fires on time even across a jump of weeks. Gives up
    /// waiting after `limit`. Returns the new time and whether it settled;
    /// `None` on the system clock.
    pub async fn advance_clock_settled(
        self: &Arc<Self>,
        to_ms: u64,
        limit: Duration,
    ) -> Result<Option<(u64, bool)>> {
        let deadline = std::time::Instant::now() + limit;
        let Some(clock) = self.clock.simulated() else {
            return Ok(None);
        };
        // Whatever is under way finishes at the current time first. When
        // the runtime does not settle in time (a step paused by a store
        // error, say), the clock still moves: to `to_ms` in one jump.
        let jump = |runtime: Arc<Self>| async move {
            let moved = tokio::task::spawn_blocking(move || runtime.advance_clock(to_ms)).await??;
            Ok::<_, Error>(moved.map(|now| (now, false)))
        };
        if !self.settle(clock.now_ms(), deadline).await? {
            return jump(self.clone()).await;
        }
        loop {
            let now = clock.now_ms();
            // Stop at each timer and, while messages leave, at each retry.
            let delivering = !self.integrations.is_empty();
            let next = self
                .with_store(move |store| {
                    let timer = store.next_timer()?;
                    let retry = if delivering {
                        store.next_delivery_due()?
                    } else {
                        None
                    };
                    Ok(timer.into_iter().chain(retry).min())
                })
                .await?;
            let stop = match next {
                Some(due) if due <= to_ms => due.max(now),
                _ => to_ms,
            };
            let runtime = self.clone();
            tokio::task::spawn_blocking(move || runtime.advance_clock(stop)).await??;
            if !self.settle(stop, deadline).await? {
                return jump(self.clone()).await;
            }
            if stop >= to_ms {
                return Ok(Some((stop.max(now), true)));
            }
        }
    }

    /// Wait until no timer is due at `now_ms`, no instance has a step to
    /// run and (with integrations set) no message is due or being sent,
    /// or `deadline` passes; returns whether it settled.
    pub async fn settle(&self, now_ms: u64, deadline: std::time::Instant) -> Result<bool> {
        loop {
            let store = self.store.clone();
            let delivering = !self.integrations.is_empty();
            let sending = delivering && !self.in_flight.is_empty();
            let settled = tokio::task::spawn_blocking(move || {
                Ok::<_, store::Error>(
                    store.settled(now_ms)?
                        && (!delivering
                            || store.next_delivery_due()?.is_none_or(|due| due > now_ms)),
                )
            })
            .await??;
            if settled && !sending && (!delivering || self.in_flight.is_empty()) {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Start the timer loop under supervision: if it panics, the panic
    /// is logged and counted as a host fault and the loop starts again
    /// after a second. Start it after [`Runtime::resume`].
    pub fn start_timers(self: &Arc<Self>) {
        self.supervise("the timer loop", |runtime| runtime.run_timers());
    }

    /// Run `task` for as long as the process lives: a panic is logged
    /// and counted as a host fault, and `task` starts again after a
    /// second.
    pub(super) fn supervise<F, Task>(self: &Arc<Self>, name: &'static str, task: F)
    where
        F: Fn(Arc<Self>) -> Task + Send + 'static,
        Task: std::future::Future<Output = ()> + Send + 'static,
    {
        let runtime = self.clone();
        self.tokio.spawn(async move {
            loop {
                match tokio::spawn(task(runtime.clone())).await {
                    Err(error) if error.is_panic() => {
                        metrics::counter!("journeyd_host_faults_total", "kind" => "panic")
                            .increment(1);
                        tracing::error!("{name} panicked; it starts again in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    // Cancelled: the process is stopping.
                    Err(_) | Ok(()) => return,
                }
            }
        });
    }

    /// Fire timers as they fall due, for as long as the runtime lives.
    /// Timers that fell due while the runtime was down fire at once.
    pub(super) async fn run_timers(self: Arc<Self>) {
        loop {
            let wait = match self.fire_due_timers().await {
                Ok(wait) => wait,
                Err(error) => {
                    tracing::error!(error = %error, "firing timers failed; retrying in 1 s");
                    Duration::from_secs(1)
                }
            };
            let _ = tokio::time::timeout(wait, self.timers_changed.notified()).await;
        }
    }

    /// Wake every instance whose timer is due; returns how long the loop
    /// may sleep before the next timer (the system clock) or until it is
    /// told the clock moved (a simulated clock).
    ///
    /// A timer that cannot be fired (its event is missing, the store
    /// fails) is recorded with the reason and tried again with backoff,
    /// never in a busy loop; one whose instance no longer waits for it is
    /// removed.
    pub(super) async fn fire_due_timers(self: &Arc<Self>) -> Result<Duration> {
        self.health.timer_loop_seen();
        loop {
            if self.is_draining() {
                // Due timers fire at the next start.
                return Ok(Duration::from_secs(3600));
            }
            let now = self.clock.now_ms();
            // Stuck timers are due too: read past them.
            let limit = TIMER_BATCH + self.health.stuck_timers().0;
            let store = self.store.clone();
            let due = tokio::task::spawn_blocking(move || {
                store.claim_due_timers(now, limit, TIMER_LEASE)
            })
            .await??;
            let scanned = due.len();
            // Stuck timers wait out their backoff unclaimed.
            let (backing_off, due): (Vec<_>, Vec<_>) = due
                .into_iter()
                .partition(|(due_ms, id)| self.health.timer_backing_off(*due_ms, *id));
            if !backing_off.is_empty() {
                self.with_store(move |store| {
                    backing_off
                        .iter()
                        .try_for_each(|(due_ms, id)| store.release_timer(*due_ms, *id))
                })
                .await?;
            }
            let mut woken = tokio::task::JoinSet::new();
            for (due_ms, id) in due {
                let runtime = self.clone();
                woken.spawn(async move { (due_ms, id, runtime.wake(id, due_ms, now).await) });
            }
            let mut fired = 0;
            while let Some(result) = woken.join_next().await {
                let (due_ms, id, result) = result?;
                match result {
                    Ok(()) => {
                        self.health.timer_fired(due_ms, id);
                        fired += 1;
                    }
                    Err(error) => {
                        self.with_store(move |store| store.release_timer(due_ms, id))
                            .await?;
                        let reason = crate::error_chain(&error);
                        tracing::error!(instance = %id, due_ms, %reason, "a timer could not be fired; it is tried again later");
                        metrics::counter!("journeyd_timers_stuck_total").increment(1);
                        self.health.timer_stuck(due_ms, id, reason);
                    }
                }
            }
            if scanned < limit || fired == 0 {
                break;
            }
        }
        let next = self.with_store(|store| store.next_timer()).await?;
        let now = self.clock.now_ms();
        let wait = match (next, self.clock.simulated()) {
            (_, Some(_)) | (None, None) => MAX_TIMER_SLEEP,
            (Some(due), None) => {
                Duration::from_millis(due.saturating_sub(now)).min(MAX_TIMER_SLEEP)
            }
        };
        if wait.is_zero() {
            // Only stuck timers are due: wait for the first of their next tries.
            let next_try = self.health.stuck_timers().1.unwrap_or(MAX_TIMER_SLEEP);
            return Ok(next_try.clamp(Duration::from_millis(10), MAX_TIMER_SLEEP));
        }
        Ok(wait)
    }

    /// Commit a waiting instance's wake-up, then run its next step.
    pub(super) async fn wake(
        self: &Arc<Self>,
        id: InstanceId,
        due_ms: u64,
        now: u64,
    ) -> Result<()> {
        let asleep = match self.with_store(move |store| store.instance(id)).await? {
            Some(asleep)
                if asleep.status == InstanceStatus::Waiting
                    && asleep.wake_at_ms == Some(due_ms) =>
            {
                asleep
            }
            stale => {
                // Gone, or woken some other way and its timer left over.
                tracing::warn!(instance = %id, due_ms, status = ?stale.map(|instance| instance.status), "removing a timer its instance no longer waits for");
                self.with_store(move |store| store.forget_timer(due_ms, id))
                    .await?;
                return Ok(());
            }
        };
        let event_id = asleep.current_event_id().to_owned();
        let Some(event) = self.with_store(move |store| store.event(&event_id)).await? else {
            return Err(Error::MissingEvent {
                instance: id,
                event: asleep.current_event_id().to_owned(),
            });
        };
        let target = match &asleep.waiting_for {
            Some(wait) => wait.on_timeout.clone(),
            None => asleep.current_step.clone().unwrap_or_default(),
        };
        let next = asleep.woken(target.clone(), self.is_step(&asleep, &target), None, now);
        let entry = HistoryEntry::Woke { at_ms: now, due_ms };
        let commit = InstanceCommit::leaving(next.clone(), entry, &asleep);
        metrics::histogram!("journeyd_timer_lateness_seconds")
            .record(now.saturating_sub(due_ms) as f64 / 1000.0);
        if self.committer.submit(commit).await? == Applied::Done {
            self.run_next(next, Arc::new(wit_event(&event)), None);
        } else {
            // Something else moved the instance first; if its timer is
            // still set, it may be claimed again.
            self.with_store(move |store| store.release_timer(due_ms, id))
                .await?;
        }
        Ok(())
    }

    /// Whether `target` is a step of `instance`'s journey version (else a
    /// terminal state).
    pub(super) fn is_step(&self, instance: &Instance, target: &str) -> bool {
        self.registry
            .journey(&instance.journey, instance.journey_version)
            .is_some_and(|journey| journey.step(target).is_some())
    }

    /// After a committed wake-up: run the instance's next step (its span
    /// under `trace`), or report it finished when the wait led to a
    /// terminal state.
    pub(super) fn run_next(
        &self,
        instance: Instance,
        event: Arc<host::Event>,
        trace: telemetry::Parent,
    ) {
        if instance.status.is_finished() {
            self.finish(&instance);
        } else {
            self.schedule(StepJob::new(instance, event).under(trace));
        }
    }
}
