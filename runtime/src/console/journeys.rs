//! The journeys pages: every journey with its versions, and one journey
//! version's steps and transitions with how many instances stand at each
//! step now.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::graph::{Graph, StepNode, layout};
use super::session::Viewer;
use super::{page, problem, timestamp};
use crate::api::AppState;
use crate::store::Store;

/// Unfinished instances (running or waiting) by journey, version and the
/// step they stand at, as the store keeps them.
fn standing(store: &dyn Store, journey: Option<&str>) -> crate::store::Result<Standing> {
    let mut standing = Standing::default();
    for counts in store.standing(journey)? {
        for (step, count) in counts.at {
            standing
                .at
                .insert((counts.journey.clone(), counts.version, step), count);
        }
    }
    Ok(standing)
}

/// Unfinished instances by (journey, version, step).
#[derive(Default)]
struct Standing {
    at: BTreeMap<(String, u32, String), u64>,
}

impl Standing {
    fn of_journey(&self, journey: &str) -> u64 {
        self.at
            .iter()
            .filter(|((name, _, _), _)| name == journey)
            .map(|(_, count)| count)
            .sum()
    }

    fn at_step(&self, journey: &str, version: u32, step: &str) -> u64 {
        self.at
            .get(&(journey.to_owned(), version, step.to_owned()))
            .copied()
            .unwrap_or(0)
    }
}

/// One journey in the list.
struct JourneyRow {
    name: String,
    latest: u32,
    deployed_at: String,
    active: u64,
}

#[derive(Template)]
#[template(path = "console/journeys.html")]
struct JourneysPage<'a> {
    viewer: Option<&'a Viewer>,
    journeys: Vec<JourneyRow>,
}

/// `GET /journeys`.
pub(super) async fn list(viewer: Viewer, State(state): State<AppState>) -> Response {
    let runtime = state.runtime.clone();
    let rows = tokio::task::spawn_blocking(move || {
        let store = runtime.store();
        let standing = standing(&**store, None)?;
        let mut latest: BTreeMap<String, (u32, u64)> = BTreeMap::new();
        for record in store.journeys()? {
            let entry = latest.entry(record.name).or_default();
            if record.version > entry.0 {
                *entry = (record.version, record.deployed_at_ms);
            }
        }
        Ok::<_, crate::store::Error>(
            latest
                .into_iter()
                .map(|(name, (version, deployed_at_ms))| JourneyRow {
                    active: standing.of_journey(&name),
                    name,
                    latest: version,
                    deployed_at: timestamp(deployed_at_ms),
                })
                .collect(),
        )
    })
    .await;
    match rows {
        Ok(Ok(journeys)) => page(&JourneysPage {
            viewer: Some(&viewer),
            journeys,
        }),
        Ok(Err(error)) => problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
        Err(error) => problem(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    }
}

/// Which version to show.
#[derive(Deserialize)]
pub(super) struct VersionQuery {
    version: Option<u32>,
}

/// A transition out of a step.
struct Transition {
    name: String,
    target: String,
    /// Whether the target is a terminal state, not a step.
    terminal: bool,
}

/// A step as the journey page shows it.
struct StepRow {
    name: String,
    /// The plugin reference, or the variants of a split step.
    runs: String,
    split: bool,
    /// The event data key a waiting step matches on, when it waits.
    correlate_on: Option<String>,
    transitions: Vec<Transition>,
    standing: u64,
    start: bool,
}

#[derive(Template)]
#[template(path = "console/journey.html")]
struct JourneyPage<'a> {
    viewer: Option<&'a Viewer>,
    name: String,
    version: u32,
    versions: Vec<u32>,
    description: String,
    trigger: String,
    correlation_key: String,
    terminal: Vec<String>,
    exits: Vec<String>,
    retention: String,
    steps: Vec<StepRow>,
    graph: Graph,
    active: u64,
}

/// `GET /journeys/{name}?version=N` (the latest without one).
pub(super) async fn show(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<VersionQuery>,
) -> Response {
    let (_, versions) = state.runtime.journey_version(&name, 0);
    if versions == 0 {
        return problem(
            StatusCode::NOT_FOUND,
            &format!("There is no journey `{name}`."),
        );
    }
    let version = query.version.unwrap_or(versions);
    let Some(journey) = state.runtime.journey_version(&name, version).0 else {
        return problem(
            StatusCode::NOT_FOUND,
            &format!("Journey `{name}` has versions 1 to {versions}, not {version}."),
        );
    };
    let runtime = state.runtime.clone();
    let journey_name = name.clone();
    let standing =
        tokio::task::spawn_blocking(move || standing(&**runtime.store(), Some(&journey_name)))
            .await;
    let standing = match standing {
        Ok(Ok(standing)) => standing,
        Ok(Err(error)) => return problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
        Err(error) => return problem(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    };
    let definition = &journey.definition;
    let steps: Vec<StepRow> = journey
        .steps()
        .map(|step| {
            let written = &step.definition;
            let split = !written.split.is_empty();
            StepRow {
                name: written.name.clone(),
                runs: match split {
                    true => written
                        .split
                        .iter()
                        .map(|(variant, weight)| format!("{variant} {weight}%"))
                        .collect::<Vec<_>>()
                        .join(" · "),
                    false => written.plugin.clone(),
                },
                split,
                correlate_on: written.correlate_on.clone(),
                transitions: written
                    .on
                    .iter()
                    .map(|(transition, target)| Transition {
                        name: transition.clone(),
                        target: target.clone(),
                        terminal: definition.terminal.contains(target),
                    })
                    .collect(),
                standing: standing.at_step(&name, version, &written.name),
                start: written.name == journey.start,
            }
        })
        .collect();
    let nodes: Vec<StepNode> = steps
        .iter()
        .map(|step: &StepRow| StepNode {
            name: step.name.clone(),
            runs: step.runs.clone(),
            standing: step.standing,
            kind: match (step.split, step.correlate_on.is_some()) {
                (true, _) => "split",
                (false, true) => "wait",
                (false, false) => "step",
            },
            on: step
                .transitions
                .iter()
                .map(|transition| (transition.name.clone(), transition.target.clone()))
                .collect(),
        })
        .collect();
    let exits: Vec<String> = definition
        .exit
        .iter()
        .map(|exit| exit.event.clone())
        .collect();
    let graph = layout(&nodes, &journey.start, &definition.terminal, &exits);
    page(&JourneyPage {
        viewer: Some(&viewer),
        graph,
        active: standing.of_journey(&name),
        versions: (1..=versions).collect(),
        description: definition.description.clone(),
        trigger: definition.trigger.event.clone(),
        correlation_key: definition.trigger.correlation_key.clone(),
        terminal: definition.terminal.clone(),
        exits,
        retention: definition
            .retention
            .clone()
            .unwrap_or_else(|| "the server's default".into()),
        steps,
        name,
        version,
    })
}
