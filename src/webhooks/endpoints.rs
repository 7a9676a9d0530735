//! Operations on webhook endpoints, deliveries and events that run in the caller's write
//! transaction (like the billing operations: refuse before the first write, or succeed).
use sqlx::AnyConnection;

use super::secrets::{self, Cipher};
use crate::api::objects::{WebhookDelivery, WebhookEndpoint};
use crate::billing::{BillingError, Ctx, Result};
use crate::domain::ids::{Kind, new_id};
use crate::store::webhooks::{self as store, EndpointRow};
use crate::store::{events, tenants};

#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct EndpointUpdate {
    pub url: Option<String>,
    pub enabled_events: Option<Vec<String>>,
    pub description: Option<String>,
    pub disabled: Option<bool>,
}

fn no_randomness(e: String) -> BillingError {
    BillingError::Db(sqlx::Error::Protocol(e))
}

async fn get(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<EndpointRow> {
    store::find_endpoint(conn, &ctx.tenant, id)
        .await?
        .ok_or(BillingError::NotFound("webhook endpoint"))
}

/// Creates an endpoint; its signing secret is in the answer, and only there.
pub async fn create(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    cipher: &Cipher,
    input: NewEndpoint,
) -> Result<WebhookEndpoint> {
    let secret = secrets::generate().map_err(no_randomness)?;
    let row = EndpointRow {
        id: new_id(Kind::WebhookEndpoint),
        url: input.url,
        description: input.description,
        enabled_events: input.enabled_events,
        status: "enabled".into(),
        disabled_reason: None,
        secret: cipher.encrypt(&secret).map_err(no_randomness)?,
        previous_secret: None,
        previous_secret_expires: None,
        consecutive_failures: 0,
        breaker_open_until: None,
        failing_since: None,
        created: ctx.now,
    };
    tenants::ensure(conn, &ctx.tenant, ctx.now).await?;
    store::insert_endpoint(conn, &ctx.tenant, &row).await?;
    ctx.audit(conn, "webhook_endpoint.created", &row.id).await?;
    let mut object = WebhookEndpoint::from(row);
    object.secret = Some(secret);
    Ok(object)
}

pub async fn update(conn: &mut AnyConnection, ctx: &Ctx, id: &str, input: EndpointUpdate) -> Result<WebhookEndpoint> {
    let mut row = get(conn, ctx, id).await?;
    if let Some(url) = input.url {
        row.url = url;
    }
    if let Some(events) = input.enabled_events {
        row.enabled_events = events;
    }
    if let Some(description) = input.description {
        row.description = Some(description);
    }
    match input.disabled {
        Some(true) => {
            row.status = "disabled".into();
            row.disabled_reason = Some("manual".into());
        }
        Some(false) => {
            // A fresh start: the breaker closes and the failure clock resets.
            row.status = "enabled".into();
            row.disabled_reason = None;
            row.consecutive_failures = 0;
            row.breaker_open_until = None;
            row.failing_since = None;
        }
        None => {}
    }
    store::update_endpoint(conn, &ctx.tenant, &row).await?;
    ctx.audit(conn, "webhook_endpoint.updated", id).await?;
    Ok(WebhookEndpoint::from(row))
}

/// A new secret signs from now on; the previous one keeps signing too until `overlap` ends, so
/// receivers can switch without losing a delivery.
pub async fn rotate_secret(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    cipher: &Cipher,
    id: &str,
    overlap: std::time::Duration,
) -> Result<WebhookEndpoint> {
    let mut row = get(conn, ctx, id).await?;
    let secret = secrets::generate().map_err(no_randomness)?;
    let fresh = cipher.encrypt(&secret).map_err(no_randomness)?;
    row.previous_secret = Some(std::mem::replace(&mut row.secret, fresh));
    row.previous_secret_expires = Some(ctx.now + overlap.as_secs() as i64);
    store::update_endpoint(conn, &ctx.tenant, &row).await?;
    ctx.audit(conn, "webhook_endpoint.secret_rotated", id).await?;
    let mut object = WebhookEndpoint::from(row);
    object.secret = Some(secret);
    Ok(object)
}

pub async fn delete(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<serde_json::Value> {
    get(conn, ctx, id).await?;
    store::delete_endpoint(conn, &ctx.tenant, id).await?;
    ctx.audit(conn, "webhook_endpoint.deleted", id).await?;
    Ok(serde_json::json!({"id": id, "object": "webhook_endpoint", "deleted": true}))
}

/// Sends a delivery again now, whatever became of it.
pub async fn retry(conn: &mut AnyConnection, ctx: &Ctx, id: &str) -> Result<WebhookDelivery> {
    store::find_delivery(conn, &ctx.tenant, id)
        .await?
        .ok_or(BillingError::NotFound("webhook delivery"))?;
    store::retry_delivery(conn, &ctx.tenant, id, ctx.now).await?;
    ctx.audit(conn, "webhook_delivery.retried", id).await?;
    let delivery = store::find_delivery(conn, &ctx.tenant, id)
        .await?
        .ok_or(BillingError::NotFound("webhook delivery"))?;
    Ok(WebhookDelivery::from(delivery))
}

/// Queues an event once more for one endpoint (a new delivery, same `webhook-id`).
pub async fn resend(conn: &mut AnyConnection, ctx: &Ctx, event_id: &str, endpoint_id: &str) -> Result<WebhookDelivery> {
    events::find(conn, &ctx.tenant, event_id)
        .await?
        .ok_or(BillingError::NotFound("event"))?;
    if store::find_endpoint(conn, &ctx.tenant, endpoint_id).await?.is_none() {
        return Err(BillingError::invalid(
            "endpoint",
            "invalid_id",
            "no such webhook endpoint",
        ));
    }
    let id = new_id(Kind::WebhookDelivery);
    store::insert_deliveries(
        conn,
        &ctx.tenant,
        event_id,
        &[(id.clone(), endpoint_id.to_owned())],
        ctx.now,
    )
    .await?;
    ctx.audit(conn, "event.resent", event_id).await?;
    let delivery = store::find_delivery(conn, &ctx.tenant, &id)
        .await?
        .ok_or(BillingError::NotFound("webhook delivery"))?;
    Ok(WebhookDelivery::from(delivery))
}
