use serde::Serialize;
use utoipa::ToSchema;

/// Every event type, for subscriptions (`enabled_events`) and filters.
pub const EVENT_TYPES: &[&str] = &[
    "customer.created",
    "customer.updated",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "payment.created",
    "refund.created",
    "credit_note.created",
    "product.created",
    "product.updated",
    "price.created",
    "price.updated",
    "subscription.created",
    "subscription.updated",
    "subscription.canceled",
    "subscription.paused",
    "subscription.resumed",
    "meter.created",
    "test_clock.advanced",
    "webhook_endpoint.disabled",
];

/// An event: what changed, with the object as it was right after the change.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Event {
    /// `evt_…`
    pub id: String,
    #[schema(example = "event")]
    pub object: &'static str,
    /// For example `invoice.paid`.
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    /// The object the event is about, as the API showed it then.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl Event {
    pub const OBJECT: &'static str = "event";
}
