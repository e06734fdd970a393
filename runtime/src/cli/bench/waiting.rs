//! `journeyd bench --scenario timers` and `--scenario resume`: waiting at
//! scale.
//!
//! `timers` writes N instances that each sleep on a durable timer straight
//! into a store (the records the runtime commits for an instance whose
//! first step slept; ingesting them through the sandbox would only measure
//! the ingest path, which `--scenario enquiry` does), starts
//! `journeyd serve` on that store with its clock set just before the first
//! timer, and measures the restart, the idle memory with every timer
//! pending, and how late each timer fires as they fall due at the given
//! rate. `resume` parks instances waiting for an event in-process, then
//! sends the matching events at a steady rate and measures from each
//! event's acceptance to the commit of the step it resumed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;
use tokio::sync::oneshot;

use super::BenchArgs;
use super::support::{
    Metrics, default_plugin_dir, dir_size, percentile, read_component, round2, rss_mib,
    seed_plugin, start_serve,
};
use journey_runtime::clock::{Clock, SystemClock};
use journey_runtime::executor::{IncomingEvent, Runtime, Settings};
use journey_runtime::host;
use journey_runtime::store::sled::{SledOptions, SledStore};
use journey_runtime::store::{
    Catalog, Commit, EventCommit, EventRecord, HistoryEntry, Instance, InstanceCommit, InstanceId,
    InstanceStatus, Interaction, Journal, StateChanges, StepOutcome, StepRecord,
};

/// The journey of `--scenario timers`: sleep until `data.wake_at_ms`,
/// then complete.
const NAP: &str = r#"
name = "nap"
terminal = ["done"]

[trigger]
event = "nap.started"
correlation_key = "nap_id"

[[steps]]
name = "nap"
plugin = "sleep"
on = { woke = "wake" }
config = { until = "wake_at_ms" }

[[steps]]
name = "wake"
plugin = "noop"
"#;

/// The journey of `--scenario resume`: wait up to a week for a `poke`
/// about the customer, then complete.
const POKE: &str = r#"
name = "poke"
terminal = ["done"]

[trigger]
event = "poke.parked"
correlation_key = "poke_id"

[[steps]]
name = "park"
plugin = "await"
on = { arrived = "resume", timeout = "resume" }
config = { event = "poke", timeout = "7d" }

[[steps]]
name = "resume"
plugin = "noop"
"#;

/// Records written per store commit while seeding.
const SEED_BATCH: usize = 2_000;
/// Time between the restarted runtime's start and the first timer: room
/// to measure its idle memory.
const TIMER_LEAD_MS: u64 = 8_000;

/// One sleeping instance: its start and its first step (a sleep until
/// `due_ms`), as the runtime commits them.
fn sleeping_instance(
    id: InstanceId,
    n: usize,
    due_ms: u64,
    now_ms: u64,
    digest: &str,
) -> anyhow::Result<[Commit; 2]> {
    let customer = format!("c-{}", n % 10_000);
    let data = json!({ "nap_id": n, "wake_at_ms": due_ms });
    let event = EventRecord {
        id: format!("nap-{n}"),
        kind: "nap.started".into(),
        customer_id: customer.clone(),
        data: serde_json::value::to_raw_value(&data)?,
        received_at_ms: now_ms,
        started: vec![id],
    };
    let instance = Instance {
        id,
        journey: "nap".into(),
        journey_version: 1,
        customer_id: customer,
        correlation: n.to_string(),
        trigger_event_id: event.id.clone(),
        status: InstanceStatus::Running,
        current_step: Some("nap".into()),
        terminal: None,
        failure: None,
        state: serde_json::value::to_raw_value(&json!({}))?,
        history_len: 1,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
        wake_at_ms: None,
        waiting_for: None,
        waiting_at: None,
        last_event_id: None,
        indexed_by_customer: false,
        attempts: None,
    };
    let interaction = Interaction {
        at_ms: now_ms,
        channel: "api".into(),
        kind: event.kind.clone(),
        text: String::new(),
        details: event.data.clone(),
    };
    let ingest = EventCommit::new(event, vec![instance.clone()], interaction);
    let record = StepRecord {
        at_ms: now_ms,
        step: "nap".into(),
        plugin: "sleep".into(),
        plugin_version: 1,
        digest: digest.to_owned(),
        attempt: 1,
        idempotency_key: instance.idempotency_key(),
        state: StateChanges::default(),
        outcome: StepOutcome::Sleep {
            until_ms: due_ms,
            transition: "woke".into(),
            target: "wake".into(),
            requested_ms: None,
            window: None,
        },
        duration_us: 60,
        messages: Vec::new(),
        capped: Vec::new(),
        logs: Vec::new(),
        retry_at_ms: None,
    };
    let mut asleep = instance;
    asleep.advance(&record, |_| true);
    let step = InstanceCommit::new(asleep, HistoryEntry::StepRan(Box::new(record)));
    Ok([ingest.into(), step.into()])
}

/// `--scenario timers`.
pub async fn timers(args: &BenchArgs) -> anyhow::Result<()> {
    let count = args.timers.max(1);
    let rate = args.timer_rate.max(1);
    let temporary = tempfile::tempdir()?;
    let data = args.data.as_deref().unwrap_or(temporary.path()).to_owned();
    println!(
        "bench: {count} instances sleeping on durable timers, due at {rate}/s after a restart ({})",
        data.display()
    );

    // 1. Seed the store.
    let seeding = Instant::now();
    let now_ms = SystemClock.now_ms();
    // Far enough ahead that nothing is due while seeding; the restarted
    // runtime's clock is set relative to it.
    let first_due = now_ms + 24 * 60 * 60 * 1000;
    let due_of = |n: usize| first_due + (n as u64 * 1000) / rate as u64;
    let mut ids = Vec::with_capacity(count);
    {
        let store = SledStore::open(&data, &SledOptions::default())?;
        let host = host::Host::new(host::Limits::default(), Some(&data.join("compiled")))
            .map_err(|error| anyhow::anyhow!("{error:#}"))?;
        let dir = args.plugins.clone().unwrap_or_else(default_plugin_dir);
        let digest = seed_plugin(
            &store,
            &host,
            "sleep",
            &read_component(&dir, "plugin_sleep.wasm")?,
        )?;
        seed_plugin(
            &store,
            &host,
            "noop",
            &read_component(&dir, "fixture_noop.wasm")?,
        )?;
        store.put_journey("nap", NAP, now_ms)?;
        let mut writes = Vec::with_capacity(SEED_BATCH);
        let progress_every = (count / 10).max(1);
        for n in 0..count {
            let id = InstanceId(store.next_id()?);
            ids.push(id);
            writes.extend(sleeping_instance(id, n, due_of(n), now_ms, &digest)?);
            if writes.len() >= SEED_BATCH || n + 1 == count {
                store.commit(&writes)?;
                writes.clear();
            }
            if (n + 1) % progress_every == 0 {
                eprintln!(
                    "  … {} / {count} sleeping instances written ({:.1} s)",
                    n + 1,
                    seeding.elapsed().as_secs_f64()
                );
            }
        }
    }
    let seed_s = seeding.elapsed().as_secs_f64();
    let store_bytes = dir_size(&data);
    let store_mib = store_bytes as f64 / (1024.0 * 1024.0);
    let bytes_per_sleeper = store_bytes / count.max(1) as u64;
    println!(
        "  seeded in {seed_s:.1} s; store {store_mib:.0} MiB on disk, {bytes_per_sleeper} bytes per sleeping instance"
    );

    // 2. Restart: journeyd serve on that store, its clock just before the
    //    first timer.
    let clock_start = (first_due - TIMER_LEAD_MS).to_string();
    let (mut child, url, ready) =
        start_serve(&data, &["--clock-start".to_owned(), clock_start]).await?;
    let pid = child.id();
    let restart_s = ready.as_secs_f64();
    println!("  restart: serving after {restart_s:.2} s with {count} timers pending");

    // 3. Idle memory, before the first timer is due.
    tokio::time::sleep(Duration::from_millis(TIMER_LEAD_MS / 2)).await;
    let idle_rss = rss_mib(pid).unwrap_or(0.0);
    println!("  idle: {idle_rss:.0} MiB resident with {count} timers pending");

    // 4. Let them fall due; wait until every instance has completed.
    let firing = Instant::now();
    let limit = Duration::from_secs(count as u64 / rate as u64 + 300);
    let metrics_of_server = Metrics::new(&data, &url)?;
    let mut last_report = Instant::now();
    let mut peak_rss = idle_rss;
    loop {
        let metrics = metrics_of_server.read().await?;
        let completed = metrics
            .lines()
            .find_map(|line| {
                line.strip_prefix(r#"journeyd_instances_finished_total{status="completed"}"#)?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or(0.0) as usize;
        peak_rss = peak_rss.max(rss_mib(pid).unwrap_or(0.0));
        if completed >= count {
            break;
        }
        if firing.elapsed() > limit {
            let _ = child.kill();
            bail!("only {completed} of {count} timers fired within {limit:?}");
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            eprintln!(
                "  … {completed} / {count} timers fired ({:.0} s)",
                firing.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let fire_s = firing.elapsed().as_secs_f64() - (TIMER_LEAD_MS / 2) as f64 / 1000.0;

    // 5. Lateness, from every instance's history.
    let store = SledStore::open(&data, &SledOptions::default())?;
    let mut lateness = Vec::with_capacity(count);
    for id in &ids {
        for entry in store.history(*id)? {
            if let HistoryEntry::Woke { at_ms, due_ms } = entry {
                lateness.push(at_ms.saturating_sub(due_ms) as f64);
            }
        }
    }
    if lateness.len() != count {
        bail!(
            "{} of {count} instances record a timer firing",
            lateness.len()
        );
    }
    lateness.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        percentile(&lateness, 50.0),
        percentile(&lateness, 99.0),
        lateness.last().copied().unwrap_or(0.0),
    );
    println!(
        "  fired: {count} timers in {fire_s:.1} s ({:.0}/s); lateness p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms; peak RSS while firing {peak_rss:.0} MiB",
        count as f64 / fire_s.max(f64::MIN_POSITIVE)
    );
    println!(
        "{}",
        json!({
            "scenario": "timers",
            "timers": count,
            "due_per_s": rate,
            "seed_s": round2(seed_s),
            "store_mib": store_mib.round(),
            "store_bytes_per_sleeping_instance": bytes_per_sleeper,
            "restart_s": round2(restart_s),
            "idle_rss_mib": idle_rss.round(),
            "peak_rss_mib": peak_rss.round(),
            "timer_lateness_p50_ms": p50,
            "timer_lateness_p99_ms": p99,
            "timer_lateness_max_ms": max,
        })
    );
    Ok(())
}

/// `--scenario resume`.
pub async fn resume(args: &BenchArgs) -> anyhow::Result<()> {
    let count = args.waits.max(1);
    let rate = args.event_rate.max(1);
    let dir = args.plugins.clone().unwrap_or_else(default_plugin_dir);
    let temporary = tempfile::tempdir()?;
    let data = args.data.as_deref().unwrap_or(temporary.path());
    let store = Arc::new(SledStore::open(data, &SledOptions::default())?);
    let runtime = Runtime::new(store.clone(), Arc::new(SystemClock), Settings::default())?;
    runtime
        .push_plugin("await", read_component(&dir, "plugin_await.wasm")?)
        .await?;
    runtime
        .push_plugin("noop", read_component(&dir, "fixture_noop.wasm")?)
        .await?;
    runtime.deploy_journey("poke.toml", POKE)?;
    println!("bench: {count} instances parked waiting for an event, then events at {rate}/s");

    // 1. Park them.
    let parking = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
    for n in 0..count {
        let permit = in_flight.clone().acquire_owned().await?;
        let runtime = runtime.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let receipt = runtime
                .ingest(event(&format!("park-{n}"), "poke.parked", n))
                .await?;
            anyhow::Ok((
                n,
                *receipt.instances.first().context("no instance started")?,
            ))
        });
    }
    let mut instances = vec![InstanceId(0); count];
    while let Some(result) = tasks.join_next().await {
        let (n, id) = result??;
        instances[n] = id;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    if !runtime.settle(runtime.clock().now_ms(), deadline).await? {
        bail!("the parked instances did not all reach their wait");
    }
    println!(
        "  parked {count} in {:.1} s",
        parking.elapsed().as_secs_f64()
    );

    // 2. Resume them at a steady rate.
    let waiters: Arc<Mutex<HashMap<InstanceId, oneshot::Sender<Instant>>>> = Arc::default();
    let early: Arc<Mutex<HashMap<InstanceId, Instant>>> = Arc::default();
    let mut finished = runtime.subscribe();
    let (dispatch_waiters, dispatch_early) = (waiters.clone(), early.clone());
    let dispatcher = tokio::spawn(async move {
        loop {
            let done = match finished.recv().await {
                Ok(done) => done,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    eprintln!("warning: the benchmark missed {missed} finished instances");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            };
            let at = Instant::now();
            let waiter = dispatch_waiters
                .lock()
                .expect("waiters lock")
                .remove(&done.id);
            match waiter {
                Some(waiter) => {
                    let _ = waiter.send(at);
                }
                None => {
                    dispatch_early
                        .lock()
                        .expect("early lock")
                        .insert(done.id, at);
                }
            }
        }
    });
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = tokio::task::JoinSet::new();
    for (n, id) in instances.iter().copied().enumerate() {
        tokio::time::sleep_until((started + interval * n as u32).into()).await;
        let runtime = runtime.clone();
        let (waiters, early) = (waiters.clone(), early.clone());
        tasks.spawn(async move {
            let sent = Instant::now();
            let (tx, rx) = oneshot::channel();
            waiters.lock().expect("waiters lock").insert(id, tx);
            runtime
                .ingest(event(&format!("poke-{n}"), "poke", n))
                .await?;
            let accepted = Instant::now();
            let finished_early = early.lock().expect("early lock").remove(&id);
            let done = match finished_early {
                Some(at) => at,
                None => rx.await.context("the runtime stopped")?,
            };
            anyhow::Ok((
                done.saturating_duration_since(accepted),
                done.saturating_duration_since(sent),
            ))
        });
    }
    let (mut resumed, mut end_to_end) = (Vec::with_capacity(count), Vec::with_capacity(count));
    while let Some(result) = tasks.join_next().await {
        let (after_accept, after_send) = result??;
        resumed.push(after_accept.as_secs_f64() * 1000.0);
        end_to_end.push(after_send.as_secs_f64() * 1000.0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    dispatcher.abort();
    resumed.sort_by(f64::total_cmp);
    end_to_end.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&resumed, 50.0), percentile(&resumed, 99.0));
    let (sent_p50, sent_p99) = (percentile(&end_to_end, 50.0), percentile(&end_to_end, 99.0));
    println!(
        "  resumed {count} in {elapsed:.1} s ({:.0} events/s); event accepted → next step committed: p50 {p50:.2} ms, p99 {p99:.2} ms; event sent → next step committed: p50 {sent_p50:.2} ms, p99 {sent_p99:.2} ms",
        count as f64 / elapsed
    );
    println!(
        "{}",
        json!({
            "scenario": "resume",
            "waits": count,
            "events_per_s": (count as f64 / elapsed).round(),
            "resume_p50_ms": round2(p50),
            "resume_p99_ms": round2(p99),
            "event_to_step_p50_ms": round2(sent_p50),
            "event_to_step_p99_ms": round2(sent_p99),
        })
    );
    Ok(())
}

fn event(id: &str, kind: &str, n: usize) -> IncomingEvent {
    IncomingEvent {
        id: id.to_owned(),
        kind: kind.to_owned(),
        customer: format!("c-{n}"),
        data: serde_json::value::to_raw_value(&json!({ "poke_id": n }))
            .expect("a JSON literal serializes"),
    }
}
