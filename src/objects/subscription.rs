use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::catalog::Recurring;
use crate::domain::metadata::Metadata;
use crate::domain::subscription::Status;

/// How a subscription's invoices are to be paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CollectionMethod {
    /// Paid by your own payment flow when issued: the invoice is due at once.
    ChargeAutomatically,
    /// Sent to the customer, due `days_until_due` days after it is issued.
    SendInvoice,
}

impl CollectionMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CollectionMethod::ChargeAutomatically => "charge_automatically",
            CollectionMethod::SendInvoice => "send_invoice",
        }
    }

    pub fn parse(s: &str) -> Option<CollectionMethod> {
        [CollectionMethod::ChargeAutomatically, CollectionMethod::SendInvoice]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// One price a subscription bills every period, with its quantity.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SubscriptionItem {
    pub id: String,
    #[schema(example = "subscription_item")]
    pub object: &'static str,
    pub price: String,
    pub quantity: i64,
    pub created: i64,
}

impl SubscriptionItem {
    pub const OBJECT: &'static str = "subscription_item";
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SubscriptionItemList {
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<SubscriptionItem>,
    pub has_more: bool,
}

/// A customer billed every period for its items. Periods are counted from
/// `billing_cycle_anchor` in `time_zone` (see docs/billing.md); each period's invoice is made
/// and finalized when the period starts.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Subscription {
    pub id: String,
    #[schema(example = "subscription")]
    pub object: &'static str,
    pub customer: String,
    pub status: Status,
    pub currency: String,
    pub items: SubscriptionItemList,
    pub recurring: Recurring,
    /// The IANA time zone period boundaries are computed in.
    pub time_zone: String,
    /// Where periods are counted from: a local date and time in `time_zone`.
    #[schema(example = "2025-01-31T00:00:00")]
    pub billing_cycle_anchor: String,
    pub current_period_start: i64,
    pub current_period_end: i64,
    pub trial_end: Option<i64>,
    /// Canceled when the current period ends, instead of renewing.
    pub cancel_at_period_end: bool,
    /// When the cancellation was asked for.
    pub canceled_at: Option<i64>,
    /// When the subscription ended.
    pub ended_at: Option<i64>,
    pub collection_method: CollectionMethod,
    pub days_until_due: Option<i64>,
    pub metadata: Metadata,
    pub created: i64,
}

impl Subscription {
    pub const OBJECT: &'static str = "subscription";
}
