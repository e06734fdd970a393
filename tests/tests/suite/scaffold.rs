//! `journeyd plugin new` makes projects that pass their own tests, build
//! with their language's toolchain, run under `journeyd step run` and push:
//! a step and a channel in each of Rust, Python and JavaScript.

use std::path::{Path, PathBuf};
use std::process::Command;

use journey_tests::{Journeyd, journeyd_command, workspace};
use serde_json::Value;

/// Run `command` in `dir`, failing the test with its output if it fails.
fn run(dir: &Path, command: &mut Command) -> String {
    let output = command
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("{command:?}: {error}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{command:?} in {}:\n{text}",
        dir.display()
    );
    text
}

fn new_plugin(scratch: &Path, name: &str, args: &[&str]) -> PathBuf {
    run(
        scratch,
        journeyd_command().args(["plugin", "new", name]).args(args),
    );
    scratch.join(name)
}

/// `journeyd step run` on the project's sample input: the greeting is sent.
fn step_runs(project: &Path, component: &Path) {
    let output = run(
        project,
        journeyd_command()
            .args([
                "step",
                "run",
                "--json",
                "--input",
                "input.json",
                "--customer",
                "customer.json",
            ])
            .arg(component),
    );
    let result: Value = serde_json::from_str(&output).expect("JSON");
    assert_eq!(result["outcome"]["goto"], "sent", "{result:#}");
    assert_eq!(result["messages"][0]["body"], "Hello, Ada!", "{result:#}");
}

#[test]
fn scaffolded_projects_pass_their_tests_build_run_and_push() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let root = workspace();
    let mut components = Vec::new();

    // Rust: a step and a channel. The workspace's lock file keeps the
    // dependency versions the ones CI already built (a user's project
    // resolves its own); one target folder serves both projects.
    let target = root.join("target/scaffolds");
    for (name, kind) in [("greet-rs", "step"), ("relay-rs", "channel")] {
        let project = new_plugin(scratch.path(), name, &["--kind", kind]);
        std::fs::copy(root.join("Cargo.lock"), project.join("Cargo.lock")).expect("lock file");
        let cargo = || {
            let mut cargo = Command::new("cargo");
            // As an author builds it: without the suite's lint wrapper.
            cargo
                .env("CARGO_TARGET_DIR", &target)
                .env_remove("RUSTC_WORKSPACE_WRAPPER")
                .env_remove("RUSTFLAGS");
            cargo
        };
        let tests = run(&project, cargo().args(["test", "--release"]));
        assert!(tests.contains("test result: ok. 2 passed"), "{tests}");
        run(
            &project,
            cargo().args(["build", "--release", "--target", "wasm32-wasip2"]),
        );
        let component = target.join(format!(
            "wasm32-wasip2/release/{}.wasm",
            name.replace('-', "_")
        ));
        if kind == "step" {
            step_runs(&project, &component);
        }
        components.push((name.to_owned(), component));
    }

    // Python: its unit tests natively, then componentize-py.
    for (name, kind) in [("greet-py", "step"), ("relay-py", "channel")] {
        let project = new_plugin(scratch.path(), name, &["--lang", "python", "--kind", kind]);
        let tests = run(&project, Command::new("python3").args(["-m", "unittest"]));
        assert!(
            tests.contains("Ran 2 tests") && tests.contains("OK"),
            "{tests}"
        );
        run(
            &project,
            Command::new("./build.sh").env(
                "COMPONENTIZE_PY",
                root.join(".toolchains/python/bin/componentize-py"),
            ),
        );
        let component = project.join(format!("{name}.wasm"));
        if kind == "step" {
            step_runs(&project, &component);
        }
        components.push((name.to_owned(), component));
    }

    // JavaScript: node --test, then its build script with the toolchain
    // scripts/toolchains.sh installed (instead of `npm install`).
    let path = format!(
        "{}:{}",
        root.join("sdk/js/node_modules/.bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (name, kind) in [("greet-js", "step"), ("relay-js", "channel")] {
        let project = new_plugin(scratch.path(), name, &["--lang", "js", "--kind", kind]);
        let tests = run(&project, Command::new("npm").arg("test"));
        assert!(
            tests.contains("# pass 2") && tests.contains("# fail 0"),
            "{tests}"
        );
        run(
            &project,
            Command::new("npm")
                .args(["run", "build"])
                .env("PATH", &path),
        );
        let component = project.join(format!("{name}.wasm"));
        if kind == "step" {
            step_runs(&project, &component);
        }
        components.push((name.to_owned(), component));
    }

    // Every one of them is a plugin journeyd takes.
    let data = tempfile::tempdir().expect("temp dir");
    let journeyd = Journeyd::start(data.path());
    for (name, component) in components {
        let bytes = std::fs::read(&component).expect("the built component");
        let (status, body) = journeyd.push(&name, bytes);
        assert_eq!(status, 201, "{name}: {body}");
    }

    // Each channel plugin renders a sample message in the sandbox when it
    // becomes an integration (and refuses a config without its URL).
    let secret = scratch.path().join("signing-key");
    std::fs::write(&secret, "whsec_c2NhZmZvbGQtc2lnbmluZy1rZXk=").expect("write a secret");
    for name in ["relay-rs", "relay-py", "relay-js"] {
        let spec = |config: Value| {
            serde_json::json!({
                "plugin": name,
                "hosts": ["provider.example"],
                "secrets": { "signing_key": format!("file:{}", secret.display()) },
                "config": config,
            })
            .to_string()
            .into_bytes()
        };
        let (status, body) = journeyd.request(
            "PUT",
            "/v1/integrations/chat",
            Some(spec(
                serde_json::json!({ "url": "https://provider.example/messages" }),
            )),
        );
        assert_eq!(status, 200, "{name}: {body}");
        let (status, body) = journeyd.request(
            "PUT",
            "/v1/integrations/chat",
            Some(spec(serde_json::json!({}))),
        );
        assert_eq!(status, 422, "{name}: {body}");
    }

    // Names that cannot name a plugin, and a folder in use, are refused.
    let output = journeyd_command()
        .args(["plugin", "new", "Not_A_Name"])
        .current_dir(scratch.path())
        .output()
        .expect("journeyd plugin new");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot name a plugin"));
    let output = journeyd_command()
        .args(["plugin", "new", "greet-py", "--lang", "python"])
        .current_dir(scratch.path())
        .output()
        .expect("journeyd plugin new");
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not empty"));
}
