//! The billing rules, free of I/O: money and currencies, the invoice state machine and its
//! totals, the double-entry postings each money movement makes, and (for subscriptions) billing
//! periods in the tenant's calendar, what a price charges for a period, and proration.
pub mod calendar;
pub mod credit_note;
pub mod ids;
pub mod invoice;
pub mod ledger;
pub mod metadata;
pub mod metering;
pub mod money;
pub mod pricing;
pub mod proration;
pub mod ratio;
pub mod subscription;
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
    "too_many",
    "unknown_event_type",
    "invalid_url",
    "too_many_keys",
    "amount_too_large",
    "currency_required",
    "currency_mismatch",
    "currency_locked",
    "exceeds_amount_remaining",
    "exceeds_refundable",
    "invalid_pricing",
    "invalid_tiers",
    "interval_too_long",
    "price_inactive",
    "interval_mismatch",
    "invalid_time_zone",
    "too_many_invoice_lines",
    "unknown_item",
    "duplicate_item",
    "no_items",
    "outside_current_period",
    "too_many_items",
    "before_last_change",
    "unknown_invoice_line",
    "exceeds_creditable",
    "amounts_do_not_add_up",
    "lines_required",
    "invalid_advance",
    "invalid_path",
    "unknown_customer",
    "missing_meter_value",
    "invalid_meter_value",
    "timestamp_out_of_range",
    "meter_required",
    "meter_not_allowed",
    "package_not_allowed",
    "quantity_not_allowed",
    "duplicate_meter",
];

/// The field codes of rules about the objects a request names (a customer's currency, what is
/// left to pay) and of the operator's policy (webhook destinations): a request that fits the
/// OpenAPI document can still break one, and gets 422 with one of these. Every other field code
/// means the request does not fit the document (tests/contract holds the two to this).
pub const RULE_CODES: &[&str] = &[
    "invalid_url",
    "too_many_keys",
    "amount_too_large",
    "currency_required",
    "currency_mismatch",
    "currency_locked",
    "exceeds_amount_remaining",
    "exceeds_refundable",
    "invalid_tiers",
    "interval_too_long",
    "price_inactive",
    "interval_mismatch",
    "invalid_time_zone",
    "too_many_invoice_lines",
    "unknown_item",
    "duplicate_item",
    "no_items",
    "outside_current_period",
    "too_many_items",
    "before_last_change",
    "unknown_invoice_line",
    "exceeds_creditable",
    "amounts_do_not_add_up",
    "lines_required",
    "invalid_advance",
    "unknown_customer",
    "missing_meter_value",
    "invalid_meter_value",
    "timestamp_out_of_range",
    "meter_required",
    "meter_not_allowed",
    "package_not_allowed",
    "quantity_not_allowed",
    "duplicate_meter",
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
