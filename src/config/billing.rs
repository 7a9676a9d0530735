//! `[billing]`: the billing cycle's scheduler, and when an unpaid invoice makes its subscription
//! past due.
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
    /// How long after its due date an unpaid invoice makes its subscription `past_due`.
    #[serde(serialize_with = "as_humantime")]
    pub past_due_after: Duration,
    /// How old a meter event may be when it arrives.
    #[serde(serialize_with = "as_humantime")]
    pub meter_event_grace: Duration,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig {
            scheduler: true,
            poll_interval: Duration::from_secs(5),
            past_due_after: Duration::from_secs(3 * 86_400),
            meter_event_grace: Duration::from_secs(35 * 86_400),
        }
    }
}

/// The longest `meter_event_grace`, in seconds: how far back invoices look for late events.
pub const MAX_METER_EVENT_GRACE: i64 = 90 * 86_400;

pub const KEYS: &[KeyDoc] = &[
    key(
        "billing.scheduler",
        "Run the billing cycle in this process: each subscription period is invoiced when it starts (any number of replicas may; a period is billed once). Turn it off where instances are frozen between requests (serverless) and run `billing-api cycles run` on a schedule instead.",
    ),
    key(
        "billing.poll_interval",
        "How often the scheduler looks for subscription periods that have started, and for subscriptions whose standing changed (past due, or settled).",
    ),
    key(
        "billing.past_due_after",
        "How long after its due date an invoice of a subscription still unpaid (open or uncollectible) makes the subscription `past_due`; it is `active` again once none is left. 0s: at the due date.",
    ),
    key(
        "billing.meter_event_grace",
        "How old a meter event's `timestamp` may be when it arrives (older ones are refused with 422 `timestamp_out_of_range`); at most 90 days. A late event counts in the period it happened in; one for a period already invoiced goes to the next invoice, as an adjustment line.",
    ),
];

impl BillingConfig {
    pub(super) fn load(r: &mut Reader<'_>) -> Self {
        let d = Self::default();
        BillingConfig {
            scheduler: r.get("scheduler", d.scheduler),
            poll_interval: r.get("poll_interval", d.poll_interval),
            past_due_after: r.get("past_due_after", d.past_due_after),
            meter_event_grace: r.get("meter_event_grace", d.meter_event_grace),
        }
    }

    pub(super) fn validate(&self, c: &mut Checks<'_>) {
        c.positive("poll_interval", !self.poll_interval.is_zero());
        c.require(
            self.meter_event_grace_seconds() <= MAX_METER_EVENT_GRACE,
            "meter_event_grace",
            "at most 90 days (invoices look that far back for late events)",
        );
    }

    /// `meter_event_grace` in seconds.
    pub fn meter_event_grace_seconds(&self) -> i64 {
        i64::try_from(self.meter_event_grace.as_secs()).unwrap_or(i64::MAX)
    }

    /// `past_due_after` in seconds.
    pub fn past_due_after_seconds(&self) -> i64 {
        i64::try_from(self.past_due_after.as_secs()).unwrap_or(i64::MAX)
    }
}
