//! The billing rules, free of I/O: money and currencies, the invoice state machine and its
//! totals, and the double-entry postings each money movement makes.
pub mod ids;
pub mod invoice;
pub mod ledger;
pub mod metadata;
pub mod money;

/// A problem with one field of a request, reported together with all the others.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Where the problem is: `amount`, `lines[2].quantity`, `metadata.plan`.
    pub field: String,
    /// Stable, machine-readable: `required`, `invalid`, `too_long`, `out_of_range`, …
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}
