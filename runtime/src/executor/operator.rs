//! What an operator may do to instances: retry a failed one (optionally on
//! another plugin version), skip one to a named step, or cancel one; each
//! for one instance or in bulk for a journey (and step), with a dry run
//! that only counts.
//!
//! Every action is a commit with its own history entry, checked against
//! the instance's history slot like a step: if a step of the instance
//! commits first, the action is checked again from where the instance now
//! is. This module decides which instances an action applies to; the
//! store and the committer do the rest.

use std::sync::Arc;

use serde::Serialize;

use super::{Error, Result, Runtime, StepJob, wit_event};
use crate::journey::PluginRef;
use crate::store::{
    Applied, HistoryEntry, Instance, InstanceCommit, InstanceFilter, InstanceId, InstanceStatus,
};

/// Tries of an action on an instance whose steps keep committing first.
const ACTION_ATTEMPTS: usize = 20;
/// Instances read per page by a bulk action.
const PAGE: usize = 500;

/// An operator's action on an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Run the step a failed instance failed at again, as a new step
    /// execution (attempt 1, a new idempotency key).
    Retry {
        /// Run this plugin (`name`, `name@version`, `name:tag`) for that
        /// step instead of the one the journey names.
        plugin: Option<String>,
    },
    /// Move a failed or waiting instance on to step `to` (or a terminal
    /// state, which completes it).
    Skip {
        /// Where it continues.
        to: String,
    },
    /// End a running, waiting or failed instance as cancelled.
    Cancel,
}

impl Action {
    /// The action as the API spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Retry { .. } => "retry",
            Action::Skip { .. } => "skip",
            Action::Cancel => "cancel",
        }
    }

    /// Whether it applies to an instance with this status.
    pub fn applies_to(&self, status: InstanceStatus) -> bool {
        match self {
            Action::Retry { .. } => status == InstanceStatus::Failed,
            Action::Skip { .. } => {
                matches!(status, InstanceStatus::Failed | InstanceStatus::Waiting)
            }
            Action::Cancel => matches!(
                status,
                InstanceStatus::Running | InstanceStatus::Waiting | InstanceStatus::Failed
            ),
        }
    }

    fn statuses(&self) -> &'static str {
        match self {
            Action::Retry { .. } => "failed",
            Action::Skip { .. } => "failed or waiting",
            Action::Cancel => "running, waiting or failed",
        }
    }
}

/// What a bulk action did (or, on a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct BulkOutcome {
    /// The action.
    pub action: &'static str,
    /// Whether nothing was changed.
    pub dry_run: bool,
    /// Instances the action applies to.
    pub matched: usize,
    /// Instances it changed (none on a dry run).
    pub changed: Vec<InstanceId>,
    /// Instances it could not change, with why (they moved on meanwhile).
    pub refused: Vec<(InstanceId, String)>,
}

/// The step an instance is at: the one it runs next, or the last one that
/// ran (or failed, or put it to sleep).
fn step_at(instance: &Instance, history: &[HistoryEntry]) -> Option<String> {
    if instance.status == InstanceStatus::Running {
        return instance.current_step.clone();
    }
    history.iter().rev().find_map(|entry| match entry {
        HistoryEntry::StepRan(step) | HistoryEntry::StepFailed(step) => Some(step.step.clone()),
        HistoryEntry::Split { step, .. } => Some(step.clone()),
        _ => None,
    })
}

impl Runtime {
    /// Apply `action` to instance `id`; returns it as it is afterwards.
    pub async fn act_on_instance(
        self: &Arc<Self>,
        id: InstanceId,
        action: &Action,
        reason: &str,
    ) -> Result<Instance> {
        self.check_action(action, None)?;
        for _ in 0..ACTION_ATTEMPTS {
            let (instance, history) = self.instance_with_history(id).await?;
            let commit = self.action_commit(&instance, &history, action, reason)?;
            let next = commit.instance.clone();
            if self.committer.submit(commit).await? == Applied::Done {
                tracing::info!(instance = %id, action = action.name(), reason, "operator action");
                self.after_action(next.clone(), &instance).await?;
                return Ok(next);
            }
            // A step committed first: look again from where it is now.
            tokio::task::yield_now().await;
        }
        Err(Error::InvalidAction {
            instance: id,
            reason: "it kept moving on; try again".into(),
        })
    }

    /// Apply `action` to every instance of `journey` it applies to (only
    /// those at `step`, when given). A dry run only counts them.
    pub async fn act_on_journey(
        self: &Arc<Self>,
        journey: &str,
        step: Option<&str>,
        action: &Action,
        reason: &str,
        dry_run: bool,
    ) -> Result<BulkOutcome> {
        self.known_journey(journey)?;
        if let Some(step) = step {
            super::check_name("step", step)?;
        }
        self.check_action(action, Some(journey))?;
        let mut matched = Vec::new();
        let mut after = None;
        loop {
            let store = self.store.clone();
            let filter = InstanceFilter {
                journey: Some(journey.to_owned()),
                status: None,
                after,
                limit: PAGE,
                ..InstanceFilter::default()
            };
            let page = tokio::task::spawn_blocking(move || {
                let page = store.instances(&filter)?;
                page.into_iter()
                    .map(|instance| {
                        let history = store.history(instance.id)?;
                        Ok((instance, history))
                    })
                    .collect::<crate::store::Result<Vec<_>>>()
            })
            .await??;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.id);
            let full = page.len() == PAGE;
            for (instance, history) in page {
                let at_step =
                    step.is_none_or(|step| step_at(&instance, &history).as_deref() == Some(step));
                if action.applies_to(instance.status) && at_step {
                    matched.push(instance.id);
                }
            }
            if !full {
                break;
            }
        }
        let mut outcome = BulkOutcome {
            action: action.name(),
            dry_run,
            matched: matched.len(),
            changed: Vec::new(),
            refused: Vec::new(),
        };
        if dry_run {
            return Ok(outcome);
        }
        for id in matched {
            match self.act_on_instance(id, action, reason).await {
                Ok(_) => outcome.changed.push(id),
                Err(error @ (Error::InvalidAction { .. } | Error::UnknownStep { .. })) => {
                    outcome.refused.push((id, error.to_string()));
                }
                Err(error) => return Err(error),
            }
        }
        Ok(outcome)
    }

    /// Refuse an action that can apply to no instance: an unknown plugin,
    /// or (for a bulk skip) a step the journey's versions do not have.
    fn check_action(&self, action: &Action, journey: Option<&str>) -> Result<()> {
        match action {
            Action::Retry {
                plugin: Some(plugin),
            } => {
                let reference = PluginRef::parse(plugin).ok_or_else(|| Error::InvalidId {
                    field: "plugin",
                    value: plugin.chars().take(64).collect(),
                    rule: "`name`, `name@version` or `name:tag`",
                })?;
                if !self.registry.exists(&reference) {
                    return Err(Error::UnknownPlugin(plugin.clone()));
                }
                Ok(())
            }
            Action::Skip { to } => {
                let Some(journey) = journey else {
                    return Ok(());
                };
                let versions = self.registry.journey_versions(journey);
                let known = (1..=versions).any(|version| {
                    self.registry
                        .journey(journey, version)
                        .is_some_and(|definition| definition.leads_to(to))
                });
                if known {
                    Ok(())
                } else {
                    Err(Error::UnknownStep {
                        journey: journey.to_owned(),
                        step: to.clone(),
                    })
                }
            }
            Action::Retry { plugin: None } | Action::Cancel => Ok(()),
        }
    }

    pub(super) async fn instance_with_history(
        &self,
        id: InstanceId,
    ) -> Result<(Instance, Vec<HistoryEntry>)> {
        let store = self.store.clone();
        let (instance, history) = tokio::task::spawn_blocking(move || {
            Ok::<_, crate::store::Error>((store.instance(id)?, store.history(id)?))
        })
        .await??;
        let instance = instance.ok_or(Error::UnknownInstance(id))?;
        Ok((instance, history))
    }

    /// The commit that applies `action` to `instance`, or why it does not
    /// apply.
    fn action_commit(
        &self,
        instance: &Instance,
        history: &[HistoryEntry],
        action: &Action,
        reason: &str,
    ) -> Result<InstanceCommit> {
        let refuse = |why: String| Error::InvalidAction {
            instance: instance.id,
            reason: why,
        };
        if !action.applies_to(instance.status) {
            return Err(refuse(format!(
                "it is {}; `{}` applies to {} instances",
                instance.status.label(),
                action.name(),
                action.statuses()
            )));
        }
        let journey = self
            .registry
            .journey(&instance.journey, instance.journey_version)
            .ok_or_else(|| Error::UnknownJourneyVersion {
                journey: instance.journey.clone(),
                version: instance.journey_version,
            })?;
        let now = self.clock.now_ms();
        let at = step_at(instance, history);
        let reason = reason.to_owned();
        let (next, entry) = match action {
            Action::Retry { plugin } => {
                let step = at
                    .filter(|step| journey.step(step).is_some())
                    .ok_or_else(|| refuse("the step it failed at is not in its journey".into()))?;
                let next = instance.retried(step.clone(), plugin.clone(), now);
                let entry = HistoryEntry::Retried {
                    at_ms: now,
                    step,
                    plugin: plugin.clone(),
                    reason,
                };
                (next, entry)
            }
            Action::Skip { to } => {
                if !journey.leads_to(to) {
                    return Err(Error::UnknownStep {
                        journey: instance.journey.clone(),
                        step: to.clone(),
                    });
                }
                let next = instance.skipped_to(to.clone(), self.is_step(instance, to), now);
                let entry = HistoryEntry::Skipped {
                    at_ms: now,
                    from_step: at,
                    to_step: to.clone(),
                    reason,
                };
                (next, entry)
            }
            Action::Cancel => {
                let entry = HistoryEntry::Cancelled {
                    at_ms: now,
                    step: at,
                    reason,
                };
                (instance.cancelled(now), entry)
            }
        };
        Ok(InstanceCommit::leaving(next, entry, instance))
    }

    /// After an action committed: run the instance's step, or report it
    /// finished.
    pub(super) async fn after_action(
        self: &Arc<Self>,
        next: Instance,
        before: &Instance,
    ) -> Result<()> {
        self.health.host_fault_over(next.id);
        if next.status != InstanceStatus::Running {
            if next.status.is_finished() {
                self.finish(&next);
            }
            return Ok(());
        }
        let store = self.store.clone();
        let event_id = before.current_event_id().to_owned();
        let event = tokio::task::spawn_blocking(move || store.event(&event_id))
            .await??
            .ok_or_else(|| Error::MissingEvent {
                instance: next.id,
                event: before.current_event_id().to_owned(),
            })?;
        self.schedule(StepJob::new(next, Arc::new(wit_event(&event))));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_action_applies_to_the_statuses_it_names() {
        use InstanceStatus::*;
        let all = [Running, Waiting, Completed, Failed, Exited, Cancelled];
        let applies = |action: Action| -> Vec<InstanceStatus> {
            all.into_iter()
                .filter(|status| action.applies_to(*status))
                .collect()
        };
        assert_eq!(applies(Action::Retry { plugin: None }), [Failed]);
        assert_eq!(applies(Action::Skip { to: "x".into() }), [Waiting, Failed]);
        assert_eq!(applies(Action::Cancel), [Running, Waiting, Failed]);
    }
}
