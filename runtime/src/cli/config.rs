//! `journeyd.toml`: every setting of `journeyd serve` in one file, and
//! `journeyd config check`.
//!
//! The file's keys are `serve`'s flags without their dashes, `-` written
//! `_` (`step_workers = 4`, `retention = "90d"`). A flag on the command
//! line wins over its environment variable, which wins over the file,
//! which wins over the default. The file's values go through the same
//! parsing as the flags, so a bad value is refused naming the setting,
//! and an unknown key is refused naming the settings there are.
//!
//! One section is not a flag: `[integrations.CHANNEL]` tables declare
//! integrations (the fields of `PUT /v1/integrations/{channel}`), set at
//! every start of `serve` (see [`integrations`]).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory as _, FromArgMatches as _};

use super::{Cli, ServeArgs};
use journey_runtime::delivery::IntegrationSpec;

/// The section of the file that declares integrations.
const INTEGRATIONS: &str = "integrations";

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The command line.
    Flag,
    /// Its environment variable.
    Environment,
    /// The config file.
    File,
    /// Nobody set it.
    Default,
}

impl Source {
    fn label(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::Environment => "environment",
            Source::File => "file",
            Source::Default => "default",
        }
    }
}

/// The settings of `serve` that are not paths to this file itself.
fn settings() -> Vec<clap::Arg> {
    let command = Cli::command();
    let serve = command
        .find_subcommand("serve")
        .expect("journeyd has a serve subcommand")
        .clone();
    serve
        .get_arguments()
        .filter(|arg| arg.get_long().is_some() && arg.get_id() != "config")
        .cloned()
        .collect()
}

/// The command line `args` with the settings of the config file that no
/// flag or environment variable set added as flags, and where each
/// setting came from. `args` are the process's arguments.
fn with_file(
    args: Vec<OsString>,
    file: &Path,
) -> anyhow::Result<(Vec<OsString>, BTreeMap<String, Source>)> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}", file.display()))?;
    let matches = Cli::command()
        .try_get_matches_from(&args)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let serve = matches
        .subcommand_matches("serve")
        .or_else(|| {
            matches
                .subcommand_matches("config")
                .and_then(|config| config.subcommand_matches("check"))
        })
        .context("a config file is for `journeyd serve`")?;
    let known = settings();
    let mut sources = BTreeMap::new();
    for arg in &known {
        let id = arg.get_id().as_str();
        let source = match serve.value_source(id) {
            Some(ValueSource::CommandLine) => Source::Flag,
            Some(ValueSource::EnvVariable) => Source::Environment,
            _ => Source::Default,
        };
        sources.insert(id.to_owned(), source);
    }
    let mut args = args;
    for (key, value) in &table {
        if key == INTEGRATIONS {
            declared(file, value)?;
            continue;
        }
        let Some(arg) = known.iter().find(|arg| arg.get_id().as_str() == key) else {
            let names: Vec<&str> = known.iter().map(|arg| arg.get_id().as_str()).collect();
            bail!(
                "{}: `{key}` is not a setting of journeyd serve; the settings are {}",
                file.display(),
                names.join(", ")
            );
        };
        if sources[key] != Source::Default {
            continue;
        }
        let flag = format!("--{}", arg.get_long().expect("settings have long flags"));
        let takes_value = arg.get_action().takes_values();
        match value {
            toml::Value::Boolean(on) if !takes_value => {
                if *on {
                    args.push(flag.into());
                }
            }
            toml::Value::String(text) if takes_value => {
                args.push(flag.into());
                args.push(text.into());
            }
            toml::Value::Integer(number) if takes_value => {
                args.push(flag.into());
                args.push(number.to_string().into());
            }
            other => bail!(
                "{}: `{key}` = {other} is not {}",
                file.display(),
                if takes_value {
                    "a string or a number"
                } else {
                    "true or false"
                }
            ),
        }
        sources.insert(key.clone(), Source::File);
    }
    Ok((args, sources))
}

/// The integrations the `[integrations]` section of `file` declares,
/// checked for form (the server checks the rest as `PUT` would).
fn declared(file: &Path, section: &toml::Value) -> anyhow::Result<Vec<(String, IntegrationSpec)>> {
    let Some(channels) = section.as_table() else {
        bail!(
            "{}: `{INTEGRATIONS}` is a section of `[integrations.CHANNEL]` tables",
            file.display()
        );
    };
    channels
        .iter()
        .map(|(channel, spec)| {
            let spec: IntegrationSpec = spec.clone().try_into().map_err(|error| {
                anyhow::anyhow!("{}: [integrations.{channel}]: {error}", file.display())
            })?;
            Ok((channel.clone(), spec))
        })
        .collect()
}

/// The integrations `file` declares (none without a file or section).
pub fn integrations(file: Option<&Path>) -> anyhow::Result<Vec<(String, IntegrationSpec)>> {
    let Some(file) = file else {
        return Ok(Vec::new());
    };
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}", file.display()))?;
    match table.get(INTEGRATIONS) {
        Some(section) => declared(file, section),
        None => Ok(Vec::new()),
    }
}

/// The config file named by `serve --config` (or its variable), if any.
fn config_path(args: &[OsString]) -> anyhow::Result<Option<PathBuf>> {
    let matches = Cli::command()
        .try_get_matches_from(args)
        .map_err(|error| anyhow::anyhow!("{error}"))?;
    let serve = matches.subcommand_matches("serve").or_else(|| {
        matches
            .subcommand_matches("config")
            .and_then(|config| config.subcommand_matches("check"))
    });
    Ok(serve.and_then(|serve| serve.get_one::<PathBuf>("config").cloned()))
}

/// Parse the process's command line, with `serve`'s config file applied.
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    let parsed = match config_path(&args) {
        Ok(Some(file)) => with_file(args, &file).and_then(|(args, _)| {
            Cli::try_parse_from_args(args)
                .with_context(|| format!("with the settings of {}", file.display()))
        }),
        // No file, or a command line clap refuses: clap says why.
        _ => return <Cli as clap::Parser>::parse(),
    };
    match parsed {
        Ok(cli) => cli,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(2);
        }
    }
}

impl Cli {
    fn try_parse_from_args(args: Vec<OsString>) -> anyhow::Result<Cli> {
        let matches: ArgMatches = Cli::command()
            .try_get_matches_from(args)
            .map_err(|error| anyhow::anyhow!("{}", error.render()))?;
        Ok(Cli::from_arg_matches(&matches)?)
    }
}

/// `journeyd config check`: the settings `serve` would run with (this
/// command line, the environment and the file given with `--config`),
/// each with where it came from; an error for a bad file or value.
pub fn check(file: Option<&Path>) -> anyhow::Result<()> {
    let process: Vec<OsString> = std::env::args_os().collect();
    let (args, from_file) = match file {
        Some(file) => with_file(process, file)?,
        None => (process, BTreeMap::new()),
    };
    let matches = Cli::command()
        .try_get_matches_from(&args)
        .map_err(|error| anyhow::anyhow!("{}", error.render()))?;
    let check = matches
        .subcommand_matches("config")
        .and_then(|config| config.subcommand_matches("check"))
        .context("expected `journeyd config check`")?;
    // The values go through serve's own parsing.
    ServeArgs::from_arg_matches(check).map_err(|error| anyhow::anyhow!("{}", error.render()))?;
    for arg in settings() {
        let id = arg.get_id().as_str();
        let value = check
            .get_raw(id)
            .map(|values| {
                values
                    .map(|value| value.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| "-".into());
        let source = match from_file.get(id) {
            Some(Source::File) => Source::File,
            _ => match check.value_source(id) {
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Environment,
                _ => Source::Default,
            },
        };
        println!("  {id:<24} {value:<28} ({})", source.label());
    }
    for (channel, spec) in integrations(file)? {
        println!(
            "  integration {:<12} plugin {:<16} hosts {} (file; set at start)",
            channel,
            spec.plugin,
            spec.hosts.join(" ")
        );
    }
    match file {
        Some(file) => println!("{}: ok", file.display()),
        None => println!(
            "no config file (give one with --config or JOURNEYD_SERVE_CONFIG): defaults, flags and environment only"
        ),
    }
    Ok(())
}
