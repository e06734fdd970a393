//! Recovery: resuming instances at start, running a step again after a
//! host fault, and the readiness report.

use super::*;

impl Runtime {
    /// Restart every instance that has a step to run. Their interrupted
    /// step runs again as attempt 2 with the same idempotency key.
    ///
    /// Call it once at start, before the timer loop runs and before
    /// events are taken: it reads running instances one by one, and an
    /// instance that moved on meanwhile would be scheduled twice.
    pub async fn resume(self: &Arc<Self>) -> Result<usize> {
        let store = self.store.clone();
        let running = tokio::task::spawn_blocking(move || store.running_instances()).await??;
        self.resume_instances(running).await
    }

    /// Restart `running` (instances that had a step to run when their
    /// runner stopped): each interrupted step runs again as the next
    /// attempt, with the same idempotency key.
    pub(super) async fn resume_instances(
        self: &Arc<Self>,
        running: Vec<Instance>,
    ) -> Result<usize> {
        let count = running.len();
        let now = self.clock.now_ms();
        // Each interrupted attempt is recorded (all in one group commit),
        // so the next one counts on.
        let mut restarts = tokio::task::JoinSet::new();
        for instance in running {
            let Some(step) = instance
                .current_step
                .clone()
                .filter(|_| instance.status == InstanceStatus::Running)
            else {
                continue;
            };
            let mut next = instance.clone();
            next.restarted(instance.next_attempt(), now);
            let entry = HistoryEntry::Restarted {
                at_ms: now,
                step,
                attempt: instance.next_attempt(),
            };
            let commit = InstanceCommit::new(next.clone(), entry);
            let committer = self.committer.clone();
            restarts.spawn(async move {
                let applied = committer.submit(commit).await;
                (next, applied)
            });
        }
        while let Some(restarted) = restarts.join_next().await {
            let (instance, applied) = restarted?;
            if applied? != Applied::Done {
                continue;
            }
            let id = instance.id;
            match self.store.event(instance.current_event_id()) {
                Ok(Some(event)) => {
                    self.schedule(StepJob::new(instance, Arc::new(wit_event(&event))))
                }
                Ok(None) => self.host_fault(
                    id,
                    1,
                    format!("its event `{}` is missing", instance.current_event_id()),
                ),
                Err(error) => self.host_fault(
                    id,
                    1,
                    format!(
                        "its event could not be read: {}",
                        crate::error_chain(&error)
                    ),
                ),
            }
        }
        Ok(count)
    }

    /// Starting is over: events may come in.
    pub fn set_ready(&self) {
        self.health.set_ready();
    }

    /// Whether the runtime has finished starting.
    pub fn is_started(&self) -> bool {
        self.health.is_started()
    }

    /// What `/readyz` answers: whether the runtime can take events and
    /// run steps now, and what stands in the way.
    pub fn readiness(&self) -> Readiness {
        self.health
            .report(self.committer.health().failing(), self.store.not_serving())
    }

    /// A host fault met `instance`'s step (it did not run, or its
    /// attempt's effects were dropped): nothing was committed for the
    /// customer. Logged and counted; after a backoff that grows with each
    /// fault in a row, the instance is read again and, if it still has
    /// that step to run, the step runs again as attempt `attempt + 1`.
    pub(super) fn host_fault(self: &Arc<Self>, id: InstanceId, attempt: u32, reason: String) {
        metrics::counter!("journeyd_host_faults_total", "kind" => "step").increment(1);
        let wait = self.health.host_fault(id, reason.clone());
        tracing::warn!(instance = %id, %reason, retry_in_ms = wait.as_millis() as u64, "host fault: the step runs again; the instance does not fail");
        let runtime = self.clone();
        self.tokio.spawn(async move {
            tokio::time::sleep(wait).await;
            let rerun = runtime.clone();
            if let Err(error) =
                tokio::task::spawn_blocking(move || rerun.run_again(id, attempt + 1)).await
            {
                runtime.host_fault(id, attempt, format!("running it again failed: {error}"));
            }
        });
    }

    /// After a host fault: schedule `id`'s step again if it still has one
    /// to run (it may have moved on: a duplicate run is discarded as stale).
    pub(super) fn run_again(self: &Arc<Self>, id: InstanceId, attempt: u32) {
        // A host fault is not recorded, so the run it spoiled is counted
        // here: the plugin may have started.
        let instance = match self.store.instance(id) {
            Ok(Some(instance)) => instance,
            Ok(None) => {
                self.health.host_fault_over(id);
                return;
            }
            Err(error) => {
                let reason = format!(
                    "the instance could not be read: {}",
                    crate::error_chain(&error)
                );
                return self.host_fault(id, attempt - 1, reason);
            }
        };
        if instance.status != InstanceStatus::Running || instance.current_step.is_none() {
            self.health.host_fault_over(id);
            return;
        }
        match self.store.event(instance.current_event_id()) {
            Ok(Some(event)) => {
                let mut job = StepJob::new(instance, Arc::new(wit_event(&event)));
                job.attempt = job.attempt.max(attempt);
                self.schedule(job);
            }
            Ok(None) => {
                let reason = format!("its event `{}` is missing", instance.current_event_id());
                self.host_fault(id, attempt - 1, reason);
            }
            Err(error) => {
                let reason = format!(
                    "its event could not be read: {}",
                    crate::error_chain(&error)
                );
                self.host_fault(id, attempt - 1, reason);
            }
        }
    }
}
