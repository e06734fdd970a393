//! `journeyd.toml`: serve's settings from one file, a flag over its
//! environment variable over the file over the default, checked by
//! `journeyd config check`, a bad file refused naming what is wrong.

use std::process::Output;

use journey_tests::{Journeyd, journeyd_command, plugin};

fn journeyd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = journeyd_command();
    command
        .args(args)
        .env_remove("JOURNEYD_RETENTION")
        .env_remove("JOURNEYD_SERVE_CONFIG")
        .env_remove("JOURNEYD_STEP_WORKERS")
        .env_remove("JOURNEYD_TOKEN_MAX_AGE")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("journeyd runs")
}

/// The line `config check` prints for `setting`.
fn line<'a>(printed: &'a str, setting: &str) -> &'a str {
    printed
        .lines()
        .find(|line| line.split_whitespace().next() == Some(setting))
        .unwrap_or_else(|| panic!("no line for {setting} in:\n{printed}"))
}

#[test]
fn config_check_shows_each_setting_and_where_it_came_from() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("journeyd.toml");
    std::fs::write(
        &file,
        "retention = \"7d\"\nstep_workers = 3\ndrain_timeout = \"5s\"\nsimulated_clock = true\n",
    )
    .expect("write");
    let file = file.to_str().expect("a UTF-8 path");

    let output = journeyd(&["config", "check", "--config", file], &[]);
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{output:?}");
    assert!(
        line(&printed, "retention").contains("7d")
            && line(&printed, "retention").ends_with("(file)")
    );
    assert!(line(&printed, "step_workers").contains('3'));
    assert!(
        line(&printed, "simulated_clock").ends_with("(file)"),
        "{printed}"
    );
    assert!(line(&printed, "listen").ends_with("(default)"), "{printed}");
    assert!(printed.trim_end().ends_with(": ok"), "{printed}");

    // The environment wins over the file, a flag over both.
    let output = journeyd(
        &["config", "check", "--config", file],
        &[("JOURNEYD_RETENTION", "8d")],
    );
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(line(&printed, "retention").contains("8d"), "{printed}");
    assert!(
        line(&printed, "retention").ends_with("(environment)"),
        "{printed}"
    );
    let output = journeyd(
        &["config", "check", "--config", file, "--retention", "9d"],
        &[("JOURNEYD_RETENTION", "8d")],
    );
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(line(&printed, "retention").contains("9d"), "{printed}");
    assert!(line(&printed, "retention").ends_with("(flag)"), "{printed}");
}

#[test]
fn a_bad_config_file_is_refused_naming_what_is_wrong() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = [
        (
            "retension = \"7d\"\n",
            "`retension` is not a setting of journeyd serve",
        ),
        ("retention = \"soon\"\n", "soon"),
        ("step_workers = \"many\"\n", "many"),
        (
            "simulated_clock = \"yes\"\n",
            "`simulated_clock` = \"yes\" is not true or false",
        ),
        ("retention = \n", "journeyd.toml"),
        ("integrations = 3\n", "`integrations` is a section"),
        (
            "[integrations.email]\nplugin = \"sendgrid\"\nhostz = []\n",
            "[integrations.email]: unknown field `hostz`",
        ),
        ("token_max_age = \"a while\"\n", "a while"),
    ];
    for (text, named) in cases {
        let file = dir.path().join("journeyd.toml");
        std::fs::write(&file, text).expect("write");
        let file = file.to_str().expect("a UTF-8 path");
        for args in [
            vec!["config", "check", "--config", file],
            vec![
                "serve",
                "--config",
                file,
                "--data",
                "/nonexistent/never-created",
            ],
        ] {
            let output = journeyd(&args, &[]);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{text:?} with {args:?} was taken");
            assert!(stderr.contains(named), "{text:?} with {args:?}: {stderr}");
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
}

#[test]
fn serve_runs_with_the_settings_of_its_file() {
    let data = tempfile::tempdir().expect("temp dir");
    let file = data.path().join("journeyd.toml");
    std::fs::write(
        &file,
        "simulated_clock = true\nsimulated_clock_start = 1796112000000\n",
    )
    .expect("write");
    let journeyd = Journeyd::start_with(data.path(), &["--config", file.to_str().expect("UTF-8")]);
    let clock = journeyd.get("/v1/clock");
    assert_eq!(clock["simulated"], true, "{clock}");
    assert_eq!(clock["now_ms"], 1_796_112_000_000_u64, "{clock}");
}

#[test]
fn the_files_integrations_are_set_at_start_or_once_their_plugin_is_pushed() {
    let data = tempfile::tempdir().expect("temp dir");
    let secret = data.path().join("slack-path");
    std::fs::write(&secret, "T000/B000/team").expect("write");
    let file = data.path().join("journeyd.toml");
    std::fs::write(
        &file,
        format!(
            r#"
simulated_clock = true

[integrations.team]
plugin = "slack"
hosts = ["127.0.0.1:9"]
secrets = {{ webhook_path = "file:{}" }}
config = {{ url = "http://127.0.0.1:9/services/{{{{secret:webhook_path}}}}" }}
max_attempts = 3
"#,
            secret.display()
        ),
    )
    .expect("write");
    let file = file.to_str().expect("UTF-8");
    let channels = |server: &Journeyd| -> Vec<serde_json::Value> {
        server.get("/v1/integrations")["integrations"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };

    // The first start has no plugins yet: the integration waits for its
    // plugin, and is set the moment it is pushed.
    let mut server = Journeyd::start_with(data.path(), &["--config", file]);
    assert!(channels(&server).is_empty());
    let (status, body) = server.push("slack", plugin("slack"));
    assert_eq!(status, 201, "{body}");
    let set = channels(&server);
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!(set[0]["channel"], "team");
    assert_eq!(set[0]["max_attempts"], 3);

    // Changed through the API, it is the file's again after a start.
    let (status, body) = server.request(
        "PUT",
        "/v1/integrations/team",
        Some(
            serde_json::json!({
                "plugin": "slack",
                "hosts": ["127.0.0.1:9"],
                "secrets": { "webhook_path": format!("file:{}", secret.display()) },
                "config": { "url": "http://127.0.0.1:9/services/{{secret:webhook_path}}" },
                "max_attempts": 7,
            })
            .to_string()
            .into_bytes(),
        ),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        server
            .terminate(std::time::Duration::from_secs(60))
            .success()
    );
    let restarted = Journeyd::start_with(data.path(), &["--config", file]);
    let set = channels(&restarted);
    assert_eq!(set[0]["max_attempts"], 3, "{set:?}");

    let output = journeyd(&["config", "check", "--config", file], &[]);
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{output:?}");
    assert!(
        line(&printed, "integration").contains("team")
            && line(&printed, "integration").contains("slack"),
        "{printed}"
    );
}
