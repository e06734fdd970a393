//! Every fixture under tests/fixtures is listed, built and used by a test.

use journey_tests::{FIXTURES, workspace};

#[test]
fn every_fixture_crate_is_listed_and_used_by_a_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(workspace().join("tests/fixtures"))
        .expect("tests/fixtures")
        .map(|entry| {
            entry
                .expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|name| (*name).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "tests/fixtures and FIXTURES disagree");

    let mut sources = String::new();
    for entry in std::fs::read_dir(workspace().join("tests/tests")).expect("tests/tests") {
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
}
