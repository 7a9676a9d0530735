//! Tenants and their API keys.
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::rows::get;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRow {
    pub id: String,
    pub tenant_id: String,
    pub secret_hash: String,
    pub scopes: String,
    pub description: Option<String>,
    pub created: i64,
    pub last_used: Option<i64>,
    pub revoked: Option<i64>,
}

const KEY_COLUMNS: &str = "id, tenant_id, secret_hash, scopes, description, created, last_used, revoked";

fn key_from_row(row: &AnyRow) -> Result<ApiKeyRow, sqlx::Error> {
    Ok(ApiKeyRow {
        id: get(row, "id")?,
        tenant_id: get(row, "tenant_id")?,
        secret_hash: get(row, "secret_hash")?,
        scopes: get(row, "scopes")?,
        description: get(row, "description")?,
        created: get(row, "created")?,
        last_used: get(row, "last_used")?,
        revoked: get(row, "revoked")?,
    })
}

/// Creates the tenant if it does not exist yet.
#[tracing::instrument(target = "otel", level = "debug", name = "db tenants.ensure", skip_all, fields(otel.kind = "client"))]
pub async fn ensure(conn: &mut AnyConnection, tenant: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO tenants (id, created) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
        .bind(tenant)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db tenants.set_invoice_prefix", skip_all, fields(otel.kind = "client"))]
pub async fn set_invoice_prefix(
    conn: &mut AnyConnection,
    tenant: &str,
    prefix: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    ensure(conn, tenant, now).await?;
    sqlx::query("UPDATE tenants SET invoice_prefix = $1 WHERE id = $2")
        .bind(prefix)
        .bind(tenant)
        .execute(conn)
        .await?;
    Ok(())
}

/// Sets the tenant's default time zone (an IANA name the caller has checked).
#[tracing::instrument(target = "otel", level = "debug", name = "db tenants.set_time_zone", skip_all, fields(otel.kind = "client"))]
pub async fn set_time_zone(conn: &mut AnyConnection, tenant: &str, zone: &str, now: i64) -> Result<(), sqlx::Error> {
    ensure(conn, tenant, now).await?;
    sqlx::query("UPDATE tenants SET time_zone = $1 WHERE id = $2")
        .bind(zone)
        .bind(tenant)
        .execute(conn)
        .await?;
    Ok(())
}

/// The tenant's default time zone, if one was set.
#[tracing::instrument(target = "otel", level = "debug", name = "db tenants.time_zone", skip_all, fields(otel.kind = "client"))]
pub async fn time_zone(conn: &mut AnyConnection, tenant: &str) -> Result<Option<String>, sqlx::Error> {
    let zone: Option<Option<String>> = sqlx::query_scalar("SELECT time_zone FROM tenants WHERE id = $1")
        .bind(tenant)
        .fetch_optional(conn)
        .await?;
    Ok(zone.flatten())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db tenants.insert_key", skip_all, fields(otel.kind = "client"))]
pub async fn insert_key(conn: &mut AnyConnection, k: &ApiKeyRow) -> Result<(), sqlx::Error> {
    ensure(conn, &k.tenant_id, k.created).await?;
    sqlx::query(
        "INSERT INTO api_keys (id, tenant_id, secret_hash, scopes, description, created) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&k.id)
    .bind(&k.tenant_id)
    .bind(&k.secret_hash)
    .bind(&k.scopes)
    .bind(&k.description)
    .bind(k.created)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db tenants.find_key", skip_all, fields(otel.kind = "client"))]
pub async fn find_key(conn: &mut AnyConnection, id: &str) -> Result<Option<ApiKeyRow>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"));
    let row = sqlx::query(sql).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(key_from_row).transpose()
}

#[tracing::instrument(target = "otel", level = "debug", name = "db tenants.list_keys", skip_all, fields(otel.kind = "client"))]
pub async fn list_keys(conn: &mut AnyConnection, tenant: Option<&str>) -> Result<Vec<ApiKeyRow>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE ($1 IS NULL OR tenant_id = $1) ORDER BY tenant_id, id"
    ));
    let rows = sqlx::query(sql).bind(tenant).fetch_all(conn).await?;
    rows.iter().map(key_from_row).collect()
}

/// Returns whether a key was revoked now (false if it does not exist or was already revoked).
#[tracing::instrument(target = "otel", level = "debug", name = "db tenants.revoke_key", skip_all, fields(otel.kind = "client"))]
pub async fn revoke_key(conn: &mut AnyConnection, id: &str, now: i64) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("UPDATE api_keys SET revoked = $1 WHERE id = $2 AND revoked IS NULL")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() == 1)
}

#[tracing::instrument(target = "otel", level = "debug", name = "db tenants.touch_key", skip_all, fields(otel.kind = "client"))]
pub async fn touch_key(conn: &mut AnyConnection, id: &str, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE api_keys SET last_used = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
