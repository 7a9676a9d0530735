//! The event outbox: an event is recorded in the transaction of its change, with its deliveries
//! (see `store::events`); whoever delivers them waits on [`deliveries_queued`].
use serde::Serialize;
use sqlx::AnyConnection;
use tokio::sync::Notify;

use crate::store::events;

static QUEUED: Notify = Notify::const_new();

/// Records `kind` with a snapshot of `object`; returns how many deliveries it queued.
pub async fn emit_for<T: Serialize>(
    conn: &mut AnyConnection,
    tenant: &str,
    now: i64,
    kind: &str,
    object: &T,
) -> Result<usize, sqlx::Error> {
    let data = serde_json::to_string(object).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    events::record(conn, tenant, kind, &data, now).await
}

pub(super) fn announce() {
    QUEUED.notify_one();
}

/// Resolves when a committed write has queued deliveries (or at once if one did since the
/// last wait).
pub async fn deliveries_queued() {
    QUEUED.notified().await;
}
