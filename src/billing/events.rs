//! Events, written in the transaction of the change they describe (a transactional outbox): an
//! event exists if and only if its change was committed. Each event fans out, in that same
//! transaction, to one delivery per subscribed webhook endpoint.
use serde::Serialize;
use sqlx::AnyConnection;

use super::Ctx;
use crate::domain::ids::{Kind, new_id};
use crate::store::events::{self, EventRow};
use crate::store::webhooks;

/// Every event type, for subscriptions (`enabled_events`) and filters.
pub const TYPES: &[&str] = &[
    "customer.created",
    "customer.updated",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "payment.created",
    "refund.created",
    "webhook_endpoint.disabled",
];

/// Records `kind` with a snapshot of `object` (as the API shows it) and queues its deliveries.
pub async fn emit<T: Serialize>(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    kind: &str,
    object: &T,
) -> Result<(), sqlx::Error> {
    emit_for(conn, &ctx.tenant, ctx.now, kind, object).await
}

pub async fn emit_for<T: Serialize>(
    conn: &mut AnyConnection,
    tenant: &str,
    now: i64,
    kind: &str,
    object: &T,
) -> Result<(), sqlx::Error> {
    let data = serde_json::to_string(object).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let event = EventRow {
        id: new_id(Kind::Event),
        kind: kind.to_owned(),
        data,
        created: now,
    };
    events::insert(conn, tenant, &event).await?;
    let deliveries: Vec<(String, String)> = webhooks::subscribers(conn, tenant, kind)
        .await?
        .into_iter()
        .map(|endpoint| (new_id(Kind::WebhookDelivery), endpoint))
        .collect();
    webhooks::insert_deliveries(conn, tenant, &event.id, &deliveries, now).await
}
