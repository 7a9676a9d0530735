use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::metadata::Metadata;

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Payment {
    pub id: String,
    #[schema(example = "payment")]
    pub object: &'static str,
    #[serde(rename = "invoice")]
    pub invoice_id: String,
    #[serde(rename = "customer")]
    pub customer_id: String,
    pub amount: i64,
    pub amount_refunded: i64,
    pub currency: String,
    /// The caller's reference (unique per tenant), e.g. a bank transfer id.
    pub reference: Option<String>,
    pub metadata: Metadata,
    pub created: i64,
}

impl Payment {
    pub const OBJECT: &'static str = "payment";
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Refund {
    pub id: String,
    #[schema(example = "refund")]
    pub object: &'static str,
    #[serde(rename = "payment")]
    pub payment_id: String,
    #[serde(rename = "invoice")]
    pub invoice_id: String,
    pub amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub metadata: Metadata,
    pub created: i64,
}

impl Refund {
    pub const OBJECT: &'static str = "refund";
}
