//! The plugins and rollouts page: every plugin version with its runs,
//! failure rate and p50/p99; every tag with its rollout in progress (the
//! canary's share, runs and failures, the rollback rule); each plugin's
//! history of tag changes with their reasons; and, for an operator,
//! rolling a version out, moving its share, promoting it and rolling it
//! back, each confirmed first.

use std::sync::atomic::Ordering;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::session::{Operator, Viewer};
use super::{Confirm, off_blocking, page, problem, timestamp};
use crate::api::AppState;
use crate::store::{Canary, RollbackRule, Scope, TagRecord};

/// One plugin version.
struct VersionLine {
    version: u32,
    digest: String,
    size_kib: u64,
    pushed: String,
    runs: u64,
    failures: u64,
    failure_rate: String,
    p50: String,
    p99: String,
}

/// One tag, with its rollout.
struct TagLine {
    tag: String,
    version: u32,
    canary: Option<CanaryLine>,
    changed: String,
    reason: String,
}

/// A rollout in progress.
struct CanaryLine {
    version: u32,
    percent: u8,
    runs: u64,
    failures: u64,
    failure_rate: String,
    /// The rollback rule in words, if there is one.
    rule: Option<String>,
}

/// One change of a tag, newest first.
struct ChangeLine {
    at: String,
    tag: String,
    what: String,
    reason: String,
}

/// One plugin with all of the above.
struct PluginBlock {
    name: String,
    versions: Vec<VersionLine>,
    tags: Vec<TagLine>,
    changes: Vec<ChangeLine>,
}

#[derive(Template)]
#[template(path = "console/plugins.html")]
struct PluginsPage<'a> {
    viewer: Option<&'a Viewer>,
    plugins: Vec<PluginBlock>,
    admin: bool,
}

/// Microseconds as people read a step's time.
fn duration(us: Option<u64>) -> String {
    match us {
        None => "–".into(),
        Some(us) if us < 1_000 => format!("{us} µs"),
        Some(us) => format!("{:.1} ms", us as f64 / 1000.0),
    }
}

fn rate(failures: u64, runs: u64) -> String {
    match runs {
        0 => "–".into(),
        _ => format!("{:.1}%", failures as f64 * 100.0 / runs as f64),
    }
}

/// What a tag change did, in words.
fn change(record: &TagRecord) -> String {
    match &record.canary {
        None => format!("points at version {}", record.version),
        Some(canary) => format!(
            "version {}, rolling out version {} to {}%",
            record.version, canary.version, canary.percent
        ),
    }
}

fn rule(rule: &RollbackRule) -> String {
    format!(
        "roll back when over {:.1}% of at least {} runs fail",
        rule.max_error_rate * 100.0,
        rule.min_runs
    )
}

/// `GET /plugins`.
pub(super) async fn list(viewer: Viewer, State(state): State<AppState>) -> Response {
    let runtime = state.runtime.clone();
    let stats = runtime.version_stats();
    let tags = runtime.tags();
    let mut names: Vec<String> = stats
        .iter()
        .map(|(record, _)| record.name.clone())
        .collect();
    names.dedup(); // sorted by name already
    let reading = names.clone();
    let store = runtime.store().clone();
    let changes = off_blocking(move || {
        reading
            .iter()
            .map(|name| store.tag_changes(name))
            .collect::<crate::store::Result<Vec<_>>>()
    })
    .await;
    let changes = match changes {
        Ok(changes) => changes,
        Err(response) => return response,
    };
    let plugins = names
        .into_iter()
        .zip(changes)
        .map(|(name, changes)| PluginBlock {
            versions: stats
                .iter()
                .filter(|(record, _)| record.name == name)
                .map(|(record, stats)| VersionLine {
                    version: record.version,
                    digest: format!("sha256:{}", record.digest.get(..12).unwrap_or_default()),
                    size_kib: record.size.div_ceil(1024),
                    pushed: timestamp(record.pushed_at_ms),
                    runs: stats.runs,
                    failures: stats.failures,
                    failure_rate: rate(stats.failures, stats.runs),
                    p50: duration(stats.percentile_us(50.0)),
                    p99: duration(stats.percentile_us(99.0)),
                })
                .collect(),
            tags: tags
                .iter()
                .filter(|tag| tag.record.plugin == name)
                .map(|tag| {
                    let record = &tag.record;
                    TagLine {
                        tag: record.tag.clone(),
                        version: record.version,
                        canary: record.canary.as_ref().map(|canary| {
                            let runs = tag.canary_runs.load(Ordering::Relaxed);
                            let failures = tag.canary_failures.load(Ordering::Relaxed);
                            CanaryLine {
                                version: canary.version,
                                percent: canary.percent,
                                runs,
                                failures,
                                failure_rate: rate(failures, runs),
                                rule: canary.rollback.as_ref().map(rule),
                            }
                        }),
                        changed: timestamp(record.changed_at_ms),
                        reason: record.reason.clone(),
                    }
                })
                .collect(),
            changes: changes
                .iter()
                .rev()
                .map(|record| ChangeLine {
                    at: timestamp(record.changed_at_ms),
                    tag: record.tag.clone(),
                    what: change(record),
                    reason: record.reason.clone(),
                })
                .collect(),
            name,
        })
        .collect();
    page(&PluginsPage {
        viewer: Some(&viewer),
        admin: viewer.scope.allows(Scope::Admin),
        plugins,
    })
}

/// A rollout form: the version and share (`rollout`), and the reason.
#[derive(Deserialize, Default)]
pub(super) struct RolloutForm {
    #[serde(default)]
    version: String,
    #[serde(default)]
    percent: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /plugins/{name}/tags/{tag}/{action}`: `rollout` (start one, or
/// move its share), `promote` (the canary becomes the tag's version) or
/// `rollback` (end the rollout). Without `confirm`, the page that asks.
pub(super) async fn act(
    Operator(viewer): Operator,
    State(state): State<AppState>,
    Path((plugin, tag, action)): Path<(String, String, String)>,
    Form(form): Form<RolloutForm>,
) -> Response {
    let runtime = state.runtime.clone();
    let current = runtime
        .tags()
        .iter()
        .find(|candidate| candidate.record.plugin == plugin && candidate.record.tag == tag)
        .map(|found| found.record.clone());
    let Some(current) = current else {
        return problem(
            StatusCode::NOT_FOUND,
            &format!("Plugin `{plugin}` has no tag `{tag}`."),
        );
    };
    let reason = match form.reason.trim() {
        "" => format!("console: {action} by {}", viewer.name),
        given => format!("{given} (console, {})", viewer.name),
    };
    let bad = |message: String| problem(StatusCode::BAD_REQUEST, &message);
    let (what, change): (
        String,
        Box<dyn FnOnce() -> crate::executor::Result<TagRecord> + Send>,
    ) = match action.as_str() {
        "rollout" => {
            let version = match form.version.trim().parse::<u32>() {
                Ok(version) => version,
                Err(_) => return bad(format!("`{}` is not a version.", form.version)),
            };
            let percent = match form.percent.trim().trim_end_matches('%').parse::<u8>() {
                Ok(percent) if percent <= 100 => percent,
                _ => return bad(format!("`{}` is not a share from 0 to 100.", form.percent)),
            };
            let rollback = current
                .canary
                .as_ref()
                .filter(|canary| canary.version == version)
                .and_then(|canary| canary.rollback);
            let canary = Canary {
                version,
                percent,
                rollback,
            };
            let (plugin, tag, stable) = (plugin.clone(), tag.clone(), current.version);
            let runtime = runtime.clone();
            let reason = reason.clone();
            (
                format!("Roll version {version} of {plugin} out to {percent}% on tag {tag}"),
                Box::new(move || runtime.set_tag(&plugin, &tag, stable, Some(canary), &reason)),
            )
        }
        "promote" => {
            let Some(canary) = current.canary.as_ref() else {
                return bad(format!(
                    "Tag `{tag}` of `{plugin}` has no rollout to promote."
                ));
            };
            let (plugin, tag, version) = (plugin.clone(), tag.clone(), canary.version);
            let runtime = runtime.clone();
            let reason = reason.clone();
            (
                format!(
                    "Promote version {version} of {plugin}: tag {tag} points at it for every instance"
                ),
                Box::new(move || runtime.set_tag(&plugin, &tag, version, None, &reason)),
            )
        }
        "rollback" => {
            let Some(canary) = current.canary.as_ref() else {
                return bad(format!(
                    "Tag `{tag}` of `{plugin}` has no rollout to roll back."
                ));
            };
            let (plugin, tag) = (plugin.clone(), tag.clone());
            let runtime = runtime.clone();
            let reason = reason.clone();
            (
                format!(
                    "Roll back version {} of {plugin}: tag {tag} runs version {} for every instance",
                    canary.version, current.version
                ),
                Box::new(move || runtime.end_rollout(&plugin, &tag, reason)),
            )
        }
        _ => {
            return problem(
                StatusCode::NOT_FOUND,
                &format!("There is no action `{action}`: rollout, promote or rollback."),
            );
        }
    };
    if form.confirm != "yes" {
        return page(&Confirm {
            viewer: Some(&viewer),
            what,
            action: format!("/plugins/{plugin}/tags/{tag}/{action}"),
            fields: vec![
                ("version".into(), form.version.trim().to_owned()),
                ("percent".into(), form.percent.trim().to_owned()),
                ("reason".into(), form.reason.trim().to_owned()),
            ],
            reason: form.reason.trim().to_owned(),
            button: format!("Yes, {action}"),
            back: "/plugins".into(),
        });
    }
    match tokio::task::spawn_blocking(change).await {
        Ok(Ok(_)) => Redirect::to(&format!("/plugins#plugin-{plugin}")).into_response(),
        Ok(Err(error)) => problem(StatusCode::CONFLICT, &error.to_string()),
        Err(error) => problem(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    }
}
