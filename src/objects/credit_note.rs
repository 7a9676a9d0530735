use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::metadata::Metadata;

/// A credit note: a document that reduces a finalized invoice, numbered gaplessly per tenant.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CreditNote {
    pub id: String,
    #[schema(example = "credit_note")]
    pub object: &'static str,
    /// The tenant's invoice prefix, `CN-` and a gapless sequence number.
    pub number: String,
    pub invoice: String,
    pub customer: String,
    pub currency: String,
    /// `duplicate`, `fraudulent`, `order_change` or `product_unsatisfactory`.
    pub reason: Option<String>,
    pub memo: Option<String>,
    /// Credited before tax.
    pub subtotal: i64,
    pub tax: i64,
    /// `subtotal + tax` = `pre_payment_amount + refund_amount + credit_amount`.
    pub total: i64,
    /// Taken off what was left to pay on the invoice.
    pub pre_payment_amount: i64,
    /// Refunded to the invoice's payments (as refunds, newest payment first).
    pub refund_amount: i64,
    /// Added to the customer's credit balance, applied to their next invoices.
    pub credit_amount: i64,
    pub lines: Vec<CreditNoteLine>,
    pub metadata: Metadata,
    pub created: i64,
}

impl CreditNote {
    pub const OBJECT: &'static str = "credit_note";
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CreditNoteLine {
    pub id: String,
    #[schema(example = "credit_note_line")]
    pub object: &'static str,
    /// The invoice line credited; none for a credit note of an amount.
    pub invoice_line: Option<String>,
    pub description: String,
    /// Credited before tax.
    pub amount: i64,
    /// The tax given back with it, at the invoice line's rate.
    pub tax: i64,
}

impl CreditNoteLine {
    pub const OBJECT: &'static str = "credit_note_line";
}

/// A movement of a customer's credit balance.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CreditTransaction {
    pub id: String,
    #[schema(example = "credit_transaction")]
    pub object: &'static str,
    pub customer: String,
    pub currency: String,
    /// Positive: credit granted (proration, a credit note, a voided invoice's credit returned);
    /// negative: credit applied to an invoice.
    pub amount: i64,
    /// The balance in this currency after it.
    pub balance_after: i64,
    pub description: String,
    pub subscription: Option<String>,
    pub invoice: Option<String>,
    pub created: i64,
}

impl CreditTransaction {
    pub const OBJECT: &'static str = "credit_transaction";
}
