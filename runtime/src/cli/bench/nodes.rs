//! `bench --store URL --nodes N`: the enquiry journeys on N nodes sharing
//! one PostgreSQL database, each a `journeyd bench` process of its own.
//!
//! Node 1 (the process the user started) sets the catalog up, then starts
//! nodes 2..N (`--node-index K`), which find the journey in the database.
//! Every node waits until each of the N holds its share of the shards,
//! then sends `--journeys` enquiries of its own through its own runtime
//! (as a load balancer spreading events would) and prints its figures as
//! one JSON line; node 1 gathers them. Each node's CPU is its own
//! process's; the database's is the machine's busy time less the nodes'
//! (on this box the server runs beside them).

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::BenchArgs;
use journey_runtime::store::postgres::SHARDS;
use journey_runtime::store::{NodeOptions, PostgresOptions, PostgresStore};

/// How long the nodes may take to share the shards out.
const SHARING_LIMIT: Duration = Duration::from_secs(60);

/// This process's node number, 1 to `--nodes`.
pub fn index(args: &BenchArgs) -> usize {
    args.node_index.unwrap_or(1)
}

/// The name node `index` takes part under.
fn name(index: usize) -> String {
    format!("bench-{index}")
}

/// How this process opens the database: as node `bench-K`.
pub fn options(args: &BenchArgs) -> PostgresOptions {
    PostgresOptions {
        node: Some(NodeOptions {
            name: name(index(args)),
            ..NodeOptions::default()
        }),
        ..PostgresOptions::default()
    }
}

/// What `--nodes` cannot be combined with.
pub fn check(args: &BenchArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if args.nodes > 1
        && (args.swap_every.is_some() || args.fail_first_percent.is_some() || args.deliver)
    {
        bail!(
            "--nodes runs the plain enquiry journeys: leave out --swap-every, --fail-first-percent and --deliver"
        );
    }
    Ok(())
}

/// Nodes 2..N, started by node 1 once the catalog is in the database.
pub struct Others {
    children: Vec<(usize, Child)>,
}

impl Others {
    /// Start them: the same binary and load, one node number each.
    pub fn start(args: &BenchArgs, url: &str) -> anyhow::Result<Others> {
        let binary = std::env::current_exe().context("finding journeyd's own binary")?;
        let mut children = Vec::new();
        for index in 2..=args.nodes {
            let mut command = Command::new(&binary);
            command
                .args(["bench", "--store", url])
                .args(["--nodes", &args.nodes.to_string()])
                .args(["--node-index", &index.to_string()])
                .args(["--journeys", &args.journeys.to_string()])
                .args(["--concurrency", &args.concurrency.to_string()]);
            if let Some(parallel_steps) = args.parallel_steps {
                command.args(["--parallel-steps", &parallel_steps.to_string()]);
            }
            let child = command
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .with_context(|| format!("starting bench node {index}"))?;
            children.push((index, child));
        }
        Ok(Others { children })
    }

    /// Each node's JSON line, once it has finished.
    pub fn figures(mut self) -> anyhow::Result<Vec<Value>> {
        let mut all = Vec::new();
        for (index, child) in &mut self.children {
            let stdout = child.stdout.take().context("a node's output")?;
            let mut last = None;
            for line in std::io::BufReader::new(stdout).lines() {
                let line = line?;
                if line.starts_with('{') {
                    last = Some(line);
                }
            }
            let status = child.wait()?;
            if !status.success() {
                bail!("bench node {index} failed ({status}); its log is above");
            }
            let line = last.with_context(|| format!("bench node {index} printed no figures"))?;
            all.push(serde_json::from_str(&line)?);
        }
        self.children.clear();
        Ok(all)
    }
}

impl Drop for Others {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Wait until `nodes` bench nodes each hold their share of the shards (a
/// node that joins gets its share as the others renew their leases).
pub fn wait_for_shares(store: &PostgresStore, nodes: usize) -> anyhow::Result<()> {
    let fair = SHARDS as usize / nodes;
    let started = Instant::now();
    loop {
        let status = store.cluster_status()?;
        let holding: Vec<usize> = status
            .nodes
            .iter()
            .filter(|node| node.name.starts_with("bench-") && node.shards > 0)
            .map(|node| node.shards)
            .collect();
        if holding.len() == nodes
            && holding.iter().all(|&shards| shards >= fair)
            && holding.iter().sum::<usize>() == SHARDS as usize
        {
            return Ok(());
        }
        if started.elapsed() > SHARING_LIMIT {
            bail!(
                "the {nodes} bench nodes did not share the shards out within {} s (held: {holding:?})",
                SHARING_LIMIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What node 1 reports for all the nodes together.
pub struct Together {
    /// Every node's JSON line, node 1 first.
    pub nodes: Vec<Value>,
    /// The machine's busy CPU over the run, seconds.
    pub machine_cpu_s: f64,
    /// WAL the database wrote over the run, bytes.
    pub wal_bytes: u64,
    /// How much the database grew over the run, bytes.
    pub database_bytes: u64,
}

impl Together {
    /// The summary lines and the figures for the JSON line.
    pub fn report(&self) -> Value {
        let sum = |field: &str| {
            self.nodes
                .iter()
                .map(|node| node[field].as_f64().unwrap_or(0.0))
                .sum::<f64>()
        };
        let most = |field: &str| {
            self.nodes
                .iter()
                .map(|node| node[field].as_f64().unwrap_or(0.0))
                .fold(0.0, f64::max)
        };
        let journeys = sum("journeys");
        // The nodes start together: the run lasts as long as the slowest.
        let elapsed = most("elapsed_s");
        let commits = sum("step_commits").max(1.0);
        let node_cpu = sum("cpu_s");
        let database_cpu = (self.machine_cpu_s - node_cpu).max(0.0);
        let per_journey_ms = |seconds: f64| seconds * 1000.0 / journeys.max(1.0);
        let figures = json!({
            "nodes": self.nodes.len(),
            "journeys": journeys,
            "journeys_per_s": (journeys / elapsed.max(f64::MIN_POSITIVE) * 10.0).round() / 10.0,
            "p99_ms_worst_node": most("p99_ms"),
            "statements_per_step": (sum("statements") / commits * 10.0).round() / 10.0,
            "wal_bytes_per_step": (self.wal_bytes as f64 / commits).round(),
            "database_bytes_per_journey": (self.database_bytes as f64 / journeys.max(1.0)).round(),
            "node_cpu_ms_per_journey": (per_journey_ms(node_cpu) * 1000.0).round() / 1000.0,
            "database_cpu_ms_per_journey": (per_journey_ms(database_cpu) * 1000.0).round() / 1000.0,
            "per_node": self.nodes.iter().map(|node| json!({
                "node": node["node"],
                "journeys_per_s": node["journeys_per_s"],
                "p50_ms": node["p50_ms"],
                "p99_ms": node["p99_ms"],
                "cpu_ms_per_journey": node["cpu_ms_per_journey"],
            })).collect::<Vec<_>>(),
        });
        println!(
            "  {} in all: {:.0} journeys/s; worst node's p99 {:.2} ms; {} statements and {} WAL bytes per step commit",
            match self.nodes.len() {
                1 => "1 node".to_owned(),
                nodes => format!("{nodes} nodes"),
            },
            figures["journeys_per_s"].as_f64().unwrap_or(0.0),
            most("p99_ms"),
            figures["statements_per_step"],
            figures["wal_bytes_per_step"].as_f64().unwrap_or(0.0) as u64,
        );
        for node in &self.nodes {
            println!(
                "    {}: {} journeys/s, p50 {} ms, p99 {} ms, CPU {} ms per journey",
                node["node"].as_str().unwrap_or("?"),
                node["journeys_per_s"],
                node["p50_ms"],
                node["p99_ms"],
                node["cpu_ms_per_journey"],
            );
        }
        println!(
            "  the database grew by {:.0} MiB, {} bytes per finished journey",
            self.database_bytes as f64 / (1024.0 * 1024.0),
            figures["database_bytes_per_journey"]
                .as_f64()
                .unwrap_or(0.0) as u64,
        );
        println!(
            "  CPU per journey: the nodes {:.3} ms, the database {:.3} ms (the machine's busy time, {:.1} s, less the nodes', {node_cpu:.1} s)",
            per_journey_ms(node_cpu),
            per_journey_ms(database_cpu),
            self.machine_cpu_s,
        );
        figures
    }
}
