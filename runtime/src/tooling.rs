//! Helpers for the benchmark (`journeyd bench`), the plugin scaffold
//! (`journeyd plugin new`) and the black-box tests: journeys and
//! components shaped for a run, a send policy without caps, and what may
//! name a new plugin. Nothing on the runtime's own path uses them.

use std::collections::HashMap;

use crate::host;

/// `component` with a custom section appended: the same code under another
/// digest, as a rebuilt plugin would be (benchmarks and tests use it to
/// make versions to swap between).
pub fn with_custom_section(mut component: Vec<u8>, name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut value: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut content = Vec::new();
    leb128(name.len(), &mut content);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    component.push(0);
    leb128(content.len(), &mut component);
    component.extend_from_slice(&content);
    component
}

/// A journey's TOML with the steps run by `plugins` cut out: a transition
/// into a removed step leads where that step's `via` transition leads.
/// The benchmark and the core tests use it to run the enquiry journey
/// without its wait for a person (`skip_steps(source, &["sla",
/// "escalate"], "resolved")`). Returns the TOML, or why it cannot.
pub fn skip_steps(source: &str, plugins: &[&str], via: &str) -> Result<String, String> {
    let mut journey: toml::Table = toml::from_str(source).map_err(|error| error.to_string())?;
    let steps = journey
        .get_mut("steps")
        .and_then(toml::Value::as_array_mut)
        .ok_or("the journey has no steps")?;
    let removed: HashMap<String, String> = steps
        .iter()
        .filter(|step| {
            step.get("plugin")
                .and_then(toml::Value::as_str)
                .is_some_and(|plugin| plugins.contains(&plugin))
        })
        .filter_map(|step| {
            let name = step.get("name")?.as_str()?.to_owned();
            let next = step.get("on")?.get(via)?.as_str()?.to_owned();
            Some((name, next))
        })
        .collect();
    steps.retain(|step| {
        !step
            .get("plugin")
            .and_then(toml::Value::as_str)
            .is_some_and(|plugin| plugins.contains(&plugin))
    });
    for step in steps.iter_mut() {
        let Some(on) = step.get_mut("on").and_then(toml::Value::as_table_mut) else {
            continue;
        };
        for (_, target) in on.iter_mut() {
            if let Some(next) = target.as_str().and_then(|name| removed.get(name)) {
                *target = toml::Value::String(next.clone());
            }
        }
    }
    toml::to_string(&journey).map_err(|error| error.to_string())
}

/// A policy without caps.
#[derive(Debug, Default)]
pub struct NoCaps;

impl host::SendPolicy for NoCaps {
    fn admit(&self, _: &str, _: &str, _: &str, _: u64) -> Result<host::Admission, host::HostFault> {
        Ok(host::Admission::Uncapped)
    }
}

/// Whether `name` can name a new plugin (and so a Rust crate, a Python
/// module's folder, a file): lowercase letters, digits and `-`, starting
/// with a letter and not ending with `-`, at most 64 bytes.
pub fn is_plugin_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::is_plugin_name;

    #[test]
    fn plugin_names_are_lowercase_words() {
        assert!(is_plugin_name("greet"));
        assert!(is_plugin_name("next-best-channel2"));
        for bad in [
            "",
            "Greet",
            "2fa",
            "a_b",
            "a/b",
            "trailing-",
            &"x".repeat(65),
        ] {
            assert!(!is_plugin_name(bad), "{bad:?}");
        }
    }
}
