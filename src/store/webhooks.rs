//! Webhook endpoints, their deliveries (one per event and endpoint) and the attempt log.
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::Backend;
use super::page::{self, Listing, Page, PageError, PageQuery};
use super::rows::get;
use crate::objects::{WebhookAttempt, WebhookDelivery, WebhookEndpoint};

#[derive(Debug, Clone, PartialEq)]
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub description: Option<String>,
    pub enabled_events: Vec<String>,
    pub status: String,
    pub disabled_reason: Option<String>,
    /// Encrypted signing secret (see `webhooks::secrets`).
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires: Option<i64>,
    pub consecutive_failures: i64,
    pub breaker_open_until: Option<i64>,
    pub failing_since: Option<i64>,
    pub created: i64,
}

const ENDPOINT_COLUMNS: &str = "id, url, description, enabled_events, status, disabled_reason, secret, previous_secret, \
     previous_secret_expires, consecutive_failures, breaker_open_until, failing_since, created";
const ENDPOINTS: Listing = Listing {
    table: "webhook_endpoints",
    columns: ENDPOINT_COLUMNS,
};

impl From<EndpointRow> for WebhookEndpoint {
    /// The endpoint as the API shows it: its secrets and breaker state stay inside.
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

fn events_of(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

fn endpoint_from_row(row: &AnyRow) -> Result<EndpointRow, sqlx::Error> {
    let events: String = get(row, "enabled_events")?;
    Ok(EndpointRow {
        id: get(row, "id")?,
        url: get(row, "url")?,
        description: get(row, "description")?,
        enabled_events: events_of(&events),
        status: get(row, "status")?,
        disabled_reason: get(row, "disabled_reason")?,
        secret: get(row, "secret")?,
        previous_secret: get(row, "previous_secret")?,
        previous_secret_expires: get(row, "previous_secret_expires")?,
        consecutive_failures: get(row, "consecutive_failures")?,
        breaker_open_until: get(row, "breaker_open_until")?,
        failing_since: get(row, "failing_since")?,
        created: get(row, "created")?,
    })
}

fn events_text(events: &[String]) -> String {
    serde_json::to_string(events).unwrap_or_else(|_| "[]".to_owned())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.insert_endpoint", skip_all, fields(otel.kind = "client"))]
pub async fn insert_endpoint(conn: &mut AnyConnection, tenant: &str, e: &EndpointRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, description, enabled_events, status, secret, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&e.id)
    .bind(tenant)
    .bind(&e.url)
    .bind(&e.description)
    .bind(events_text(&e.enabled_events))
    .bind(&e.status)
    .bind(&e.secret)
    .bind(e.created)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.find_endpoint", skip_all, fields(otel.kind = "client"))]
pub async fn find_endpoint(
    conn: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2"
    ));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(endpoint_from_row).transpose()
}

#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.list_endpoints", skip_all, fields(otel.kind = "client"))]
pub async fn list_endpoints(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
) -> Result<Page<EndpointRow>, PageError> {
    ENDPOINTS.fetch(conn, tenant, page, &[], endpoint_from_row).await
}

/// Saves the editable fields, the secrets and the health state.
#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.update_endpoint", skip_all, fields(otel.kind = "client"))]
pub async fn update_endpoint(conn: &mut AnyConnection, tenant: &str, e: &EndpointRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_endpoints SET url = $3, description = $4, enabled_events = $5, status = $6, \
         disabled_reason = $7, secret = $8, previous_secret = $9, previous_secret_expires = $10, \
         consecutive_failures = $11, breaker_open_until = $12, failing_since = $13 \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(&e.id)
    .bind(&e.url)
    .bind(&e.description)
    .bind(events_text(&e.enabled_events))
    .bind(&e.status)
    .bind(&e.disabled_reason)
    .bind(&e.secret)
    .bind(&e.previous_secret)
    .bind(e.previous_secret_expires)
    .bind(e.consecutive_failures)
    .bind(e.breaker_open_until)
    .bind(e.failing_since)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.delete_endpoint", skip_all, fields(otel.kind = "client"))]
pub async fn delete_endpoint(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<(), sqlx::Error> {
    // Attempts and deliveries go first: SQLite enforces the cascade only with foreign keys on,
    // and being explicit keeps both backends alike.
    for sql in [
        "DELETE FROM webhook_attempts WHERE tenant_id = $1 AND endpoint_id = $2",
        "DELETE FROM webhook_deliveries WHERE tenant_id = $1 AND endpoint_id = $2",
        "DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2",
    ] {
        sqlx::query(sql).bind(tenant).bind(id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Every endpoint's encrypted secrets, across tenants (key rotation).
pub async fn all_secrets(conn: &mut AnyConnection) -> Result<Vec<(String, String, Option<String>)>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, secret, previous_secret FROM webhook_endpoints ORDER BY id")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((get(r, "id")?, get(r, "secret")?, get(r, "previous_secret")?)))
        .collect()
}

pub async fn set_secrets(
    conn: &mut AnyConnection,
    id: &str,
    secret: &str,
    previous: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_endpoints SET secret = $2, previous_secret = $3 WHERE id = $1")
        .bind(id)
        .bind(secret)
        .bind(previous)
        .execute(conn)
        .await?;
    Ok(())
}

/// The tenant's enabled endpoints subscribed to `event_type` (or to `*`).
#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.subscribers", skip_all, fields(otel.kind = "client"))]
pub async fn subscribers(conn: &mut AnyConnection, tenant: &str, event_type: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT id, enabled_events FROM webhook_endpoints WHERE tenant_id = $1 AND status = 'enabled'")
            .bind(tenant)
            .fetch_all(conn)
            .await?;
    let mut ids = Vec::new();
    for row in &rows {
        let events: String = get(row, "enabled_events")?;
        if events_of(&events).iter().any(|e| e == "*" || e == event_type) {
            ids.push(get(row, "id")?);
        }
    }
    Ok(ids)
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created: i64,
    pub updated: i64,
}

const DELIVERY_COLUMNS: &str =
    "id, endpoint_id, event_id, status, attempts, next_attempt_at, last_status, last_error, created, updated";
const DELIVERIES: Listing = Listing {
    table: "webhook_deliveries",
    columns: DELIVERY_COLUMNS,
};

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

fn delivery_from_row(row: &AnyRow) -> Result<DeliveryRow, sqlx::Error> {
    Ok(DeliveryRow {
        id: get(row, "id")?,
        endpoint_id: get(row, "endpoint_id")?,
        event_id: get(row, "event_id")?,
        status: get(row, "status")?,
        attempts: get(row, "attempts")?,
        next_attempt_at: get(row, "next_attempt_at")?,
        last_status: get(row, "last_status")?,
        last_error: get(row, "last_error")?,
        created: get(row, "created")?,
        updated: get(row, "updated")?,
    })
}

/// One due delivery per (id, endpoint) pair, in one statement.
#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.insert_deliveries", skip_all, fields(otel.kind = "client"))]
pub async fn insert_deliveries(
    conn: &mut AnyConnection,
    tenant: &str,
    event_id: &str,
    deliveries: &[(String, String)],
    now: i64,
) -> Result<(), sqlx::Error> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let mut sql = String::from(
        "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, status, next_attempt_at, created, updated) VALUES ",
    );
    for i in 0..deliveries.len() {
        let b = i * 2 + 4;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${b}, $1, ${}, $2, 'pending', $3, $3, $3)", b + 1));
    }
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(tenant).bind(event_id).bind(now);
    for (id, endpoint) in deliveries {
        query = query.bind(id).bind(endpoint);
    }
    query.execute(conn).await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.find_delivery", skip_all, fields(otel.kind = "client"))]
pub async fn find_delivery(
    conn: &mut AnyConnection,
    tenant: &str,
    id: &str,
) -> Result<Option<DeliveryRow>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE tenant_id = $1 AND id = $2"
    ));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(delivery_from_row).transpose()
}

/// Which deliveries a listing shows.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub endpoint: Option<String>,
    pub event: Option<String>,
    pub status: Option<String>,
}

#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.list_deliveries", skip_all, fields(otel.kind = "client"))]
pub async fn list_deliveries(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &DeliveryFilter,
) -> Result<Page<DeliveryRow>, PageError> {
    let filters = page::set([
        ("endpoint_id", filter.endpoint.as_deref()),
        ("event_id", filter.event.as_deref()),
        ("status", filter.status.as_deref()),
    ]);
    DELIVERIES.fetch(conn, tenant, page, &filters, delivery_from_row).await
}

/// Makes a delivery due now, whatever its state (a manual retry).
#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.retry_delivery", skip_all, fields(otel.kind = "client"))]
pub async fn retry_delivery(conn: &mut AnyConnection, tenant: &str, id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $3, lease_until = NULL, updated = $3 \
         WHERE tenant_id = $1 AND id = $2",
    )
    .bind(tenant)
    .bind(id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Counts of deliveries by status, for the queue-depth gauge.
#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.due_count", skip_all, fields(otel.kind = "client"))]
pub async fn due_count(conn: &mut AnyConnection, now: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1")
        .bind(now)
        .fetch_one(conn)
        .await
}

/// Endpoints whose breaker is open now.
#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.open_breakers", skip_all, fields(otel.kind = "client"))]
pub async fn open_breakers(conn: &mut AnyConnection, now: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM webhook_endpoints WHERE breaker_open_until > $1")
        .bind(now)
        .fetch_one(conn)
        .await
}

/// A delivery a dispatcher has claimed, with all it needs to send it.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub tenant: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub attempts: i64,
    pub url: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_expires: Option<i64>,
    pub consecutive_failures: i64,
    pub event_type: String,
    pub event_data: String,
    pub event_created: i64,
}

/// Due deliveries of enabled endpoints whose circuit is closed (or due for a probe), oldest
/// first. PostgreSQL skips rows other dispatchers hold; SQLite has one writer at a time anyway.
#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.due", skip_all, fields(otel.kind = "client"))]
pub async fn due(
    conn: &mut AnyConnection,
    backend: Backend,
    now: i64,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lock = backend.claim_rows_of("d");
    let sql = AssertSqlSafe(format!(
        "SELECT d.id, d.tenant_id, d.endpoint_id, d.event_id, d.attempts, e.url, e.secret, e.previous_secret, \
         e.previous_secret_expires, e.consecutive_failures, ev.type, ev.data, ev.created \
         FROM webhook_deliveries d \
         JOIN webhook_endpoints e ON e.id = d.endpoint_id \
         JOIN events ev ON ev.id = d.event_id \
         WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND (d.lease_until IS NULL OR d.lease_until <= $1) \
         AND e.status = 'enabled' AND (e.breaker_open_until IS NULL OR e.breaker_open_until <= $1) \
         ORDER BY d.next_attempt_at, d.id LIMIT $2{lock}"
    ));
    let rows = sqlx::query(sql).bind(now).bind(limit).fetch_all(conn).await?;
    rows.iter()
        .map(|row| {
            Ok(Claimed {
                id: get(row, "id")?,
                tenant: get(row, "tenant_id")?,
                endpoint_id: get(row, "endpoint_id")?,
                event_id: get(row, "event_id")?,
                attempts: get(row, "attempts")?,
                url: get(row, "url")?,
                secret: get(row, "secret")?,
                previous_secret: get(row, "previous_secret")?,
                previous_secret_expires: get(row, "previous_secret_expires")?,
                consecutive_failures: get(row, "consecutive_failures")?,
                event_type: get(row, "type")?,
                event_data: get(row, "data")?,
                event_created: get(row, "created")?,
            })
        })
        .collect()
}

#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.lease", skip_all, fields(otel.kind = "client"))]
pub async fn lease(conn: &mut AnyConnection, ids: &[&str], until: i64) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    let params: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = AssertSqlSafe(format!(
        "UPDATE webhook_deliveries SET lease_until = $1 WHERE id IN ({})",
        params.join(", ")
    ));
    let mut query = sqlx::query(sql).bind(until);
    for id in ids {
        query = query.bind(*id);
    }
    query.execute(conn).await?;
    Ok(())
}

/// Holds an endpoint's circuit while its probe is in flight, so no other delivery goes out.
#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.hold_breaker", skip_all, fields(otel.kind = "client"))]
pub async fn hold_breaker(conn: &mut AnyConnection, endpoint_id: &str, until: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_endpoints SET breaker_open_until = $2 WHERE id = $1")
        .bind(endpoint_id)
        .bind(until)
        .execute(conn)
        .await?;
    Ok(())
}

/// Where a delivery stands after an attempt.
#[derive(Debug, Clone)]
pub struct DeliveryUpdate<'a> {
    pub id: &'a str,
    pub status: &'static str,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<&'a str>,
    pub now: i64,
}

#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.finish_delivery", skip_all, fields(otel.kind = "client"))]
pub async fn finish_delivery(conn: &mut AnyConnection, u: &DeliveryUpdate<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $2, attempts = $3, next_attempt_at = $4, lease_until = NULL, \
         last_status = $5, last_error = $6, updated = $7 WHERE id = $1",
    )
    .bind(u.id)
    .bind(u.status)
    .bind(u.attempts)
    .bind(u.next_attempt_at)
    .bind(u.last_status)
    .bind(u.last_error)
    .bind(u.now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives a claimed delivery back without an attempt (shutdown).
#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.release", skip_all, fields(otel.kind = "client"))]
pub async fn release(conn: &mut AnyConnection, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhook_deliveries SET lease_until = NULL WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// An endpoint's breaker and health after an attempt.
#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.endpoint_health", skip_all, fields(otel.kind = "client"))]
pub async fn set_endpoint_health(
    conn: &mut AnyConnection,
    endpoint_id: &str,
    consecutive_failures: i64,
    breaker_open_until: Option<i64>,
    failing_since: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_endpoints SET consecutive_failures = $2, breaker_open_until = $3, failing_since = $4 WHERE id = $1",
    )
    .bind(endpoint_id)
    .bind(consecutive_failures)
    .bind(breaker_open_until)
    .bind(failing_since)
    .execute(conn)
    .await?;
    Ok(())
}

const ATTEMPT_COLUMNS: &str =
    "id, delivery_id, endpoint_id, event_id, attempted_at, status_code, latency_ms, error, response_excerpt";
const ATTEMPTS: Listing = Listing {
    table: "webhook_attempts",
    columns: ATTEMPT_COLUMNS,
};

fn attempt_from_row(row: &AnyRow) -> Result<WebhookAttempt, sqlx::Error> {
    Ok(WebhookAttempt {
        id: get(row, "id")?,
        object: WebhookAttempt::OBJECT,
        delivery_id: get(row, "delivery_id")?,
        endpoint_id: get(row, "endpoint_id")?,
        event_id: get(row, "event_id")?,
        attempted_at: get(row, "attempted_at")?,
        status_code: get(row, "status_code")?,
        latency_ms: get(row, "latency_ms")?,
        error: get(row, "error")?,
        response_excerpt: get(row, "response_excerpt")?,
    })
}

#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.insert_attempt", skip_all, fields(otel.kind = "client"))]
pub async fn insert_attempt(conn: &mut AnyConnection, tenant: &str, a: &WebhookAttempt) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_attempts (id, tenant_id, delivery_id, endpoint_id, event_id, attempted_at, status_code, \
         latency_ms, error, response_excerpt, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $6)",
    )
    .bind(&a.id)
    .bind(tenant)
    .bind(&a.delivery_id)
    .bind(&a.endpoint_id)
    .bind(&a.event_id)
    .bind(a.attempted_at)
    .bind(a.status_code)
    .bind(a.latency_ms)
    .bind(&a.error)
    .bind(&a.response_excerpt)
    .execute(conn)
    .await?;
    Ok(())
}

/// An endpoint's attempt log, newest first.
#[tracing::instrument(target = "otel", level = "debug", name = "db webhooks.list_attempts", skip_all, fields(otel.kind = "client"))]
pub async fn list_attempts(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    endpoint_id: &str,
) -> Result<Page<WebhookAttempt>, PageError> {
    ATTEMPTS
        .fetch(conn, tenant, page, &[("endpoint_id", endpoint_id)], attempt_from_row)
        .await
}
