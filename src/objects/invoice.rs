use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::invoice::Status;
use crate::domain::metadata::Metadata;

/// One line of an invoice, as stored and as shown.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LineItem {
    pub id: String,
    #[schema(example = "line_item")]
    pub object: &'static str,
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
    /// Tax rate in basis points (825 = 8.25%).
    pub tax_rate_bps: Option<i64>,
    /// `quantity × unit_amount`.
    pub amount: i64,
    /// `amount × tax_rate_bps / 10000`, rounded half away from zero.
    pub tax: i64,
    /// The price a subscription's line bills.
    pub price: Option<String>,
    /// The time a subscription's line bills.
    pub period: Option<Period>,
    #[serde(skip)]
    pub created: i64,
}

/// `[start, end)`, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Period {
    pub start: i64,
    pub end: i64,
}

impl LineItem {
    pub const OBJECT: &'static str = "line_item";
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LineList {
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<LineItem>,
    pub has_more: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Invoice {
    pub id: String,
    #[schema(example = "invoice")]
    pub object: &'static str,
    pub customer: String,
    /// The subscription that made this invoice.
    pub subscription: Option<String>,
    /// Why it was made: `subscription_create`, `subscription_cycle`, `subscription_update`,
    /// `subscription_cancel`, `subscription_resume`, or none (made by hand).
    pub billing_reason: Option<String>,
    /// The subscription period it bills, `[period_start, period_end)`.
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub status: Status,
    pub currency: String,
    /// Assigned at finalization: the tenant's prefix and a gapless sequence number.
    pub number: Option<String>,
    pub due_date: Option<i64>,
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
    pub amount_paid: i64,
    pub amount_refunded: i64,
    /// The customer's credit balance applied when the invoice was finalized.
    pub applied_balance: i64,
    /// What the customer is asked to pay: `total - applied_balance`.
    pub amount_due: i64,
    /// What is left to pay on an open or uncollectible invoice: `amount_due - amount_paid -
    /// pre_payment_credit_notes_amount`; 0 otherwise.
    pub amount_remaining: i64,
    /// What credit notes took off what was left to pay.
    pub pre_payment_credit_notes_amount: i64,
    /// What credit notes gave back after payment (refunded or credited to the customer's balance).
    pub post_payment_credit_notes_amount: i64,
    pub lines: LineList,
    pub metadata: Metadata,
    pub created: i64,
    pub finalized_at: Option<i64>,
    pub paid_at: Option<i64>,
    pub voided_at: Option<i64>,
    pub marked_uncollectible_at: Option<i64>,
}
