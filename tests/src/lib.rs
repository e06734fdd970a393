//! Test harness: start the real `journeyd` binary on a port of its own,
//! talk to it over HTTP, kill it, restart it on the same data.
//!
//! Expects what `tests/run.sh` builds first: `target/release/journeyd` and
//! the plugin components in `target/wasm32-wasip2/plugin/`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub mod browser;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// A `journeyd` command that keeps compiled plugin code in one cache
/// shared by the whole suite (`JOURNEYD_COMPILED_CACHE`), so each
/// component is compiled once per build rather than once per test (a
/// Python component takes seconds). The suite's only test of the
/// data directory's own cache removes the variable.
pub fn journeyd_command() -> Command {
    let mut command = Command::new(journeyd_binary());
    let cache = journeyd_binary().with_file_name("test-compiled-cache");
    command.env("JOURNEYD_COMPILED_CACHE", cache);
    command
}

/// The journeyd binary built in the same profile as this test.
pub fn journeyd_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    // target/<profile>/deps/<test> → target/<profile>/journeyd
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/<profile>/deps")
        .join("journeyd");
    assert!(
        binary.exists(),
        "{} is missing: run tests through tests/run.sh (it builds journeyd first)",
        binary.display()
    );
    binary
}

/// The plugins the shipped enquiry journey runs.
pub const ENQUIRY_PLUGINS: [&str; 6] = [
    "acknowledge",
    "classify",
    "handover",
    "sla",
    "escalate",
    "resolve",
];

/// Every fixture component, by crate directory name under `tests/fixtures`.
pub const FIXTURES: [&str; 9] = [
    "noop",
    "trap",
    "spin",
    "memory-hog",
    "wrong-world",
    "slow",
    "flaky",
    "contract-breaker",
    "caller",
];

fn component(file: &str) -> Vec<u8> {
    let path = workspace().join("target/wasm32-wasip2/plugin").join(file);
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error} (run tests through tests/run.sh, which builds the plugins)",
            path.display()
        )
    })
}

/// A first-party plugin component (`acknowledge`, `classify`, ...).
pub fn plugin(name: &str) -> Vec<u8> {
    component(&format!("plugin_{name}.wasm"))
}

/// Fixture components built from Python (`tests/fixtures/python/NAME`,
/// with componentize-py) and JavaScript (`tests/fixtures/js/NAME`, with
/// componentize-js) by `scripts/build-components.sh`.
pub const INTERPRETED_FIXTURES: [&str; 10] = [
    "py_greet",
    "py_sdk-greet",
    "py_hostile",
    "py_old-contract",
    "py_extra-imports",
    "js_greet",
    "js_sdk-greet",
    "py_noop",
    "js_noop",
    "py_send",
];

/// A Python or JavaScript fixture component, by its name in
/// [`INTERPRETED_FIXTURES`].
pub fn interpreted_fixture(name: &str) -> Vec<u8> {
    assert!(
        INTERPRETED_FIXTURES.contains(&name),
        "unknown fixture {name}"
    );
    component(&format!("fixture_{name}.wasm"))
}

/// A test fixture component, by its name in [`FIXTURES`].
pub fn fixture(name: &str) -> Vec<u8> {
    assert!(FIXTURES.contains(&name), "unknown fixture {name}");
    component(&format!("fixture_{}.wasm", name.replace('-', "_")))
}

/// A fresh database on the test PostgreSQL server
/// (`JOURNEYD_TEST_POSTGRES`, set by `scripts/postgres.sh`), dropped
/// with the value.
pub struct PostgresDatabase {
    /// Its URL, for `serve --store`.
    pub url: String,
    server: String,
    name: String,
}

impl PostgresDatabase {
    /// Make one (`psql` runs the statements).
    pub fn create() -> PostgresDatabase {
        let server = std::env::var("JOURNEYD_TEST_POSTGRES").expect(
            "JOURNEYD_TEST_POSTGRES names a PostgreSQL server for the tests on PostgreSQL: \
             run tests/run.sh, or `source scripts/postgres.sh` first",
        );
        Self::create_on(server)
    }

    /// Make one on the server at `server` (a URL naming any database).
    pub fn create_on(server: String) -> PostgresDatabase {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "suite_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        psql(&server, &format!("CREATE DATABASE {name}"));
        let (base, _) = server.rsplit_once('/').expect("a URL with a database");
        PostgresDatabase {
            url: format!("{base}/{name}"),
            server,
            name,
        }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        psql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

/// A PostgreSQL server of the test's own (`scripts/postgres.sh`), for a
/// test that stops and starts it; every other test shares the one named
/// by `JOURNEYD_TEST_POSTGRES`. Stopped and removed with the value.
pub struct PostgresServer {
    script: Child,
    /// Its URL (the `postgres` database).
    pub url: String,
    dir: String,
}

impl PostgresServer {
    /// Start one (initdb and pg_ctl, as `scripts/postgres.sh` does).
    pub fn start() -> PostgresServer {
        let mut script = Command::new("bash")
            .arg(workspace().join("scripts/postgres.sh"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("bash runs scripts/postgres.sh");
        let mut lines = BufReader::new(script.stdout.take().expect("piped stdout")).lines();
        let mut line_after = |prefix: &str| loop {
            let line = lines
                .next()
                .and_then(Result::ok)
                .expect("scripts/postgres.sh starts a server");
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        };
        let url = line_after("PostgreSQL is up:");
        let dir = line_after("data and socket in:");
        PostgresServer { script, url, dir }
    }

    /// A fresh database on it.
    pub fn database(&self) -> PostgresDatabase {
        PostgresDatabase::create_on(self.url.clone())
    }

    /// Stop the server (`pg_ctl stop -m fast`: sessions are cut off).
    pub fn stop(&self) {
        self.pg_ctl("stop");
    }

    /// Start it again on the same data.
    pub fn start_again(&self) {
        self.pg_ctl("start");
    }

    fn pg_ctl(&self, action: &str) {
        let status = Command::new("bash")
            .arg(workspace().join("scripts/postgres.sh"))
            .args([action, &self.dir])
            .status()
            .expect("bash runs scripts/postgres.sh");
        assert!(status.success(), "pg_ctl {action} failed");
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // SIGTERM: the script stops the server and removes its directory.
        let _ = Command::new("kill")
            .args(["-TERM", &self.script.id().to_string()])
            .status();
        let _ = self.script.wait();
    }
}

/// Run one SQL statement on `server` with `psql`.
fn psql(server: &str, statement: &str) {
    let status = Command::new("psql")
        .args([
            "--quiet",
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            statement,
            server,
        ])
        .status()
        .expect("psql runs (Debian package postgresql-client)");
    assert!(status.success(), "psql failed: {statement}");
}

/// A running `journeyd serve`.
pub struct Journeyd {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The admin token journeyd made on its data directory's first start.
    pub token: String,
    http: reqwest::blocking::Client,
}

/// An HTTP client that sends `token` with every request.
pub fn client_with_token(token: &str, timeout: Duration) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}")
            .parse()
            .expect("a token is a header value"),
    );
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .build()
        .expect("http client")
}

impl Journeyd {
    /// Start journeyd on `data` and wait for its readiness line.
    pub fn start(data: &Path) -> Journeyd {
        Self::start_with(data, &[])
    }

    /// Start with extra `serve` arguments.
    pub fn start_with(data: &Path, args: &[&str]) -> Journeyd {
        Self::spawn(journeyd_command(), data, args)
    }

    /// Start keeping compiled plugin code where `serve` keeps it by
    /// default (in the data directory), not in the suite's shared cache.
    pub fn start_with_own_cache(data: &Path) -> Journeyd {
        let mut command = journeyd_command();
        command.env_remove("JOURNEYD_COMPILED_CACHE");
        Self::spawn(command, data, &[])
    }

    fn spawn(mut command: Command, data: &Path, args: &[&str]) -> Journeyd {
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("journeyd starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready, url) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("journeyd listening on ") {
                    let _ = ready.send(url.to_owned());
                    break;
                }
            }
            // Keep draining so journeyd never blocks on a full pipe.
            for _ in lines {}
        });
        // Whatever goes wrong from here, the child must not outlive the test.
        let started = url
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| "journeyd did not print its readiness line within 60 s".to_owned())
            .and_then(|url| {
                let token = std::fs::read_to_string(data.join("admin.token")).map_err(|error| {
                    format!("no admin token in the data directory ({error}); journeyd writes one on a store's first start")
                })?;
                Ok((url, token.trim().to_owned()))
            });
        let (url, token) = match started {
            Ok(started) => started,
            Err(problem) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{problem}");
            }
        };
        Journeyd {
            child,
            url,
            http: client_with_token(&token, Duration::from_secs(60)),
            token,
        }
    }

    /// A `journeyd` client command against this server, with its token.
    pub fn cli(&self) -> Command {
        let mut command = journeyd_command();
        command
            .args(["--server", &self.url])
            .env("JOURNEYD_TOKEN", &self.token)
            .env_remove("JOURNEYD_URL");
        command
    }

    /// Run a `journeyd` client command against this server; returns
    /// whether it succeeded and what it printed (stdout, then stderr).
    pub fn run_cli<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: impl IntoIterator<Item = S>,
    ) -> (bool, String) {
        let output = self.cli().args(args).output().expect("journeyd runs");
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), printed)
    }

    /// Send a request with another token (`None`: none); returns status
    /// and JSON body.
    pub fn request_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("http client");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
        let mut request = http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().expect("journeyd answers");
        let status = response.status().as_u16();
        let text = response.text().expect("a body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Send a signal by name (`STOP` pauses the process, `CONT` resumes it).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{name} failed");
    }

    /// The value of a counter or gauge on `/metrics` (0 when not recorded).
    pub fn metric(&self, name: &str) -> f64 {
        let (_, metrics) = self.request("GET", "/metrics", None);
        metrics
            .as_str()
            .unwrap_or("")
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send SIGTERM (a supervisor's stop) and wait up to `limit` for
    /// journeyd to exit; its exit status.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM failed");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for journeyd") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "journeyd did not exit within {limit:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send a request; returns status and JSON body.
    pub fn request(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().expect("journeyd answers");
        let status = response.status().as_u16();
        let text = response.text().expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    /// GET a path.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = self.request("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Create API token `name` with `scope` over the API; its secret.
    pub fn create_token(&self, name: &str, scope: &str) -> String {
        let body = serde_json::json!({ "name": name, "scope": scope });
        let (status, body) =
            self.request("POST", "/v1/tokens", Some(body.to_string().into_bytes()));
        assert_eq!(status, 201, "create token {name}: {body}");
        body["token"].as_str().expect("the token").to_owned()
    }

    /// Push a component as plugin `name`.
    pub fn push(&self, name: &str, bytes: Vec<u8>) -> (u16, Value) {
        self.request("PUT", &format!("/v1/plugins/{name}"), Some(bytes))
    }

    /// Deploy a journey definition.
    pub fn deploy(&self, file: &str, source: &str) -> (u16, Value) {
        self.request(
            "POST",
            &format!("/v1/journeys?file={file}"),
            Some(source.as_bytes().to_vec()),
        )
    }

    /// Send an event body.
    pub fn send_event(&self, event: &Value) -> (u16, Value) {
        self.request("POST", "/v1/events", Some(event.to_string().into_bytes()))
    }

    /// Point `tag` of plugin `name` (body as the API takes it).
    pub fn set_tag(&self, name: &str, tag: &str, body: &Value) -> (u16, Value) {
        self.request(
            "PUT",
            &format!("/v1/plugins/{name}/tags/{tag}"),
            Some(body.to_string().into_bytes()),
        )
    }

    /// Push the enquiry plugins, import the example customers and deploy
    /// the shipped enquiry journey without its wait for a person: hand-over
    /// leads straight to `resolve`, as the core tests and the benchmark
    /// run it.
    pub fn setup_enquiry(&self) {
        self.setup_enquiry_with(|_| {}, |source| source);
    }

    /// Push the enquiry plugins, import the example customers and deploy
    /// the enquiry journey exactly as shipped: it waits for the team's
    /// `enquiry.resolved` with an SLA timer per priority.
    pub fn setup_enquiry_as_shipped(&self) {
        self.setup_enquiry_as_shipped_with(|_| {}, |source| source);
    }

    /// [`Journeyd::setup_enquiry`], running `after_push` once the plugins
    /// are pushed and deploying the journey as `edit` changes it.
    pub fn setup_enquiry_with(
        &self,
        after_push: impl FnOnce(&Self),
        edit: impl FnOnce(String) -> String,
    ) {
        self.setup_enquiry_as_shipped_with(after_push, |source| {
            let automatic =
                journey_runtime::tooling::skip_steps(&source, &["sla", "escalate"], "resolved")
                    .expect("the enquiry journey's wait can be cut out");
            edit(automatic)
        });
    }

    /// [`Journeyd::setup_enquiry_as_shipped`], running `after_push` once
    /// the plugins are pushed and deploying the journey as `edit` changes
    /// it.
    pub fn setup_enquiry_as_shipped_with(
        &self,
        after_push: impl FnOnce(&Self),
        edit: impl FnOnce(String) -> String,
    ) {
        for name in ENQUIRY_PLUGINS {
            let (status, body) = self.push(name, plugin(name));
            assert_eq!(status, 201, "push {name}: {body}");
        }
        after_push(self);
        let customers: Value = serde_json::from_str(
            &std::fs::read_to_string(workspace().join("examples/enquiry/customers.json"))
                .expect("examples/enquiry/customers.json"),
        )
        .expect("customers.json is JSON");
        for (id, profile) in customers.as_object().expect("an object of customers") {
            let (status, body) = self.put_customer(id, profile);
            assert_eq!(status, 200, "customer {id}: {body}");
        }
        let source = std::fs::read_to_string(workspace().join("examples/enquiry/journey.toml"))
            .expect("examples/enquiry/journey.toml");
        let (status, body) = self.deploy("journey.toml", &edit(source));
        assert_eq!(status, 201, "deploy enquiry: {body}");
    }

    /// The instance view, after waiting up to `wait` for it to finish.
    pub fn wait_instance(&self, id: u64, wait: Duration) -> Value {
        self.get(&format!(
            "/v1/instances/i-{id}?wait_ms={}",
            wait.as_millis()
        ))
    }

    /// Start on a simulated clock standing at `start_ms`.
    pub fn start_simulated(data: &Path, start_ms: u64) -> Journeyd {
        Self::start_with(
            data,
            &[
                "--simulated-clock",
                "--simulated-clock-start",
                &start_ms.to_string(),
            ],
        )
    }

    /// Move the simulated clock to `to_ms`, stopping at each due timer,
    /// and return once the runtime has settled (no timer due, no step to
    /// run).
    pub fn advance_clock_to(&self, to_ms: u64) {
        self.advance_clock(json!({ "to_ms": to_ms, "settle_ms": 10_000 }));
    }

    /// [`Journeyd::advance_clock_to`] `ms` later (0: let the runtime
    /// settle without moving the clock).
    pub fn advance_clock_by(&self, ms: u64) {
        self.advance_clock(json!({ "ms": ms, "settle_ms": 10_000 }));
    }

    fn advance_clock(&self, body: Value) {
        let (status, answer) = self.request(
            "POST",
            "/v1/clock/advance",
            Some(body.to_string().into_bytes()),
        );
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["settled"], true, "{answer}");
    }

    /// Create or replace a customer's profile.
    pub fn put_customer(&self, id: &str, profile: &Value) -> (u16, Value) {
        self.request(
            "PUT",
            &format!("/v1/customers/{id}"),
            Some(profile.to_string().into_bytes()),
        )
    }

    /// Poll until `check` holds or `timeout` passes.
    pub fn eventually(&self, timeout: Duration, mut check: impl FnMut(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        check(self)
    }
}

impl Drop for Journeyd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `provider-sink`: the local provider the channel plugins
/// talk to (see `tools/provider-sink`).
pub struct ProviderSink {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    http: reqwest::blocking::Client,
}

impl ProviderSink {
    /// Start it with `args` (credentials, callbacks, misbehaviour).
    pub fn start(args: &[&str]) -> ProviderSink {
        let binary = journeyd_binary().with_file_name("provider-sink");
        let mut child = Command::new(&binary)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("{} starts: {error}", binary.display()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let (ready, url) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("provider-sink listening on ") {
                    let _ = ready.send(url.to_owned());
                    break;
                }
            }
            for _ in lines {}
        });
        let url = url
            .recv_timeout(Duration::from_secs(30))
            .expect("provider-sink printed its readiness line");
        ProviderSink {
            child,
            url,
            http: reqwest::blocking::Client::new(),
        }
    }

    /// `127.0.0.1:PORT`: what an integration grants.
    pub fn host(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Every message the sink took (once each).
    pub fn messages(&self) -> Vec<Value> {
        let body: Value = self
            .http
            .get(format!("{}/_sink/messages", self.url))
            .send()
            .and_then(|response| response.json())
            .expect("the sink lists its messages");
        body["messages"].as_array().cloned().unwrap_or_default()
    }

    /// Its counters: requests, accepted, duplicates, injected faults ...
    pub fn stats(&self) -> Value {
        self.http
            .get(format!("{}/_sink/stats", self.url))
            .send()
            .and_then(|response| response.json())
            .expect("the sink counts")
    }

    /// Change how it misbehaves.
    pub fn set_behaviour(&self, behaviour: &Value) {
        let response = self
            .http
            .put(format!("{}/_sink/behaviour", self.url))
            .body(behaviour.to_string())
            .send()
            .expect("the sink answers");
        assert!(response.status().is_success(), "{:?}", response.text());
    }
}

impl Drop for ProviderSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An enquiry event.
pub fn enquiry(id: &str, customer: &str, enquiry_id: &str, text: &str) -> Value {
    json!({
        "id": id,
        "type": "enquiry.received",
        "customer": customer,
        "data": { "enquiry_id": enquiry_id, "text": text, "channel": "email" },
    })
}

/// The step names of an instance's history, in order.
pub fn steps_of(view: &Value) -> Vec<String> {
    view["history"]
        .as_array()
        .expect("history is a list")
        .iter()
        .filter(|entry| entry["type"] == "step_ran")
        .map(|entry| entry["step"].as_str().expect("step name").to_owned())
        .collect()
}

pub use journey_runtime::tooling::with_custom_section;
