//! OpenTelemetry traces: the spans journeyd records, how they link, and
//! their export over OTLP.
//!
//! Tracing is off unless an OTLP endpoint is named: the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_TRACES_EXPORTER=otlp`, or `serve --otlp-endpoint` (the config
//! file's `otlp_endpoint`). Off, no span is built: each call here is one
//! load of an unset cell. On, finished spans go to the endpoint in batches
//! over OTLP/HTTP (protobuf, or JSON with `OTEL_EXPORTER_OTLP_PROTOCOL=
//! http/json`) from a thread of their own; the other `OTEL_*` variables
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_HEADERS`, `..._TIMEOUT`) apply as the
//! specification says.
//!
//! The spans of one instance step make one trace:
//! - `ingest` (server): an event accepted; it continues the caller's trace
//!   when the request carries a W3C `traceparent`.
//! - `step` (internal): one run of a step, child of the `ingest` of the
//!   event that led to it, with the journey, step, plugin, version,
//!   digest, attempt and outcome.
//! - `commit`: the step's effects from hand-over to the committer until
//!   durable (in a group commit), child of its `step`.
//! - `deliver` (client): one delivery attempt of a message the step
//!   queued, child of that `step`; the provider's request carries this
//!   span's `traceparent`. A message keeps its step's context in the
//!   outbox, so a retry hours later joins the same trace.
//!
//! A step woken by a timer, resumed at start or retried by an operator
//! begins a trace of its own.
//!
//! The Prometheus metrics on `/metrics` are listed in [`METRICS`], which
//! gives each its help text.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

pub use opentelemetry::KeyValue as Attribute;
pub use opentelemetry::trace::SpanKind as Kind;

/// The tracer, once export is set up; unset means tracing is off.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// The W3C trace-context header.
pub const TRACEPARENT: &str = "traceparent";

/// Whether spans are recorded.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The span a piece of work continues: its trace and parent span id.
/// `None` starts a trace of its own.
pub type Parent = Option<SpanContext>;

/// A span being recorded, or nothing when tracing is off. It ends when
/// dropped (or with [`Span::end`]).
#[derive(Debug)]
pub struct Span(Option<opentelemetry_sdk::trace::Span>);

impl Span {
    /// Start a span named `name` under `parent`; `attributes` are built
    /// only when tracing is on.
    pub fn start(
        name: &'static str,
        kind: SpanKind,
        parent: Option<&SpanContext>,
        attributes: impl FnOnce() -> Vec<KeyValue>,
    ) -> Span {
        let Some(tracer) = TRACER.get() else {
            return Span(None);
        };
        let context = match parent {
            Some(parent) if parent.is_valid() => {
                Context::new().with_remote_span_context(parent.clone())
            }
            _ => Context::new(),
        };
        let builder = tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes());
        Span(Some(tracer.build_with_context(builder, &context)))
    }

    /// A span that records nothing.
    pub fn none() -> Span {
        Span(None)
    }

    /// This span's context, for its children.
    pub fn context(&self) -> Parent {
        self.0.as_ref().map(|span| span.span_context().clone())
    }

    /// Add attributes (built only when the span records).
    pub fn set(&mut self, attributes: impl FnOnce() -> Vec<KeyValue>) {
        if let Some(span) = &mut self.0 {
            span.set_attributes(attributes());
        }
    }

    /// Mark the span failed, with why.
    pub fn fail(&mut self, reason: impl FnOnce() -> String) {
        if let Some(span) = &mut self.0 {
            span.set_status(Status::error(reason()));
        }
    }

    /// The `traceparent` header naming this span as the parent.
    pub fn traceparent(&self) -> Option<String> {
        self.context().as_ref().map(traceparent)
    }

    /// End the span now.
    pub fn end(self) {}
}

/// `context` as a W3C `traceparent` value.
pub fn traceparent(context: &SpanContext) -> String {
    format!(
        "00-{:032x}-{:016x}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

/// The span a W3C `traceparent` value names, if it is well formed
/// (`00-` 32 hex digits `-` 16 hex digits `-` 2 hex digits, lower case,
/// ids not all zero; a later version may add fields after these).
pub fn parse_traceparent(value: &str) -> Parent {
    let hex = |text: &str, digits: usize| {
        text.len() == digits
            && text
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    };
    let mut fields = value.trim().split('-');
    let (version, trace, span, flags) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let well_formed = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(span, 16)
        && hex(flags, 2)
        && (version != "00" || fields.next().is_none());
    if !well_formed {
        return None;
    }
    let sampled = u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8();
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(sampled),
        true,
        TraceState::default(),
    );
    context.is_valid().then_some(context)
}

/// The span a stored `traceparent` names, when tracing is on.
pub fn parent_of(traceparent: Option<&str>) -> Parent {
    traceparent
        .filter(|_| enabled())
        .and_then(parse_traceparent)
}

/// The caller's span on a request, when tracing is on and it sent a
/// well-formed `traceparent`.
pub fn caller(headers: &http::HeaderMap) -> Parent {
    if !enabled() {
        return None;
    }
    headers
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_traceparent)
}

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations, shown as a summary (count, sum, quantiles).
    Histogram,
}

/// Every metric journeyd records: name, kind, labels and help text
/// (docs/operations.md lists the same).
pub const METRICS: &[(&str, MetricKind, &str)] = &[
    (
        "journeyd_events_accepted_total",
        MetricKind::Counter,
        "Events accepted (durable; duplicates not counted).",
    ),
    (
        "journeyd_steps_total",
        MetricKind::Counter,
        "Step runs by `outcome`: goto, sleep, wait_for_event, complete, fail, split.",
    ),
    (
        "journeyd_step_retries_total",
        MetricKind::Counter,
        "Failed step runs given another attempt by their retry policy.",
    ),
    (
        "journeyd_step_duration_seconds",
        MetricKind::Histogram,
        "Time of one step run in the sandbox (instantiate and call).",
    ),
    (
        "journeyd_instances_finished_total",
        MetricKind::Counter,
        "Instances that ended, by `status`: completed, failed, exited, cancelled.",
    ),
    (
        "journeyd_commit_batches_total",
        MetricKind::Counter,
        "Group commits written (each one flush).",
    ),
    (
        "journeyd_commit_writes_total",
        MetricKind::Counter,
        "Commits (events and instance changes) written in those groups.",
    ),
    (
        "journeyd_timer_lateness_seconds",
        MetricKind::Histogram,
        "How late a timer fired after it was due.",
    ),
    (
        "journeyd_timers_stuck_total",
        MetricKind::Counter,
        "Timers whose wake-up failed and were left for later.",
    ),
    (
        "journeyd_deliveries_total",
        MetricKind::Counter,
        "Delivery attempts by `integration` and `outcome`: accepted, retry, dead.",
    ),
    (
        "journeyd_fenced_commits_total",
        MetricKind::Counter,
        "Steps whose commit was refused because this node no longer held the instance's shard (PostgreSQL, several nodes); the shard's holder runs them.",
    ),
    (
        "journeyd_shards_taken_total",
        MetricKind::Counter,
        "Shards this node took after it started (PostgreSQL, several nodes): another node stopped, left, or gave up part of its share.",
    ),
    (
        "journeyd_shards_lost_total",
        MetricKind::Counter,
        "Shards this node lost: given back to a joining node, or taken after its lease ended.",
    ),
    (
        "journeyd_host_faults_total",
        MetricKind::Counter,
        "Faults of the host (not a plugin) by `kind`: step, commit, panic; the step runs again.",
    ),
    (
        "journeyd_instances_purged_total",
        MetricKind::Counter,
        "Finished instances removed by retention or `instance purge`.",
    ),
    (
        "journeyd_records_purged_total",
        MetricKind::Counter,
        "Store records removed with them (history, messages, events).",
    ),
    (
        "journeyd_backup_pause_seconds",
        MetricKind::Histogram,
        "How long a backup held writes back.",
    ),
    (
        "journeyd_plugin_metrics_dropped_total",
        MetricKind::Counter,
        "Counter names a `plugin` asked for beyond its bound of 32, dropped.",
    ),
    (
        "journeyd_start_plugins_from_cache",
        MetricKind::Gauge,
        "Plugins loaded from the compiled cache at the last start.",
    ),
    (
        "journeyd_start_plugins_compiled",
        MetricKind::Gauge,
        "Plugins compiled at the last start.",
    ),
];

/// Give the metrics recorder the help text of every metric in
/// [`METRICS`]; plugins' own counters (`journey_plugin_NAME_total`) have
/// none.
pub fn describe_metrics() {
    for (name, kind, help) in METRICS {
        match kind {
            MetricKind::Counter => metrics::describe_counter!(*name, *help),
            MetricKind::Gauge => metrics::describe_gauge!(*name, *help),
            MetricKind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
}

/// Where spans go, from the settings and the `OTEL_*` variables.
#[derive(Debug, Clone, Default)]
pub struct ExportSettings {
    /// The OTLP endpoint's base URL (`/v1/traces` is added), as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` names it.
    pub otlp_endpoint: Option<String>,
}

/// Why export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// An `OTEL_*` variable asks for what journeyd does not do.
    #[error("{variable}={value}: {why}")]
    Unsupported {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What journeyd does instead.
        why: &'static str,
    },
    /// The exporter refused its settings.
    #[error("the OTLP exporter: {0}")]
    Exporter(String),
}

/// Spans being exported; [`Exporting::shutdown`] sends what is left.
pub struct Exporting {
    provider: SdkTracerProvider,
}

impl Exporting {
    /// Send the spans not yet sent (bounded by the exporter's timeout)
    /// and stop exporting. Blocks: call it off the async threads.
    pub fn shutdown(self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(%error, "not every span could be exported before exit");
        }
    }
}

fn variable(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// Set up export when the settings or the environment name an endpoint;
/// `Ok(None)` leaves tracing off. `tokio` runs the export requests.
pub fn start(
    settings: &ExportSettings,
    tokio: tokio::runtime::Handle,
) -> Result<Option<Exporting>, ExportError> {
    if variable("OTEL_SDK_DISABLED").is_some_and(|value| value.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let asked = match variable("OTEL_TRACES_EXPORTER") {
        Some(value) if value == "none" => return Ok(None),
        Some(value) if value == "otlp" => true,
        Some(value) => {
            return Err(ExportError::Unsupported {
                variable: "OTEL_TRACES_EXPORTER",
                value,
                why: "journeyd exports traces with `otlp` (or `none`)",
            });
        }
        None => false,
    };
    let signal_endpoint = variable("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let endpoint = settings
        .otlp_endpoint
        .clone()
        .or_else(|| variable("OTEL_EXPORTER_OTLP_ENDPOINT"));
    if !asked && signal_endpoint.is_none() && endpoint.is_none() {
        return Ok(None);
    }
    // The signal's own variable wins over the general one.
    let protocol = [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .into_iter()
    .find_map(|name| variable(name).map(|value| (name, value)));
    let protocol = match protocol {
        None => Protocol::HttpBinary,
        Some((_, value)) if value == "http/protobuf" => Protocol::HttpBinary,
        Some((_, value)) if value == "http/json" => Protocol::HttpJson,
        Some((name, value)) => {
            return Err(ExportError::Unsupported {
                variable: if name.contains("TRACES") {
                    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
                } else {
                    "OTEL_EXPORTER_OTLP_PROTOCOL"
                },
                value,
                why: "journeyd exports OTLP over HTTP: use http/protobuf or http/json",
            });
        }
    };
    let timeout = variable("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        .or_else(|| variable("OTEL_EXPORTER_OTLP_TIMEOUT"))
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
    let client = ExportClient::new(timeout, tokio)?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_http_client(client);
    // The signal's own variable wins; the exporter reads it itself.
    if signal_endpoint.is_none()
        && let Some(base) = &endpoint
    {
        exporter = exporter.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    let exporter = exporter
        .build()
        .map_err(|error| ExportError::Exporter(error.to_string()))?;
    let mut resource = opentelemetry_sdk::Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if variable("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("journeyd");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "journeyd");
    if TRACER.set(tracer).is_err() {
        // Set up once per process; a second setup exports nothing more.
        return Ok(None);
    }
    tracing::info!(
        endpoint = signal_endpoint
            .as_deref()
            .or(endpoint.as_deref())
            .unwrap_or("http://localhost:4318"),
        "exporting traces over OTLP"
    );
    Ok(Some(Exporting { provider }))
}

/// The exporter's HTTP client: journeyd's own (rustls), its requests run
/// on the server's tokio runtime while the batch thread waits for them.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    tokio: tokio::runtime::Handle,
}

impl ExportClient {
    fn new(timeout: Duration, tokio: tokio::runtime::Handle) -> Result<Self, ExportError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|error| ExportError::Exporter(error.to_string()))?;
        Ok(ExportClient { client, tokio })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let sent = self.tokio.spawn(async move {
            let request = reqwest::Request::try_from(request.map(reqwest::Body::from))?;
            let response = client.execute(request).await?;
            let mut answer = http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let body = response.bytes().await?;
            Ok::<_, opentelemetry_http::HttpError>(answer.body(body)?)
        });
        sent.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_goes_round() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse_traceparent(value).expect("well formed");
        assert_eq!(traceparent(&context), value);
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "<script>",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad:?} is refused");
        }
    }

    /// Every `journeyd_*` metric the code records is in [`METRICS`] and in
    /// the operations guide.
    #[test]
    fn every_metric_is_described() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let guide = std::fs::read_to_string(root.join("../docs/operations.md")).expect("the guide");
        let mut recorded = std::collections::BTreeSet::new();
        let mut dirs = vec![root.join("src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("a source directory") {
                let path = entry.expect("an entry").path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("a source file");
                for (at, _) in text.match_indices("!(\"journeyd_") {
                    let name: String = text[at + 3..]
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    recorded.insert(name);
                }
            }
        }
        assert!(recorded.len() >= 10, "{recorded:?}");
        for name in &recorded {
            assert!(
                METRICS.iter().any(|(known, ..)| known == name),
                "{name} is recorded but not in METRICS"
            );
        }
        for (name, ..) in METRICS {
            assert!(
                recorded.contains(*name),
                "{name} is in METRICS but never recorded"
            );
            assert!(
                guide.contains(name),
                "docs/operations.md does not list {name}"
            );
        }
        // The shipped dashboard asks only for metrics that exist.
        let dashboard = std::fs::read_to_string(root.join("../docs/grafana/journeyd.json"))
            .expect("the dashboard");
        let _: serde_json::Value = serde_json::from_str(&dashboard).expect("JSON");
        for (at, _) in dashboard.match_indices("journeyd_") {
            let name: String = dashboard[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            assert!(
                METRICS.iter().any(|(known, ..)| *known == name),
                "the dashboard asks for {name}, which journeyd does not record"
            );
        }
    }

    #[test]
    fn off_records_nothing() {
        // No export was set up in this process.
        let mut span = Span::start("step", SpanKind::Internal, None, || {
            unreachable!("attributes are not built when tracing is off")
        });
        span.set(|| unreachable!("nor added"));
        assert!(span.context().is_none());
        assert!(span.traceparent().is_none());
    }
}
