//! Stored results of idempotent requests.
use sqlx::AnyConnection;

use super::Backend;
use super::rows::get;

#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub request_hash: String,
    pub status_code: u16,
    pub body: String,
}

/// Takes a transaction-scoped advisory lock on the key, across every replica, without waiting;
/// `false` means another transaction holds it (the same request is in flight somewhere). Where
/// the backend has no such locks (SQLite, one process) the in-memory registry covers this.
#[tracing::instrument(target = "otel", level = "debug", name = "db idempotency.try_lock", skip_all, fields(otel.kind = "client"))]
pub async fn try_lock(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    key: &str,
) -> Result<bool, sqlx::Error> {
    let Some(sql) = backend.try_advisory_lock_sql() else {
        return Ok(true);
    };
    let locked: i64 = sqlx::query_scalar(sql).bind(tenant).bind(key).fetch_one(conn).await?;
    Ok(locked == 1)
}

/// The stored response for a key, unless it is older than `not_before`.
#[tracing::instrument(target = "otel", level = "debug", name = "db idempotency.find", skip_all, fields(otel.kind = "client"))]
pub async fn find(
    conn: &mut AnyConnection,
    tenant: &str,
    key: &str,
    not_before: i64,
) -> Result<Option<StoredResponse>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT request_hash, status_code, response_body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND created >= $3",
    )
    .bind(tenant)
    .bind(key)
    .bind(not_before)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        let status: i64 = get(&r, "status_code")?;
        Ok(StoredResponse {
            request_hash: get(&r, "request_hash")?,
            status_code: u16::try_from(status).unwrap_or(500),
            body: get(&r, "response_body")?,
        })
    })
    .transpose()
}

/// Stores a response; an expired record under the same key is replaced.
#[tracing::instrument(target = "otel", level = "debug", name = "db idempotency.store", skip_all, fields(otel.kind = "client"))]
pub async fn store(
    conn: &mut AnyConnection,
    tenant: &str,
    key: &str,
    response: &StoredResponse,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status_code, response_body, created) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (tenant_id, key) DO UPDATE SET request_hash = excluded.request_hash, status_code = excluded.status_code, \
         response_body = excluded.response_body, created = excluded.created",
    )
    .bind(tenant)
    .bind(key)
    .bind(&response.request_hash)
    .bind(i64::from(response.status_code))
    .bind(&response.body)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes records created before `before`; returns how many.
#[tracing::instrument(target = "otel", level = "debug", name = "db idempotency.purge", skip_all, fields(otel.kind = "client"))]
pub async fn purge(conn: &mut AnyConnection, before: i64) -> Result<u64, sqlx::Error> {
    let result = sqlx::query("DELETE FROM idempotency_keys WHERE created < $1")
        .bind(before)
        .execute(conn)
        .await?;
    Ok(result.rows_affected())
}
