use serde::Serialize;
use utoipa::ToSchema;

/// A meter: which events it reads and how it adds them up.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Meter {
    pub id: String,
    #[schema(example = "meter")]
    pub object: &'static str,
    /// The events it reads: those sent with this `event_name`.
    pub event_name: String,
    pub display_name: Option<String>,
    /// `count` counts events; `sum`, `max` and `latest` aggregate the whole number at
    /// `value_property`; `unique_count` counts its distinct values.
    #[schema(value_type = String, example = "sum")]
    pub aggregation: &'static str,
    /// A JSON path into the event's properties (`$.tokens`); `null` for `count`.
    pub value_property: Option<String>,
    /// JSON paths of up to 3 properties whose values split the usage into groups.
    pub group_by: Vec<String>,
    pub created: i64,
}

impl Meter {
    pub const OBJECT: &'static str = "meter";
}

/// What became of one event of a batch.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MeterEventStatus {
    pub identifier: String,
    /// `accepted`: counted now. `duplicate`: an event with this identifier was accepted before
    /// (in an earlier request or earlier in this batch) and this one is not counted.
    #[schema(value_type = String, example = "accepted")]
    pub status: &'static str,
}

/// The answer to a batch of meter events: each event's status, in the order sent.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MeterEventBatch {
    #[schema(example = "meter_event_batch")]
    pub object: &'static str,
    pub accepted: i64,
    pub duplicates: i64,
    pub events: Vec<MeterEventStatus>,
}

impl MeterEventBatch {
    pub const OBJECT: &'static str = "meter_event_batch";
}

/// A meter's usage for one group (the values of the meter's `group_by` properties).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UsageGroup {
    /// The group's values, by `group_by` path; `null` where an event had none.
    #[schema(value_type = Object)]
    pub group: serde_json::Map<String, serde_json::Value>,
    pub value: i64,
    pub events: i64,
}

/// What one meter counted for the customer over the window.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct MeterUsage {
    pub meter: String,
    pub event_name: String,
    #[schema(value_type = String, example = "sum")]
    pub aggregation: &'static str,
    /// The aggregate over every group; 0 when there were no events.
    pub value: i64,
    /// The events counted.
    pub events: i64,
    /// Per group, for a meter with `group_by` (empty otherwise).
    pub groups: Vec<UsageGroup>,
}

/// A customer's usage over `[start, end)`, counted to the minute: an event counts in the minute
/// it happened in, and the window takes the minutes from the one `start` falls in up to (not
/// including) the one `end` falls in.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CustomerUsage {
    #[schema(example = "customer_usage")]
    pub object: &'static str,
    pub customer: String,
    pub start: i64,
    pub end: i64,
    pub meters: Vec<MeterUsage>,
}

impl CustomerUsage {
    pub const OBJECT: &'static str = "customer_usage";
}
