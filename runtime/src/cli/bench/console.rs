//! `--scenario console`: how long the console's pages take to answer
//! with many instances in the store.
//!
//! 1. Fill: `--instances` enquiries (100,000) through the shipped enquiry
//!    journey. Every one is acknowledged, classified and handed over; two
//!    in three are then resolved (completed), the rest wait for their
//!    resolution. Their messages stay queued (no integration is set).
//! 2. Serve the console and the API in-process on a local port, as
//!    `journeyd serve` does, and sign in with an admin token.
//! 3. Ask each page `--page-rounds` times, one request at a time, after
//!    three unmeasured requests; report p50, p95 and the slowest, per
//!    page. The time is the whole request over loopback, so it bounds
//!    the server's time from above.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;
use tokio::sync::Semaphore;

use super::BenchArgs;
use super::load::{enquiry_event, seed_customers};
use super::support::{default_plugin_dir, percentile, read_component, round2};
use journey_runtime::api::{self, AppState};
use journey_runtime::clock::{Clock as _, SystemClock};
use journey_runtime::executor::{IncomingEvent, Runtime, Settings};
use journey_runtime::store::sled::{SledOptions, SledStore};
use journey_runtime::store::{InstanceFilter, InstanceId, InstanceStatus, Scope};

const PLUGINS: [&str; 6] = [
    "acknowledge",
    "classify",
    "handover",
    "sla",
    "escalate",
    "resolve",
];

/// The cookie the console keeps a signed-in token in.
const SESSION_COOKIE: &str = "journeyd_console";

/// Events in flight while filling.
const IN_FLIGHT: usize = 64;

/// The resolution of enquiry `n` of the fill.
fn resolution(n: usize) -> IncomingEvent {
    let enquiry = enquiry_event("fill", n);
    IncomingEvent {
        id: format!("resolved-{n}"),
        kind: "enquiry.resolved".into(),
        customer: enquiry.customer,
        data: serde_json::value::to_raw_value(&json!({
            "enquiry_id": format!("q-fill-{n}"),
            "resolution": "Refunded the duplicate payment.",
            "agent": "Sam",
        }))
        .expect("a JSON literal serializes"),
    }
}

/// Send `events` with [`IN_FLIGHT`] at once, then wait until every step
/// they caused has run.
async fn send_all(
    runtime: &Arc<Runtime>,
    what: &str,
    events: impl ExactSizeIterator<Item = IncomingEvent>,
) -> anyhow::Result<Vec<InstanceId>> {
    let total = events.len();
    let started = Instant::now();
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for (n, event) in events.enumerate() {
        let permit = in_flight.clone().acquire_owned().await?;
        let runtime = runtime.clone();
        tasks.spawn(async move {
            let _permit = permit;
            runtime.ingest(event).await
        });
        if (n + 1) % (total / 5).max(1) == 0 {
            eprintln!(
                "  … {what}: {} / {total} sent ({:.0} s)",
                n + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let mut started_instances = Vec::with_capacity(total);
    while let Some(receipt) = tasks.join_next().await {
        started_instances.extend(receipt??.instances);
    }
    let store = runtime.store().clone();
    loop {
        let now = SystemClock.now_ms();
        let journal = store.clone();
        if tokio::task::spawn_blocking(move || journal.settled(now)).await?? {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "  … {what}: {total} done ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(started_instances)
}

/// One instance of `status`, the first found.
fn one_instance(runtime: &Runtime, status: InstanceStatus) -> anyhow::Result<InstanceId> {
    let found = runtime.store().instances(&InstanceFilter {
        status: Some(status),
        limit: 1,
        ..InstanceFilter::default()
    })?;
    found
        .first()
        .map(|instance| instance.id)
        .with_context(|| format!("no {} instance", status.label()))
}

/// The counts the pages read (kept as commits land) say what the fill
/// did: every enquiry counted once, the unresolved ones waiting.
fn counts_are_as_filled(runtime: &Runtime, fill: u64, waiting: u64) -> anyhow::Result<()> {
    let funnel = runtime.funnel("enquiry", &Default::default())?;
    let standing: u64 = runtime
        .store()
        .standing(Some("enquiry"))?
        .iter()
        .filter_map(|counts| counts.at.get("await_resolution"))
        .sum();
    if funnel.instances != fill || standing != waiting {
        bail!(
            "the counts do not match the fill: the funnel counts {} of {fill} enquiries, \
             {standing} stand at await_resolution where {waiting} wait",
            funnel.instances
        );
    }
    Ok(())
}

/// `--scenario console`.
pub async fn console(args: &BenchArgs) -> anyhow::Result<()> {
    let fill = args.instances.max(3);
    let rounds = args.page_rounds.max(1);
    let temporary = tempfile::tempdir()?;
    let data = args.data.as_deref().unwrap_or(temporary.path()).to_owned();
    let store = Arc::new(SledStore::open(&data, &SledOptions::default())?);
    let runtime = Runtime::new(store, Arc::new(SystemClock), Settings::default())?;
    let dir = args.plugins.clone().unwrap_or_else(default_plugin_dir);
    for name in PLUGINS {
        runtime
            .push_plugin(name, read_component(&dir, &format!("plugin_{name}.wasm"))?)
            .await?;
    }
    let source = std::fs::read_to_string(&args.journey)
        .with_context(|| format!("reading {}", args.journey.display()))?;
    runtime.deploy_journey(&args.journey.display().to_string(), &source)?;
    seed_customers(&runtime)?;
    println!(
        "bench: console — {fill} enquiries in the store (two in three resolved), each page asked {rounds} times"
    );

    // 1. Fill.
    let filling = Instant::now();
    send_all(
        &runtime,
        "enquiries",
        (0..fill).map(|n| enquiry_event("fill", n)),
    )
    .await?;
    let resolved: Vec<IncomingEvent> = (0..fill).filter(|n| n % 3 != 0).map(resolution).collect();
    let waiting_count = (fill - resolved.len()) as u64;
    send_all(&runtime, "resolutions", resolved.into_iter()).await?;
    let fill_s = filling.elapsed().as_secs_f64();
    counts_are_as_filled(&runtime, fill as u64, waiting_count)?;
    let completed = one_instance(&runtime, InstanceStatus::Completed)?;
    let waiting = one_instance(&runtime, InstanceStatus::Waiting)?;

    // 2. Serve, and sign in.
    let (_, token) = runtime.create_token("bench-console", Scope::Admin)?;
    let state = AppState {
        runtime: runtime.clone(),
        metrics: None,
    };
    let app = journey_runtime::console::router(state.clone()).merge(api::router(state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()?;

    // 3. Ask each page.
    let pages = [
        "/journeys".to_owned(),
        "/journeys/enquiry".to_owned(),
        "/journeys/enquiry/funnel".to_owned(),
        "/instances".to_owned(),
        "/instances?journey=enquiry&step=await_resolution".to_owned(),
        "/instances?customer=c-7".to_owned(),
        "/instances?status=failed".to_owned(),
        format!("/instances/{completed}"),
        format!("/instances/{waiting}"),
        "/deliveries".to_owned(),
        "/deliveries?status=dead".to_owned(),
        "/customers/c-7".to_owned(),
        "/plugins".to_owned(),
    ];
    let cookie = format!("{SESSION_COOKIE}={token}");
    let mut figures = serde_json::Map::new();
    println!(
        "  filled in {fill_s:.0} s; page times over {rounds} requests (ms):\n  {:<52} {:>8} {:>8} {:>8}",
        "page", "p50", "p95", "max"
    );
    let mut worst_p95: f64 = 0.0;
    for page in &pages {
        let mut samples = Vec::with_capacity(rounds);
        for round in 0..rounds + 3 {
            let asked = Instant::now();
            let response = client
                .get(format!("{url}{page}"))
                .header("Cookie", &cookie)
                .send()
                .await?;
            let status = response.status();
            let body = response.bytes().await?;
            let took = asked.elapsed().as_secs_f64() * 1000.0;
            if !status.is_success() {
                bail!(
                    "{page} answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            if round >= 3 {
                samples.push(took);
            }
        }
        samples.sort_by(f64::total_cmp);
        let (p50, p95, max) = (
            percentile(&samples, 50.0),
            percentile(&samples, 95.0),
            samples.last().copied().unwrap_or_default(),
        );
        worst_p95 = worst_p95.max(p95);
        println!("  {page:<52} {p50:>8.1} {p95:>8.1} {max:>8.1}");
        figures.insert(
            page.clone(),
            json!({ "p50_ms": round2(p50), "p95_ms": round2(p95), "max_ms": round2(max) }),
        );
    }
    server.abort();
    println!("  slowest page p95: {worst_p95:.1} ms (target: under 100 ms at 100,000 instances)");
    println!(
        "{}",
        json!({
            "scenario": "console",
            "instances": fill,
            "rounds": rounds,
            "fill_s": round2(fill_s),
            "worst_p95_ms": round2(worst_p95),
            "pages": figures,
        })
    );
    Ok(())
}
