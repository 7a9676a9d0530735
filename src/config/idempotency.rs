//! `[idempotency]`: how long `Idempotency-Key`s and their stored answers are kept.
use std::time::Duration;

use serde::Serialize;

use super::section::{Checks, KeyDoc, Reader, key};
use super::value::as_humantime;

#[derive(Debug, Clone, Serialize)]
pub struct IdempotencyConfig {
    #[serde(serialize_with = "as_humantime")]
    pub retention: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub purge_interval: Duration,
    /// Purge in this process; off where a scheduled `billing-api idempotency purge` does it.
    pub purger: bool,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            retention: Duration::from_secs(24 * 3600),
            purge_interval: Duration::from_secs(600),
            purger: true,
        }
    }
}

pub const KEYS: &[KeyDoc] = &[
    key(
        "idempotency.retention",
        "How long an `Idempotency-Key` and its stored response are kept.",
    ),
    key(
        "idempotency.purge_interval",
        "How often expired idempotency keys are deleted.",
    ),
    key(
        "idempotency.purger",
        "Delete expired keys in this process. Turn it off where instances are frozen between requests (serverless) and run `billing-api idempotency purge` on a schedule instead.",
    ),
];

impl IdempotencyConfig {
    pub(super) fn load(r: &mut Reader<'_>) -> Self {
        let d = Self::default();
        IdempotencyConfig {
            retention: r.get("retention", d.retention),
            purge_interval: r.get("purge_interval", d.purge_interval),
            purger: r.get("purger", d.purger),
        }
    }

    pub(super) fn validate(&self, c: &mut Checks<'_>) {
        c.positive("retention", !self.retention.is_zero());
        c.positive("purge_interval", !self.purge_interval.is_zero());
    }
}
