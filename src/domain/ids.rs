//! Object ids: a type prefix and a time-ordered UUIDv7 in hex (`cus_0192…`). Ordering ids orders
//! objects by creation, which keyset pagination relies on.
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Customer,
    Invoice,
    InvoiceLine,
    Payment,
    Refund,
    LedgerEntry,
    LedgerTransaction,
    ApiKey,
    Audit,
    Event,
    WebhookEndpoint,
    WebhookDelivery,
    WebhookAttempt,
    Product,
    Price,
    Subscription,
    SubscriptionItem,
    SubscriptionCharge,
    CreditTransaction,
    CreditNote,
    CreditNoteLine,
    TestClock,
    Meter,
    UsageCharge,
}

impl Kind {
    pub const fn prefix(self) -> &'static str {
        match self {
            Kind::Customer => "cus_",
            Kind::Invoice => "in_",
            Kind::InvoiceLine => "il_",
            Kind::Payment => "pay_",
            Kind::Refund => "re_",
            Kind::LedgerEntry => "le_",
            Kind::LedgerTransaction => "ltx_",
            Kind::ApiKey => "key_",
            Kind::Audit => "aud_",
            Kind::Event => "evt_",
            Kind::WebhookEndpoint => "we_",
            Kind::WebhookDelivery => "wd_",
            Kind::WebhookAttempt => "wa_",
            Kind::Product => "prod_",
            Kind::Price => "price_",
            Kind::Subscription => "sub_",
            Kind::SubscriptionItem => "si_",
            Kind::SubscriptionCharge => "sch_",
            Kind::CreditTransaction => "ctx_",
            Kind::CreditNote => "cn_",
            Kind::CreditNoteLine => "cnl_",
            Kind::TestClock => "clock_",
            Kind::Meter => "mtr_",
            Kind::UsageCharge => "uch_",
        }
    }

    /// What an object of this kind is called in messages: "no such invoice line".
    pub const fn noun(self) -> &'static str {
        match self {
            Kind::Customer => "customer",
            Kind::Invoice => "invoice",
            Kind::InvoiceLine => "invoice line",
            Kind::Payment => "payment",
            Kind::Refund => "refund",
            Kind::LedgerEntry => "ledger entry",
            Kind::LedgerTransaction => "ledger transaction",
            Kind::ApiKey => "API key",
            Kind::Audit => "audit record",
            Kind::Event => "event",
            Kind::WebhookEndpoint => "webhook endpoint",
            Kind::WebhookDelivery => "webhook delivery",
            Kind::WebhookAttempt => "webhook attempt",
            Kind::Product => "product",
            Kind::Price => "price",
            Kind::Subscription => "subscription",
            Kind::SubscriptionItem => "subscription item",
            Kind::SubscriptionCharge => "subscription charge",
            Kind::CreditTransaction => "credit transaction",
            Kind::CreditNote => "credit note",
            Kind::CreditNoteLine => "credit note line",
            Kind::TestClock => "test clock",
            Kind::Meter => "meter",
            Kind::UsageCharge => "usage charge",
        }
    }
}

pub fn new_id(kind: Kind) -> String {
    format!("{}{}", kind.prefix(), Uuid::now_v7().simple())
}

/// Whether `id` has the shape of an id of `kind`. A malformed id is answered like a missing one.
pub fn is_valid(kind: Kind, id: &str) -> bool {
    id.strip_prefix(kind.prefix())
        .is_some_and(|rest| rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_valid_and_ordered_by_creation() {
        let a = new_id(Kind::Customer);
        let b = new_id(Kind::Customer);
        assert!(a.starts_with("cus_") && is_valid(Kind::Customer, &a));
        assert!(a < b, "later ids sort after earlier ones");
        assert!(!is_valid(Kind::Invoice, &a));
        assert!(!is_valid(Kind::Customer, "cus_123"));
        assert!(!is_valid(Kind::Customer, &a.to_uppercase()));
    }
}
