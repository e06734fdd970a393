//! Why a component is refused for what it imports or exports: every
//! unmet import at once, each with the fix where one is known (usually a
//! flag of the toolchain that built it), instead of the linker's first.

use wasmtime::component::Component;

use super::{WIT_VERSION, wasi};

/// The `journey:plugin` interfaces each world may import.
pub const STEP_IMPORTS: &[&str] = &["types", "log", "customer", "outbox", "metrics", "clock"];
/// The same, for channel plugins.
pub const CHANNEL_IMPORTS: &[&str] = &["types", "log"];

/// An import name split into `namespace:package`, interface and version.
struct ImportName<'a> {
    package: &'a str,
    interface: &'a str,
    version: Option<&'a str>,
}

fn split(name: &str) -> Option<ImportName<'_>> {
    let (path, version) = match name.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (name, None),
    };
    let (package, interface) = path.split_once('/')?;
    Some(ImportName {
        package,
        interface,
        version,
    })
}

/// Whether `version` can be served by an implementation of `ours`: the
/// same major version, and for 0.x the same minor one (semver).
fn compatible(version: &str, ours: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> {
        v.split(['.', '-', '+'])
            .take(3)
            .map(|part| part.parse().unwrap_or(u64::MAX))
            .collect()
    };
    let (theirs, ours) = (parts(version), parts(ours));
    match (theirs.as_slice(), ours.as_slice()) {
        ([0, minor, ..], [0, our_minor, ..]) => minor == our_minor,
        ([major, ..], [our_major, ..]) => major == our_major,
        _ => false,
    }
}

/// The imports of `component` that a plugin of a world importing
/// `journey_imports` (of `journey:plugin`) cannot have, in words, each
/// with its fix. Empty when every import is one the host provides (their
/// types are checked by linking).
pub fn unmet(
    engine: &wasmtime::Engine,
    component: &Component,
    world: &str,
    journey_imports: &[&str],
) -> Vec<String> {
    let mut unmet = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        let Some(import) = split(name) else {
            unmet.push(format!(
                "`{name}`: not an interface journeyd provides (plugins import only `journey:plugin` and WASI 0.2)"
            ));
            continue;
        };
        let version = import.version.unwrap_or("none");
        if import.package == "journey:plugin" {
            if !compatible(version, WIT_VERSION) {
                unmet.push(format!(
                    "`{name}`: built against journey:plugin {version}; this journeyd implements {WIT_VERSION}: regenerate the bindings from its `wit/journey.wit` and rebuild"
                ));
            } else if !journey_imports.contains(&import.interface) {
                unmet.push(format!(
                    "`{name}`: not available to a plugin of the `{world}` world, which imports only {}",
                    journey_imports
                        .iter()
                        .map(|interface| format!("`{interface}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            continue;
        }
        if import.package.starts_with("wasi:") {
            let provided =
                wasi::PROVIDED.contains(&&*format!("{}/{}", import.package, import.interface));
            if version.starts_with("0.3") {
                unmet.push(format!(
                    "`{name}`: WASI 0.3 (the component-model async ABI) is not supported: build for WASI 0.2 ({})",
                    ASYNC_FIX
                ));
            } else if !provided || !compatible(version, "0.2.0") {
                unmet.push(format!(
                    "`{name}`: journeyd provides WASI 0.2 {}, not this",
                    if provided {
                        "only"
                    } else {
                        "without this interface"
                    }
                ));
            }
            continue;
        }
        unmet.push(format!(
            "`{name}`: not an interface journeyd provides (plugins import only `journey:plugin` and WASI 0.2)"
        ));
    }
    unmet
}

/// How to build without the component-model async ABI, per toolchain.
pub const ASYNC_FIX: &str =
    "`componentize-qjs --sync`; `jco componentize --backend-qjs-disable-async`";

/// The fix for a compile error, where one is known.
pub fn compile_hint(error: &wasmtime::Error) -> Option<String> {
    let text = format!("{error:#}");
    if text.contains("component model async") {
        return Some(format!(
            "it uses the component-model async ABI, which journeyd does not run: build it synchronous ({ASYNC_FIX})"
        ));
    }
    text.contains("pooling allocator").then(|| {
        "the operator can raise these limits: `journeyd serve --plugin-core-instances`, `--plugin-memories`, `--plugin-tables`".to_owned()
    })
}

/// The fix for a component that exports neither world's interface, when
/// it exports one of another `journey:plugin` version.
pub fn export_hint<'a>(exports: impl IntoIterator<Item = &'a str>) -> Option<String> {
    exports.into_iter().find_map(|name| {
        let import = split(name)?;
        let version = import.version?;
        (import.package == "journey:plugin" && !compatible(version, WIT_VERSION)).then(|| {
            format!(
                "it was built against journey:plugin {version}; this journeyd implements {WIT_VERSION}: regenerate the bindings from its `wit/journey.wit` and rebuild"
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compatible_by_semver() {
        assert!(compatible("0.2.9", "0.2.0"));
        assert!(compatible("0.2.0", "0.2.6"));
        assert!(!compatible("0.1.0", "0.2.0"));
        assert!(!compatible("0.3.0-rc-2025-09-16", "0.2.0"));
        assert!(compatible("1.4.0", "1.0.0"));
        assert!(!compatible("2.0.0", "1.0.0"));
        assert!(!compatible("none", "0.2.0"));
    }

    #[test]
    fn an_export_of_another_contract_version_names_both_versions() {
        let hint = export_hint(["wasi:cli/run@0.2.0", "journey:plugin/step@0.1.0"])
            .expect("a hint for an old contract");
        assert!(
            hint.contains("0.1.0") && hint.contains(WIT_VERSION),
            "{hint}"
        );
        assert_eq!(export_hint(["journey:plugin/step@0.2.0"]), None);
    }
}
