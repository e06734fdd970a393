//! What a new user meets on the command line: client commands find a
//! server started on a port the system picked, a user's mistake is one
//! readable line (never a backtrace), an unreachable server names the
//! ways to point at one, and a log that is not a terminal has no colour
//! codes.

use std::process::Output;

use journey_tests::{Journeyd, journeyd_command};

/// Run `journeyd ARGS` with `JOURNEYD_DATA` set to `data`, no
/// `JOURNEYD_URL`, and backtraces asked for.
fn journeyd(data: &std::path::Path, args: &[&str]) -> Output {
    journeyd_command()
        .args(args)
        .env("JOURNEYD_DATA", data)
        .env_remove("JOURNEYD_URL")
        .env_remove("JOURNEYD_TOKEN")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("journeyd runs")
}

#[test]
fn client_commands_find_a_server_on_a_picked_port_through_its_data_directory() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = Journeyd::start(data.path());
    let output = journeyd(data.path(), &["clock", "show"]);
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(printed.starts_with("clock "), "{printed}");
    let address = std::fs::read_to_string(data.path().join("address")).expect("address file");
    assert_eq!(address, server.url);
}

#[test]
fn a_mistake_is_one_line_without_a_backtrace_and_an_unreachable_server_says_how_to_name_one() {
    let data = tempfile::tempdir().expect("temp dir");
    let _server = Journeyd::start(data.path());
    let output = journeyd(data.path(), &["instance", "show", "i-404"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        said.trim_end(),
        "error: instance `i-404` does not exist [unknown_instance, HTTP 404 Not Found]"
    );

    let nowhere = tempfile::tempdir().expect("temp dir");
    let output = journeyd_command()
        .args(["--server", "http://127.0.0.1:9", "clock", "show"])
        .env("JOURNEYD_DATA", nowhere.path())
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("journeyd runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("cannot reach journeyd at http://127.0.0.1:9")
            && said.contains("--server")
            && said.contains("JOURNEYD_URL"),
        "{said}"
    );
    assert!(!said.contains("backtrace"), "{said}");
}

#[test]
fn a_log_that_is_not_a_terminal_has_no_colour_codes() {
    let data = tempfile::tempdir().expect("temp dir");
    let log = data.path().join("journeyd.log");
    let mut child = journeyd_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path().join("store"))
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("journeyd starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready)
        .expect("a readiness line");
    assert!(ready.starts_with("journeyd listening on "), "{ready}");
    let _ = child.kill();
    let _ = child.wait();
    let written = std::fs::read_to_string(&log).expect("the log");
    assert!(written.contains("serving"), "{written}");
    assert!(
        !written.contains('\u{1b}'),
        "colour codes in the log: {written:?}"
    );
}
