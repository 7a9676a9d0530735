//! `[log]`: which lines are written, and in which format.
use serde::Serialize;

use super::layers::Raw;
use super::section::{Checks, KeyDoc, Reader, key};
use super::value::FromRaw;

#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromRaw for LogFormat {
    const EXPECTED: &'static str = "\"json\" or \"pretty\"";
    fn from_raw(raw: &Raw) -> Option<Self> {
        match String::from_raw(raw)?.as_str() {
            "json" => Some(LogFormat::Json),
            "pretty" => Some(LogFormat::Pretty),
            _ => None,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

pub const KEYS: &[KeyDoc] = &[
    key(
        "log.level",
        "Log filter: a level (`info`) or directives (`info,billing_api=debug`). `RUST_LOG` wins when set.",
    ),
    key(
        "log.format",
        "`json` (one object per line) or `pretty` (for a terminal).",
    ),
];

impl LogConfig {
    pub(super) fn load(r: &mut Reader<'_>) -> Self {
        let d = Self::default();
        LogConfig {
            level: r.get("level", d.level),
            format: r.get("format", d.format),
        }
    }

    pub(super) fn validate(&self, c: &mut Checks<'_>) {
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.level) {
            c.require(false, "level", format!("invalid filter {:?}: {e}", self.level));
        }
    }
}
