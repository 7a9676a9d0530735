//! The billing rules, free of I/O: money and currencies, the invoice state machine and its
//! totals, and the double-entry postings each money movement makes.
pub mod ids;
pub mod invoice;
pub mod ledger;
pub mod metadata;
pub mod money;
pub mod text;

/// A problem with one field of a request, reported together with all the others.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// Where the problem is: `amount`, `lines[2].quantity`, `metadata.plan`.
    pub field: String,
    /// Stable, machine-readable: `required`, `invalid`, `too_long`, `out_of_range`, …
    pub code: &'static str,
    pub message: String,
}

/// Every field error `code`, each documented in docs/errors.md.
pub const FIELD_CODES: &[&str] = &[
    "required",
    "invalid",
    "invalid_length",
    "invalid_characters",
    "invalid_email",
    "invalid_currency",
    "invalid_id",
    "invalid_metadata",
    "out_of_range",
    "unknown_field",
    "unknown_parameter",
    "repeated_parameter",
    "conflict",
    "too_many",
    "too_many_keys",
    "amount_too_large",
    "currency_mismatch",
    "currency_locked",
    "exceeds_amount_remaining",
    "exceeds_refundable",
    "invalid_url",
    "unknown_event_type",
];

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(
            FIELD_CODES.contains(&code),
            "field error code {code:?} is not in FIELD_CODES (and docs/errors.md)"
        );
        FieldError {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}
