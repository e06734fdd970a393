//! The funnel and experiments page: per step, how many instances reached
//! it, wait after it, or ended there, with the conversion from the step
//! before; for each split step, its variants side by side with the
//! difference in conversion and how confident that difference is (a
//! two-sided two-proportion z-test).

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::session::Viewer;
use super::{page, problem};
use crate::api::AppState;
use crate::executor::FunnelScope;
use crate::store::{NO_VARIANT, StepTally};

/// The page's filter form (empty fields are no condition).
#[derive(Deserialize, Default)]
pub(super) struct FunnelForm {
    #[serde(default)]
    version: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

impl FunnelForm {
    fn scope(&self) -> Result<FunnelScope, String> {
        let version = match self.version.trim() {
            "" => None,
            text => Some(
                text.parse::<u32>()
                    .map_err(|_| format!("`{text}` is not a version number."))?,
            ),
        };
        let time = |field: &str, text: &str| match text.trim() {
            "" => Ok(None),
            text => crate::clock::parse_time_ms(text).map(Some).ok_or_else(|| {
                format!("{field} `{text}` is not a time: give 2026-11-30 or 2026-11-30T09:00:00Z.")
            }),
        };
        Ok(FunnelScope {
            version,
            since_ms: time("From", &self.since)?,
            until_ms: time("To", &self.until)?,
        })
    }
}

/// One step's line.
pub(super) struct StepLine {
    step: String,
    split: bool,
    counts: StepTally,
    /// Reached here out of reached at the step before, as text.
    conversion: String,
    /// The bar's length: reached as a share of the most reached, percent.
    bar: u64,
}

/// A split step's variants compared.
pub(super) struct Experiment {
    step: String,
    variants: Vec<VariantLine>,
    /// Per step after the split: reached, per variant (in `variants` order).
    steps: Vec<(String, Vec<u64>)>,
}

/// One variant of a split step.
pub(super) struct VariantLine {
    variant: String,
    /// Instances sent down it.
    instances: u64,
    /// Of those, completed.
    completed: u64,
    conversion: String,
    /// Against the first variant: the difference in conversion and the
    /// confidence that it is not chance (none for the first).
    against_first: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "console/funnel.html")]
struct FunnelPage<'a> {
    viewer: Option<&'a Viewer>,
    name: String,
    form: FunnelForm,
    versions: Vec<u32>,
    error: Option<String>,
    instances: u64,
    purged: u64,
    lines: Vec<StepLine>,
    experiments: Vec<Experiment>,
}

/// `a / b` as a percentage with one decimal, or a dash when `b` is 0.
fn percent(a: u64, b: u64) -> String {
    match b {
        0 => "–".into(),
        _ => format!("{:.1}%", a as f64 * 100.0 / b as f64),
    }
}

/// `GET /journeys/{name}/funnel?version=&since=&until=`.
pub(super) async fn show(
    viewer: Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(form): Query<FunnelForm>,
) -> Response {
    let (_, versions) = state.runtime.journey_version(&name, 0);
    if versions == 0 {
        return problem(
            StatusCode::NOT_FOUND,
            &format!("There is no journey `{name}`."),
        );
    }
    let mut view = FunnelPage {
        viewer: Some(&viewer),
        name: name.clone(),
        versions: (1..=versions).collect(),
        error: None,
        instances: 0,
        purged: 0,
        lines: Vec::new(),
        experiments: Vec::new(),
        form,
    };
    let scope = match view.form.scope() {
        Ok(scope) => scope,
        Err(error) => {
            view.error = Some(error);
            let mut response = page(&view);
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let Some(journey) = state
        .runtime
        .journey_version(&name, scope.version.unwrap_or(versions))
        .0
    else {
        view.error = Some(format!("Journey `{name}` has versions 1 to {versions}."));
        let mut response = page(&view);
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let runtime = state.runtime.clone();
    let report = tokio::task::spawn_blocking(move || runtime.funnel(&name, &scope)).await;
    let report = match report {
        Ok(Ok(report)) => report,
        Ok(Err(error)) => return problem(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()),
        Err(error) => return problem(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()),
    };
    let splits: Vec<String> = journey
        .steps()
        .filter(|step| !step.definition.split.is_empty())
        .map(|step| step.definition.name.clone())
        .collect();
    view.instances = report.instances;
    view.purged = report.purged;
    view.lines = combined(&report.variants, &splits);
    view.experiments = splits
        .iter()
        .map(|split| experiment(split, &report.variants))
        .collect();
    page(&view)
}

/// Every variant's counts added up, step by step.
fn combined(
    variants: &BTreeMap<String, Vec<crate::executor::StepCounts>>,
    splits: &[String],
) -> Vec<StepLine> {
    let mut order: Vec<String> = Vec::new();
    let mut totals: BTreeMap<String, StepTally> = BTreeMap::new();
    for lines in variants.values() {
        for line in lines {
            if !order.contains(&line.step) {
                order.push(line.step.clone());
            }
            let total = totals.entry(line.step.clone()).or_default();
            total.reached += line.counts.reached;
            total.waiting += line.counts.waiting;
            total.completed_here += line.counts.completed_here;
            total.failed_here += line.counts.failed_here;
            total.exited_here += line.counts.exited_here;
            total.cancelled_here += line.counts.cancelled_here;
        }
    }
    let most = totals
        .values()
        .map(|tally| tally.reached)
        .max()
        .unwrap_or(0);
    let mut previous: Option<u64> = None;
    order
        .into_iter()
        .map(|step| {
            let counts = totals.remove(&step).unwrap_or_default();
            let conversion =
                previous.map_or_else(|| "–".into(), |before| percent(counts.reached, before));
            previous = Some(counts.reached);
            StepLine {
                split: splits.contains(&step),
                bar: (counts.reached * 100).checked_div(most).unwrap_or(0),
                step,
                counts,
                conversion,
            }
        })
        .collect()
}

/// The variants of split step `split` compared: conversion is completing
/// the journey, out of the instances the split sent down the variant.
fn experiment(
    split: &str,
    variants: &BTreeMap<String, Vec<crate::executor::StepCounts>>,
) -> Experiment {
    let mut compared = Vec::new();
    let mut after_split: Vec<String> = Vec::new();
    for (variant, lines) in variants {
        if variant == NO_VARIANT {
            continue;
        }
        let instances = lines
            .iter()
            .find(|line| line.step == split)
            .map_or(0, |line| line.counts.reached);
        let completed = lines.iter().map(|line| line.counts.completed_here).sum();
        let position = lines.iter().position(|line| line.step == split);
        if let Some(position) = position {
            for line in &lines[position + 1..] {
                if line.counts.reached > 0 && !after_split.contains(&line.step) {
                    after_split.push(line.step.clone());
                }
            }
        }
        compared.push((variant.clone(), instances, completed, lines));
    }
    let first = compared
        .first()
        .map(|(_, instances, completed, _)| (*instances, *completed));
    let lines = compared
        .iter()
        .enumerate()
        .map(|(index, (variant, instances, completed, _))| VariantLine {
            variant: variant.clone(),
            instances: *instances,
            completed: *completed,
            conversion: percent(*completed, *instances),
            against_first: first.filter(|_| index > 0).map(|(base_n, base_c)| {
                let difference = match (base_n, instances) {
                    (0, _) | (_, 0) => "–".to_owned(),
                    _ => format!(
                        "{:+.1} points",
                        (*completed as f64 / *instances as f64 - base_c as f64 / base_n as f64)
                            * 100.0
                    ),
                };
                let confidence = two_proportion_confidence(base_c, base_n, *completed, *instances)
                    .map_or_else(
                        || "not enough data".to_owned(),
                        |confidence| format!("{:.1}%", confidence * 100.0),
                    );
                (difference, confidence)
            }),
        })
        .collect();
    let steps = after_split
        .into_iter()
        .map(|step| {
            let reached = compared
                .iter()
                .map(|(_, _, _, lines)| {
                    lines
                        .iter()
                        .find(|line| line.step == step)
                        .map_or(0, |line| line.counts.reached)
                })
                .collect();
            (step, reached)
        })
        .collect();
    Experiment {
        step: split.to_owned(),
        variants: lines,
        steps,
    }
}

/// The confidence that two conversion rates differ (`c1` of `n1` against
/// `c2` of `n2`): one minus the two-sided p-value of the two-proportion
/// z-test with a pooled proportion. `None` when either group is empty or
/// nothing varies (every instance converted, or none did).
pub fn two_proportion_confidence(c1: u64, n1: u64, c2: u64, n2: u64) -> Option<f64> {
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (n1, n2) = (n1 as f64, n2 as f64);
    let (p1, p2) = (c1 as f64 / n1, c2 as f64 / n2);
    let pooled = (c1 + c2) as f64 / (n1 + n2);
    let error = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if error == 0.0 {
        return None;
    }
    let z = ((p2 - p1) / error).abs();
    Some(1.0 - 2.0 * (1.0 - standard_normal_cdf(z)))
}

/// Φ(x), the standard normal distribution function, by the error
/// function's approximation 7.1.26 of Abramowitz and Stegun (absolute
/// error under 1.5e-7).
fn standard_normal_cdf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * (x.abs() / std::f64::consts::SQRT_2));
    let polynomial = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - polynomial * (-(x * x) / 2.0).exp();
    match x >= 0.0 {
        true => 0.5 * (1.0 + erf),
        false => 0.5 * (1.0 - erf),
    }
}

#[cfg(test)]
mod tests {
    use super::{standard_normal_cdf, two_proportion_confidence};

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-4
    }

    #[test]
    fn the_normal_distribution_matches_its_tables() {
        assert!(close(standard_normal_cdf(0.0), 0.5));
        assert!(close(standard_normal_cdf(1.96), 0.975));
        assert!(close(standard_normal_cdf(-1.96), 0.025));
        assert!(close(standard_normal_cdf(1.0), 0.8413));
        assert!(close(standard_normal_cdf(3.0), 0.99865));
    }

    #[test]
    fn the_two_proportion_test_gives_textbook_confidence() {
        // 200 of 1000 against 250 of 1000: z = 2.68, p = 0.0074.
        let confidence = two_proportion_confidence(200, 1000, 250, 1000).expect("a figure");
        assert!(close(confidence, 0.9926), "{confidence}");
        // The same rates: no evidence of a difference.
        let same = two_proportion_confidence(50, 100, 50, 100).expect("a figure");
        assert!(close(same, 0.0), "{same}");
        // Symmetric in its groups.
        assert_eq!(
            two_proportion_confidence(10, 40, 20, 50),
            two_proportion_confidence(20, 50, 10, 40)
        );
        assert_eq!(two_proportion_confidence(0, 0, 5, 10), None);
        assert_eq!(two_proportion_confidence(10, 10, 10, 10), None);
    }
}
