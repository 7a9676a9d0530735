//! The objects the API returns and events carry, Stripe-style: an `object` type name, a prefixed
//! `id`, `created` (Unix seconds), and amounts as integers in the currency's minor unit.
//!
//! They sit below the store and every layer above it: the store reads rows straight into them
//! where the stored and the public shape agree, builds them from its rows where they do not
//! (invoices with their lines, webhook endpoints without their secrets), and billing, webhooks
//! and the API hand them on unchanged. An event's payload is the object as it was then.
mod catalog;
mod credit_note;
mod customer;
mod event;
mod invoice;
mod ledger;
mod meter;
mod payment;
mod subscription;
mod test_clock;
mod webhook;

pub use catalog::{
    BillingScheme, Interval, Price, PriceRecurring, PriceTier, Product, Recurring, Round, TiersMode, TransformQuantity,
    UsageType,
};
pub use credit_note::{CreditNote, CreditNoteLine, CreditTransaction};
pub use customer::{Balance, Customer, CustomerBalance};
pub use event::{EVENT_TYPES, Event};
pub use invoice::{Invoice, LineItem, LineList, Period};
pub use ledger::LedgerEntry;
pub use meter::{CustomerUsage, Meter, MeterEventBatch, MeterEventStatus, MeterUsage, UsageGroup};
pub use payment::{Payment, Refund};
pub use subscription::{
    CollectionMethod, PlannedCredit, PlannedLine, Subscription, SubscriptionChangePreview, SubscriptionItem,
    SubscriptionItemList, UpcomingInvoice,
};
pub use test_clock::TestClock;
pub use webhook::{WebhookAttempt, WebhookDelivery, WebhookEndpoint};

use serde::Serialize;
use utoipa::ToSchema;

/// The answer to deleting an object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    /// The type of what was deleted, e.g. `invoice`.
    #[schema(example = "invoice")]
    pub object: &'static str,
    pub deleted: bool,
}

impl Deleted {
    pub fn new(object: &'static str, id: impl Into<String>) -> Self {
        Deleted {
            id: id.into(),
            object,
            deleted: true,
        }
    }
}
