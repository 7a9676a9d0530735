//! Meter events: the identifiers claimed, the events stored, and the rollups they add to, each
//! a single statement per batch whatever its size (the batch goes as one JSON parameter, read
//! back as rows by `Backend::json_records`).
use sqlx::{AnyConnection, AssertSqlSafe};

use super::Backend;

/// The customers of the tenant among `ids` (a JSON array of ids).
#[tracing::instrument(target = "otel", level = "debug", name = "db meter_events.known_customers", skip_all, fields(otel.kind = "client"))]
pub async fn known_customers(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    ids: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT c.id FROM {} JOIN customers c ON c.tenant_id = $1 AND c.id = i.value",
        backend.json_texts("$2", "i")
    ));
    sqlx::query_scalar(sql).bind(tenant).bind(ids).fetch_all(conn).await
}

/// Claims the identifiers (a JSON array, without repeats) that no earlier event took, and
/// answers those: the others are duplicates. The claim is the transaction's until it commits;
/// a concurrent batch claiming the same identifier waits for it, then finds it taken.
#[tracing::instrument(target = "otel", level = "debug", name = "db meter_events.claim", skip_all, fields(otel.kind = "client"))]
pub async fn claim(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    identifiers: &str,
) -> Result<Vec<String>, sqlx::Error> {
    // `WHERE true`: SQLite would read `ON CONFLICT` as a join constraint of the SELECT.
    let sql = AssertSqlSafe(format!(
        "INSERT INTO meter_event_ids (tenant_id, identifier) SELECT $1, i.value FROM {} WHERE true \
         ON CONFLICT DO NOTHING RETURNING identifier",
        backend.json_texts("$2", "i")
    ));
    sqlx::query_scalar(sql)
        .bind(tenant)
        .bind(identifiers)
        .fetch_all(conn)
        .await
}

/// Stores events: a JSON array of `{identifier, event_name, customer_id, occurred, properties}`
/// (`properties` a JSON object, stored as its text: read as `json` on PostgreSQL, whose text is
/// kept as sent rather than unescaped from a string).
#[tracing::instrument(target = "otel", level = "debug", name = "db meter_events.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    events: &str,
    received: i64,
) -> Result<(), sqlx::Error> {
    let rows = backend.json_records(
        "$2",
        "e",
        &[
            ("identifier", "text"),
            ("event_name", "text"),
            ("customer_id", "text"),
            ("occurred", "bigint"),
            ("properties", "json"),
        ],
    );
    let sql = AssertSqlSafe(format!(
        "INSERT INTO meter_events (tenant_id, identifier, event_name, customer_id, occurred, properties, received) \
         SELECT $1, e.identifier, e.event_name, e.customer_id, e.occurred, CAST(e.properties AS TEXT), $3 FROM {rows}"
    ));
    sqlx::query(sql)
        .bind(tenant)
        .bind(events)
        .bind(received)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds rollups to those stored: a JSON array of `{meter_id, customer_id, minute, group_key,
/// events, value_sum, value_max, latest_at, latest_id, latest_value}`, in key order (so that
/// two batches lock shared rows in the same order and never deadlock).
#[tracing::instrument(target = "otel", level = "debug", name = "db meter_events.add_rollups", skip_all, fields(otel.kind = "client"))]
pub async fn add_rollups(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    rollups: &str,
) -> Result<(), sqlx::Error> {
    let rows = backend.json_records(
        "$2",
        "r",
        &[
            ("meter_id", "text"),
            ("customer_id", "text"),
            ("minute", "bigint"),
            ("group_key", "text"),
            ("events", "bigint"),
            ("value_sum", "bigint"),
            ("value_max", "bigint"),
            ("latest_at", "bigint"),
            ("latest_id", "text"),
            ("latest_value", "bigint"),
        ],
    );
    // The latest event stays the one with the greatest (timestamp, identifier), whichever
    // arrived first; written without row comparisons, which the two backends spell differently.
    let later = "(excluded.latest_at > meter_rollups.latest_at OR (excluded.latest_at = meter_rollups.latest_at \
                 AND excluded.latest_id > meter_rollups.latest_id))";
    let sql = AssertSqlSafe(format!(
        "INSERT INTO meter_rollups (tenant_id, meter_id, customer_id, minute, group_key, events, value_sum, value_max, \
         latest_at, latest_id, latest_value) \
         SELECT $1, r.meter_id, r.customer_id, r.minute, r.group_key, r.events, r.value_sum, r.value_max, \
         r.latest_at, r.latest_id, r.latest_value FROM {rows} WHERE true \
         ON CONFLICT (tenant_id, meter_id, customer_id, minute, group_key) DO UPDATE SET \
         events = meter_rollups.events + excluded.events, \
         value_sum = meter_rollups.value_sum + excluded.value_sum, \
         value_max = CASE WHEN excluded.value_max > meter_rollups.value_max THEN excluded.value_max ELSE meter_rollups.value_max END, \
         latest_value = CASE WHEN {later} THEN excluded.latest_value ELSE meter_rollups.latest_value END, \
         latest_id = CASE WHEN {later} THEN excluded.latest_id ELSE meter_rollups.latest_id END, \
         latest_at = CASE WHEN {later} THEN excluded.latest_at ELSE meter_rollups.latest_at END"
    ));
    sqlx::query(sql).bind(tenant).bind(rollups).execute(conn).await?;
    Ok(())
}

/// Records distinct values: a JSON array of `{meter_id, customer_id, minute, group_key, value}`.
#[tracing::instrument(target = "otel", level = "debug", name = "db meter_events.add_distinct", skip_all, fields(otel.kind = "client"))]
pub async fn add_distinct(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    values: &str,
) -> Result<(), sqlx::Error> {
    let rows = backend.json_records(
        "$2",
        "d",
        &[
            ("meter_id", "text"),
            ("customer_id", "text"),
            ("minute", "bigint"),
            ("group_key", "text"),
            ("value", "text"),
        ],
    );
    let sql = AssertSqlSafe(format!(
        "INSERT INTO meter_distinct_values (tenant_id, meter_id, customer_id, minute, group_key, value) \
         SELECT $1, d.meter_id, d.customer_id, d.minute, d.group_key, d.value FROM {rows} WHERE true \
         ON CONFLICT DO NOTHING"
    ));
    sqlx::query(sql).bind(tenant).bind(values).execute(conn).await?;
    Ok(())
}
