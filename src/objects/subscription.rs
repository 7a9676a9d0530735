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

/// A line an operation will put on an invoice, before it exists (so it has no id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PlannedLine {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
    /// `quantity × unit_amount`.
    pub amount: i64,
    pub price: String,
    pub period: super::Period,
}

/// A credit for unused time that a change gives the customer (to their credit balance, applied
/// to their next invoices).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PlannedCredit {
    pub description: String,
    /// Pre-tax, > 0.
    pub amount: i64,
    pub price: String,
    /// The unused time credited.
    pub period: super::Period,
}

/// An invoice as it will be made: the next period's, or the one a change invoices at once.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UpcomingInvoice {
    #[schema(example = "upcoming_invoice")]
    pub object: &'static str,
    pub subscription: String,
    pub customer: String,
    pub currency: String,
    /// `subscription_cycle`, `subscription_update` or `subscription_cancel`.
    pub billing_reason: String,
    /// The period it bills (absent for an invoice of proration charges alone).
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    /// When it will be issued.
    pub issued_at: i64,
    pub lines: Vec<PlannedLine>,
    pub subtotal: i64,
    pub total: i64,
    /// The customer's credit it will take, as the balance stands now.
    pub applied_balance: i64,
    pub amount_due: i64,
}

impl UpcomingInvoice {
    pub const OBJECT: &'static str = "upcoming_invoice";
}

/// What a subscription change will do, computed by the same code as the change itself.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SubscriptionChangePreview {
    #[schema(example = "subscription_change_preview")]
    pub object: &'static str,
    /// The instant the change is prorated from.
    pub proration_date: i64,
    /// The subscription as it will be (items added by the change get their ids when it is made).
    pub subscription: Subscription,
    /// Credits for the unused time of what was charged.
    pub credits: Vec<PlannedCredit>,
    /// Charges for the rest of the period at the new prices (on the next invoice, or on
    /// `invoice` with `always_invoice`).
    pub charges: Vec<PlannedLine>,
    /// With `always_invoice`: the invoice the change makes at once.
    pub invoice: Option<UpcomingInvoice>,
}

impl SubscriptionChangePreview {
    pub const OBJECT: &'static str = "subscription_change_preview";
}
