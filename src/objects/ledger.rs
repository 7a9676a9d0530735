use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub id: String,
    #[schema(example = "ledger_entry")]
    pub object: &'static str,
    /// Entries of one money movement share a transaction; their amounts sum to zero.
    #[serde(rename = "transaction")]
    pub transaction_id: String,
    /// `accounts_receivable`, `revenue`, `tax_payable`, `cash` or `refunds`.
    pub account: String,
    /// For `accounts_receivable`: whose.
    #[serde(rename = "customer")]
    pub customer_id: Option<String>,
    /// Positive is a debit, negative a credit.
    pub amount: i64,
    pub currency: String,
    /// The invoice, payment or refund that caused it.
    #[serde(rename = "source")]
    pub source_id: String,
    pub created: i64,
}

impl LedgerEntry {
    pub const OBJECT: &'static str = "ledger_entry";
}
