//! Every fixture under tests/fixtures is listed, built and used by a test:
//! Rust crates directly under it, Python and JavaScript ones under
//! `python/` and `js/`.

use journey_tests::{FIXTURES, INTERPRETED_FIXTURES, workspace};

/// The directory names under `tests/fixtures/<folder>`, sorted.
fn names_in(folder: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(workspace().join("tests/fixtures").join(folder))
        .expect("a fixtures folder")
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn every_fixture_crate_is_listed_and_used_by_a_test() {
    let on_disk: Vec<String> = names_in("")
        .into_iter()
        .filter(|name| name != "python" && name != "js")
        .collect();
    let mut listed: Vec<String> = FIXTURES.iter().map(|name| (*name).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "tests/fixtures and FIXTURES disagree");
    let mut interpreted: Vec<String> = names_in("python")
        .into_iter()
        .map(|name| format!("py_{name}"))
        .chain(names_in("js").into_iter().map(|name| format!("js_{name}")))
        .collect();
    interpreted.sort();
    let mut listed: Vec<String> = INTERPRETED_FIXTURES
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    listed.sort();
    assert_eq!(
        interpreted, listed,
        "tests/fixtures/{{python,js}} and INTERPRETED_FIXTURES disagree"
    );

    let mut sources = String::new();
    for entry in
        std::fs::read_dir(workspace().join("tests/tests/suite")).expect("tests/tests/suite")
    {
        let path = entry.expect("dir entry").path();
        if path.file_name().is_some_and(|name| name != "fixtures.rs") {
            sources.push_str(&std::fs::read_to_string(path).expect("test source"));
        }
    }
    let mut bench = String::new();
    for entry in
        std::fs::read_dir(workspace().join("runtime/src/cli/bench")).expect("bench sources")
    {
        bench.push_str(
            &std::fs::read_to_string(entry.expect("dir entry").path()).expect("bench source"),
        );
    }
    for name in FIXTURES {
        let file = format!("fixture_{}.wasm", name.replace('-', "_"));
        assert!(
            sources.contains(&format!("\"{name}\"")) || bench.contains(&file),
            "fixture `{name}` is used by no test"
        );
    }
    for name in INTERPRETED_FIXTURES {
        let file = format!("fixture_{name}.wasm");
        assert!(
            sources.contains(&format!("\"{name}\"")) || bench.contains(&file),
            "fixture `{name}` is used by no test"
        );
    }
}
