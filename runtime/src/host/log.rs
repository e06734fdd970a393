//! `journey:plugin/log`: plugin log lines go to the host's `tracing` output
//! and are kept (bounded) with the step's history entry.

use serde::{Deserialize, Serialize};
use wasmtime::component::{HasSelf, Linker};

use super::bindings::journey::plugin::log::{self, Level};
use super::contract::check_size;
use super::{StepInput, StepState};

/// Lines kept per step; later lines are counted, not kept.
const MAX_LINES: usize = 32;
/// Characters kept per line.
const MAX_LINE_CHARS: usize = 1024;

/// One line a plugin logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PluginLog {
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// The text (truncated to 1,024 characters).
    pub message: String,
}

pub struct LogCapability {
    instance: String,
    step: String,
    lines: Vec<PluginLog>,
    dropped: usize,
    line_limit: usize,
}

impl LogCapability {
    /// A log for one step; a line over `line_limit` bytes fails the step.
    pub fn new(input: &StepInput, line_limit: usize) -> Self {
        Self::attributed(&input.instance_id, &input.step, line_limit)
    }

    /// A log whose lines name `instance` and `step` (a channel call names
    /// its message's instance and the integration).
    pub fn attributed(instance: &str, step: &str, line_limit: usize) -> Self {
        LogCapability {
            instance: instance.to_owned(),
            step: step.to_owned(),
            lines: Vec::new(),
            dropped: 0,
            line_limit,
        }
    }

    pub fn into_lines(mut self) -> Vec<PluginLog> {
        if self.dropped > 0 {
            self.lines.push(PluginLog {
                level: "warn".into(),
                message: format!("{} more log lines were not kept", self.dropped),
            });
        }
        self.lines
    }
}

impl log::Host for LogCapability {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        check_size("log.write", "message", &message, self.line_limit).map_err(|v| v.trap())?;
        let (instance, step) = (&self.instance, &self.step);
        let name = match level {
            Level::Debug => {
                tracing::debug!(target: "plugin", %instance, %step, "{message}");
                "debug"
            }
            Level::Info => {
                tracing::info!(target: "plugin", %instance, %step, "{message}");
                "info"
            }
            Level::Warn => {
                tracing::warn!(target: "plugin", %instance, %step, "{message}");
                "warn"
            }
            Level::Error => {
                tracing::error!(target: "plugin", %instance, %step, "{message}");
                "error"
            }
        };
        if self.lines.len() >= MAX_LINES {
            self.dropped += 1;
            return Ok(());
        }
        self.lines.push(PluginLog {
            level: name.into(),
            message: message.chars().take(MAX_LINE_CHARS).collect(),
        });
        Ok(())
    }
}

pub fn add_to_linker(linker: &mut Linker<StepState>) -> wasmtime::Result<()> {
    log::add_to_linker::<_, HasSelf<LogCapability>>(linker, |state| &mut state.log)
}
