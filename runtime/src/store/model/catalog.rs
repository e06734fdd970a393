//! Catalog records: plugin versions, tags and rollouts, run counts,
//! journey versions and migrations.

use serde::{Deserialize, Serialize};

/// A plugin version: a named, numbered pointer to content-addressed bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginRecord {
    /// The plugin name journeys refer to.
    pub name: String,
    /// 1, 2, 3 ... per name, in push order.
    pub version: u32,
    /// Lower-case hex sha256 of the component bytes.
    pub digest: String,
    /// Size of the component in bytes.
    pub size: u64,
    /// When it was pushed, ms since the Unix epoch.
    pub pushed_at_ms: u64,
}

/// Where a plugin tag points: the version its steps run and, during a
/// rollout, a second version that a share of instances runs instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagRecord {
    /// The plugin.
    pub plugin: String,
    /// The tag name (`stable`, `canary`, ...).
    pub tag: String,
    /// The version steps run (outside a rollout's share).
    pub version: u32,
    /// A rollout in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// When the tag last changed, ms since the Unix epoch.
    pub changed_at_ms: u64,
    /// Why it last changed, for people.
    pub reason: String,
}

/// A rollout: a share of instances runs another version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// The version being rolled out.
    pub version: u32,
    /// The share of instances, 0 to 100, that runs it; which instances is
    /// decided by the instance id, so an instance keeps its side.
    pub percent: u8,
    /// When to roll back on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRule>,
}

/// Roll a canary back automatically once it has run `min_runs` times and
/// more than `max_error_rate` of its runs failed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RollbackRule {
    /// Failed runs over runs above which the canary is rolled back, 0 to 1.
    pub max_error_rate: f64,
    /// Runs needed before the rule is applied.
    pub min_runs: u64,
}

/// How often one plugin version ran, failed, and how long it took.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionStats {
    /// The plugin.
    pub plugin: String,
    /// The version.
    pub version: u32,
    /// Steps it ran.
    pub runs: u64,
    /// Of those, steps that failed (the plugin failed, trapped or timed out).
    pub failures: u64,
    /// Run time (instantiate + call) by bucket: bucket `i` counts runs of
    /// about `2^(i/4)` µs; see [`VersionStats::percentile_us`].
    pub latency_buckets: Vec<u64>,
}

/// Latency buckets per doubling of run time.
const BUCKETS_PER_DOUBLING: f64 = 4.0;
/// Buckets kept: up to about 2^24 µs (17 s); longer runs count in the last.
const LATENCY_BUCKETS: usize = 96;

impl VersionStats {
    /// Count one run.
    pub fn record(&mut self, failed: bool, duration_us: u64) {
        self.runs += 1;
        self.failures += u64::from(failed);
        let bucket = ((duration_us.max(1) as f64).log2() * BUCKETS_PER_DOUBLING) as usize;
        if self.latency_buckets.len() < LATENCY_BUCKETS {
            self.latency_buckets.resize(LATENCY_BUCKETS, 0);
        }
        self.latency_buckets[bucket.min(LATENCY_BUCKETS - 1)] += 1;
    }

    /// The run time below which `percent` of runs finished, in µs (the top
    /// of its bucket: within 19%), or `None` before the first run.
    pub fn percentile_us(&self, percent: f64) -> Option<u64> {
        let wanted = (self.runs as f64 * percent / 100.0).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in self.latency_buckets.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Some(
                    2f64.powf((bucket + 1) as f64 / BUCKETS_PER_DOUBLING)
                        .round() as u64,
                );
            }
        }
        None
    }

    /// Add the runs counted in `other` (of the same version).
    pub fn add(&mut self, other: &VersionStats) {
        self.runs += other.runs;
        self.failures += other.failures;
        if self.latency_buckets.len() < other.latency_buckets.len() {
            self.latency_buckets.resize(other.latency_buckets.len(), 0);
        }
        for (mine, theirs) in self.latency_buckets.iter_mut().zip(&other.latency_buckets) {
            *mine += theirs;
        }
    }

    /// Failed runs over runs (0 before the first run).
    pub fn failure_rate(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.failures as f64 / self.runs as f64
        }
    }
}

/// Moves running instances of one journey version to another at their next
/// step start, each to the step the mapping names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MigrationRecord {
    /// The journey.
    pub journey: String,
    /// The version instances leave.
    pub from_version: u32,
    /// The version they move to.
    pub to_version: u32,
    /// For every step of `from_version`, the step of `to_version` an
    /// instance waiting to run it continues at.
    pub steps: std::collections::BTreeMap<String, String>,
    /// When it was made, ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// A deployed journey definition version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JourneyRecord {
    /// The journey name.
    pub name: String,
    /// 1, 2, 3 ... per name, in deploy order.
    pub version: u32,
    /// The TOML source as deployed.
    pub source: String,
    /// When it was deployed, ms since the Unix epoch.
    pub deployed_at_ms: u64,
}

/// An integration: how messages on one channel leave the runtime.
/// Secrets are kept as references (`env:NAME`, `file:PATH`), never as
/// values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntegrationRecord {
    /// The channel it delivers (`email`, `sms`, `team`, ...), also its name.
    pub channel: String,
    /// The channel plugin (`sendgrid`, `sendgrid@2`, `sendgrid:stable`).
    pub plugin: String,
    /// The plugin's config (a JSON object).
    pub config: serde_json::Value,
    /// The hosts requests may go to (`api.example.com`, `*.example.com`,
    /// `127.0.0.1:8025`).
    pub hosts: Vec<String>,
    /// Secret name → where its value is read (`env:NAME`, `file:PATH`).
    pub secrets: std::collections::BTreeMap<String, String>,
    /// The secret that verifies callbacks (Standard Webhooks), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_secret: Option<String>,
    /// Requests per second at most (`None`: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<u32>,
    /// Requests in flight at most.
    pub concurrency: u32,
    /// Attempts per message before it is dead.
    pub max_attempts: u32,
    /// Age of a message (from queueing) after which it is dead instead of
    /// sent: shorter than the provider's idempotency window.
    pub max_age_ms: u64,
    /// Connect and total timeout of one request.
    pub timeout_ms: u64,
    /// Why it is disabled (a 410 from the provider, an operator), if it is:
    /// its messages wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<String>,
    /// When it was last set, ms since the Unix epoch.
    pub updated_at_ms: u64,
}

/// What an API token may do. `admin` may do everything, `read` may read
/// everything, `ingest` may send events and customer profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Send events and upsert customer profiles.
    Ingest,
    /// Read instances, funnels, the outbox, deliveries, the catalog, metrics.
    Read,
    /// Everything: deploy, push, tag, caps, integrations, tokens, the clock,
    /// operator actions.
    Admin,
}

impl Scope {
    /// Whether a token of this scope may use a route that needs `needed`.
    pub fn allows(self, needed: Scope) -> bool {
        self == Scope::Admin || self == needed
    }

    /// The scope as it is written.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// An API token, as stored: its secret only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Its name (`crm`, `grafana`), unique.
    pub name: String,
    /// What it may do.
    pub scope: Scope,
    /// Lower-case hex sha256 of the token.
    pub hash: String,
    /// When it was created, ms since the Unix epoch.
    pub created_at_ms: u64,
}

/// One entry of the audit log: what an operator did that the store must
/// be able to prove later. It holds ids and counts, never personal data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its place in the log (set by the store when appended).
    #[serde(default)]
    pub seq: u64,
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// What was done, e.g. `customer.forget`.
    pub action: String,
    /// The request that did it (the caller's `x-request-id`, or one the
    /// runtime made up).
    pub request_id: String,
    /// The API token that did it, if the API has tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// What it did, as counts and settings.
    pub details: serde_json::Value,
}
