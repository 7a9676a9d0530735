//! `[shutdown]`: how a stopping instance lets its load balancer notice, then drains.
use std::time::Duration;

use serde::Serialize;

use super::section::{KeyDoc, Reader, key};
use super::value::as_humantime;

#[derive(Debug, Clone, Serialize)]
pub struct ShutdownConfig {
    #[serde(serialize_with = "as_humantime")]
    pub grace_period: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            grace_period: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(20),
        }
    }
}

pub const KEYS: &[KeyDoc] = &[
    key(
        "shutdown.grace_period",
        "After SIGTERM, how long the API keeps serving while `/health/ready` answers 503, so load balancers stop sending traffic.",
    ),
    key(
        "shutdown.drain_timeout",
        "Then, how long in-flight requests may take to finish before the process exits.",
    ),
];

impl ShutdownConfig {
    pub(super) fn load(r: &mut Reader<'_>) -> Self {
        let d = Self::default();
        ShutdownConfig {
            grace_period: r.get("grace_period", d.grace_period),
            drain_timeout: r.get("drain_timeout", d.drain_timeout),
        }
    }
}
