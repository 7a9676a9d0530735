//! The objects the API returns, Stripe-style: an `object` type name, a prefixed `id`, `created`
//! (Unix seconds), and amounts as integers in the currency's minor unit.
use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::billing::invoices::Invoice as InvoiceWithLines;
use crate::domain::invoice::Status;
use crate::domain::money::Currency;
use crate::store::customers::CustomerRow;
use crate::store::events::EventRow;
use crate::store::invoices::LineRow;
use crate::store::ledger::EntryRow;
use crate::store::payments::{PaymentRow, RefundRow};
use crate::store::webhooks::{AttemptRow, DeliveryRow, EndpointRow};

#[derive(Debug, Serialize, ToSchema)]
pub struct Customer {
    pub id: String,
    #[schema(example = "customer")]
    pub object: &'static str,
    pub name: Option<String>,
    pub email: Option<String>,
    /// ISO 4217, lower case; invoices default to it.
    pub currency: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
}

impl From<CustomerRow> for Customer {
    fn from(c: CustomerRow) -> Self {
        Customer {
            id: c.id,
            object: "customer",
            name: c.name,
            email: c.email,
            currency: c.currency,
            metadata: c.metadata,
            created: c.created,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
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
}

impl From<LineRow> for LineItem {
    fn from(l: LineRow) -> Self {
        LineItem {
            id: l.id,
            object: "line_item",
            description: l.description,
            quantity: l.quantity,
            unit_amount: l.unit_amount,
            tax_rate_bps: l.tax_rate_bps,
            amount: l.amount,
            tax: l.tax,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LineList {
    #[schema(example = "list")]
    pub object: &'static str,
    pub data: Vec<LineItem>,
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Invoice {
    pub id: String,
    #[schema(example = "invoice")]
    pub object: &'static str,
    pub customer: String,
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
    /// What is left to pay on an open or uncollectible invoice; 0 otherwise.
    pub amount_remaining: i64,
    pub lines: LineList,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
    pub finalized_at: Option<i64>,
    pub paid_at: Option<i64>,
    pub voided_at: Option<i64>,
    pub marked_uncollectible_at: Option<i64>,
}

impl From<InvoiceWithLines> for Invoice {
    fn from(InvoiceWithLines { invoice: i, lines }: InvoiceWithLines) -> Self {
        Invoice {
            amount_remaining: i.amount_remaining(),
            id: i.id,
            object: "invoice",
            customer: i.customer_id,
            status: i.status,
            currency: i.currency,
            number: i.number,
            due_date: i.due_date,
            subtotal: i.subtotal,
            tax: i.tax,
            total: i.total,
            amount_paid: i.amount_paid,
            amount_refunded: i.amount_refunded,
            lines: LineList {
                object: "list",
                data: lines.into_iter().map(LineItem::from).collect(),
                has_more: false,
            },
            metadata: i.metadata,
            created: i.created,
            finalized_at: i.finalized_at,
            paid_at: i.paid_at,
            voided_at: i.voided_at,
            marked_uncollectible_at: i.marked_uncollectible_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedInvoice {
    pub id: String,
    #[schema(example = "invoice")]
    pub object: &'static str,
    pub deleted: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Payment {
    pub id: String,
    #[schema(example = "payment")]
    pub object: &'static str,
    pub invoice: String,
    pub customer: String,
    pub amount: i64,
    pub amount_refunded: i64,
    pub currency: String,
    /// The caller's reference (unique per tenant), e.g. a bank transfer id.
    pub reference: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
}

impl From<PaymentRow> for Payment {
    fn from(p: PaymentRow) -> Self {
        Payment {
            id: p.id,
            object: "payment",
            invoice: p.invoice_id,
            customer: p.customer_id,
            amount: p.amount,
            amount_refunded: p.amount_refunded,
            currency: p.currency,
            reference: p.reference,
            metadata: p.metadata,
            created: p.created,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Refund {
    pub id: String,
    #[schema(example = "refund")]
    pub object: &'static str,
    pub payment: String,
    pub invoice: String,
    pub amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub created: i64,
}

impl From<RefundRow> for Refund {
    fn from(r: RefundRow) -> Self {
        Refund {
            id: r.id,
            object: "refund",
            payment: r.payment_id,
            invoice: r.invoice_id,
            amount: r.amount,
            currency: r.currency,
            reason: r.reason,
            metadata: r.metadata,
            created: r.created,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub id: String,
    #[schema(example = "ledger_entry")]
    pub object: &'static str,
    /// Entries of one money movement share a transaction; their amounts sum to zero.
    pub transaction: String,
    /// `accounts_receivable`, `revenue`, `tax_payable`, `cash` or `refunds`.
    pub account: String,
    /// For `accounts_receivable`: whose.
    pub customer: Option<String>,
    /// Positive is a debit, negative a credit.
    pub amount: i64,
    pub currency: String,
    /// The invoice, payment or refund that caused it.
    pub source: String,
    pub created: i64,
}

impl From<EntryRow> for LedgerEntry {
    fn from(e: EntryRow) -> Self {
        LedgerEntry {
            id: e.id,
            object: "ledger_entry",
            transaction: e.transaction_id,
            account: e.account,
            customer: e.customer_id,
            amount: e.amount,
            currency: e.currency,
            source: e.source_id,
            created: e.created,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Balance {
    pub currency: String,
    /// What the customer owes (negative: what they are owed), in the minor unit.
    pub amount: i64,
    /// The same amount in major units, e.g. `"12.50"`.
    pub formatted: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerBalance {
    #[schema(example = "customer_balance")]
    pub object: &'static str,
    pub customer: String,
    pub balances: Vec<Balance>,
}

impl CustomerBalance {
    pub fn new(customer: String, balances: Vec<(String, i64)>) -> Self {
        let balances = balances
            .into_iter()
            .map(|(currency, amount)| Balance {
                formatted: Currency::parse(&currency).map_or_else(|| amount.to_string(), |c| c.format(amount)),
                currency,
                amount,
            })
            .collect();
        CustomerBalance {
            object: "customer_balance",
            customer,
            balances,
        }
    }
}

/// An event: what changed, with the object as it was right after the change.
#[derive(Debug, Serialize, ToSchema)]
pub struct Event {
    /// `evt_…`
    pub id: String,
    #[schema(example = "event")]
    pub object: &'static str,
    /// For example `invoice.paid`.
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    /// The object the event is about, as the API showed it then.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<EventRow> for Event {
    fn from(e: EventRow) -> Self {
        Event {
            id: e.id,
            object: "event",
            kind: e.kind,
            created: e.created,
            data: serde_json::from_str(&e.data).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// Where events are sent. The signing secret is shown once, when created or rotated.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    /// `we_…`
    pub id: String,
    #[schema(example = "webhook_endpoint")]
    pub object: &'static str,
    pub url: String,
    pub description: Option<String>,
    /// Event types sent to this endpoint, or `["*"]` for all.
    pub enabled_events: Vec<String>,
    /// `enabled` or `disabled`.
    pub status: String,
    /// Why the endpoint was disabled: `manual` or `failing`.
    pub disabled_reason: Option<String>,
    /// Deliveries have failed since this time (none while healthy).
    pub failing_since: Option<i64>,
    pub created: i64,
    /// Only in the answer to create and rotate_secret: `whsec_…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<EndpointRow> for WebhookEndpoint {
    fn from(e: EndpointRow) -> Self {
        WebhookEndpoint {
            id: e.id,
            object: "webhook_endpoint",
            url: e.url,
            description: e.description,
            enabled_events: e.enabled_events,
            status: e.status,
            disabled_reason: e.disabled_reason,
            failing_since: e.failing_since,
            created: e.created,
            secret: None,
        }
    }
}

/// One event on its way to one endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDelivery {
    /// `wd_…`
    pub id: String,
    #[schema(example = "webhook_delivery")]
    pub object: &'static str,
    pub endpoint: String,
    pub event: String,
    /// `pending`, `succeeded` or `failed` (retries exhausted).
    pub status: String,
    pub attempts: i64,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: Option<i64>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created: i64,
}

impl From<DeliveryRow> for WebhookDelivery {
    fn from(d: DeliveryRow) -> Self {
        WebhookDelivery {
            next_attempt_at: (d.status == "pending").then_some(d.next_attempt_at),
            id: d.id,
            object: "webhook_delivery",
            endpoint: d.endpoint_id,
            event: d.event_id,
            status: d.status,
            attempts: d.attempts,
            last_status_code: d.last_status,
            last_error: d.last_error,
            created: d.created,
        }
    }
}

/// One HTTP attempt of a delivery, as logged.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttempt {
    /// `wa_…`
    pub id: String,
    #[schema(example = "webhook_attempt")]
    pub object: &'static str,
    pub delivery: String,
    pub event: String,
    pub attempted_at: i64,
    /// The endpoint's HTTP status, if it answered.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// Why the attempt failed (timeout, refused destination, connection error, non-2xx).
    pub error: Option<String>,
    /// The first KiB of the endpoint's answer.
    pub response_excerpt: Option<String>,
}

impl From<AttemptRow> for WebhookAttempt {
    fn from(a: AttemptRow) -> Self {
        WebhookAttempt {
            id: a.id,
            object: "webhook_attempt",
            delivery: a.delivery_id,
            event: a.event_id,
            attempted_at: a.attempted_at,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            error: a.error,
            response_excerpt: a.response_excerpt,
        }
    }
}
