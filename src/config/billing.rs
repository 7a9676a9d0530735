//! `[billing]`: the billing cycle's scheduler.
use std::time::Duration;

use serde::Serialize;

use super::section::{Checks, KeyDoc, Reader, key};
use super::value::as_humantime;

#[derive(Debug, Clone, Serialize)]
pub struct BillingConfig {
    /// Run the billing cycle in this process.
    pub scheduler: bool,
    #[serde(serialize_with = "as_humantime")]
    pub poll_interval: Duration,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            scheduler: true,
            poll_interval: Duration::from_secs(5),
        }
    }
}

pub const KEYS: &[KeyDoc] = &[
    key(
        "billing.scheduler",
        "Run the billing cycle in this process: each subscription period is invoiced when it starts (any number of replicas may; a period is billed once). Turn it off where instances are frozen between requests (serverless) and run `billing-api cycles run` on a schedule instead.",
    ),
    key(
        "billing.poll_interval",
        "How often the scheduler looks for subscription periods that have started.",
    ),
];

impl BillingConfig {
    pub(super) fn load(r: &mut Reader<'_>) -> Self {
        let d = Self::default();
        BillingConfig {
            scheduler: r.get("scheduler", d.scheduler),
            poll_interval: r.get("poll_interval", d.poll_interval),
        }
    }

    pub(super) fn validate(&self, c: &mut Checks<'_>) {
        c.positive("poll_interval", !self.poll_interval.is_zero());
    }
}
