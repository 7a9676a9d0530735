//! The audit trail: who changed what, under which request.
use sqlx::AnyConnection;

use crate::domain::ids::{Kind, new_id};

pub struct Actor<'a> {
    pub tenant: &'a str,
    /// `key_…` for an API key, `jwt:<subject>` for a token.
    pub actor: &'a str,
    pub request_id: &'a str,
}

#[tracing::instrument(target = "otel", level = "debug", name = "db audit.record", skip_all, fields(otel.kind = "client"))]
pub async fn record(
    conn: &mut AnyConnection,
    who: &Actor<'_>,
    action: &str,
    object_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (id, tenant_id, actor, request_id, action, object_id, created) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id(Kind::Audit))
    .bind(who.tenant)
    .bind(who.actor)
    .bind(who.request_id)
    .bind(action)
    .bind(object_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
