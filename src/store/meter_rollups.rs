//! Folding: the rollup deltas each batch of meter events appended (`meter_rollup_deltas`) moved
//! into `meter_rollups`, one row per key, by one transaction that changes no total (usage reads
//! both tables: `meters::group_totals`). The service adds them up (`billing::rollups`): a
//! database sorting them for `FIRST_VALUE` cost more than the ingestion it relieved.
use serde::Serialize;
use sqlx::{AnyConnection, AssertSqlSafe, Row};

use super::Backend;

/// A delta as stored, or a rollup to add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RollupRecord {
    pub tenant_id: String,
    pub meter_id: String,
    pub customer_id: String,
    pub minute: i64,
    pub group_key: String,
    pub events: i64,
    pub value_sum: i64,
    pub value_max: i64,
    pub latest_at: i64,
    pub latest_id: String,
    pub latest_value: i64,
}

/// Deltas read to be folded: the rows, the identity of each (to clear them), and when the
/// oldest of them was received.
pub struct Deltas {
    pub records: Vec<RollupRecord>,
    row_ids: Vec<String>,
    pub oldest: Option<i64>,
}

impl Deltas {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Up to `limit` deltas (all of them, short of a backlog). The caller's transaction must see one
/// snapshot for this and [`clear`], and keep other folds out: on SQLite a write transaction
/// (`BEGIN IMMEDIATE`: the only writer), on PostgreSQL `REPEATABLE READ` (a batch that commits
/// meanwhile is neither read nor cleared: the next fold takes it) after [`try_lock`].
#[tracing::instrument(target = "otel", level = "debug", name = "db meter_rollups.deltas", skip_all, fields(otel.kind = "client"))]
pub async fn deltas(conn: &mut AnyConnection, backend: Backend, limit: i64) -> Result<Deltas, sqlx::Error> {
    // Read by position: a fold reads tens of thousands of rows a second under load.
    let sql = AssertSqlSafe(format!(
        "SELECT {}, tenant_id, meter_id, customer_id, minute, group_key, events, value_sum, value_max, \
         latest_at, latest_id, latest_value, received FROM meter_rollup_deltas LIMIT $1",
        backend.row_id_sql()
    ));
    let rows = sqlx::query(sql).bind(limit).fetch_all(conn).await?;
    let mut deltas = Deltas {
        records: Vec::with_capacity(rows.len()),
        row_ids: Vec::with_capacity(rows.len()),
        oldest: None,
    };
    for row in &rows {
        let received: i64 = row.try_get(12)?;
        deltas.oldest = Some(deltas.oldest.map_or(received, |o| o.min(received)));
        deltas.row_ids.push(row.try_get(0)?);
        deltas.records.push(RollupRecord {
            tenant_id: row.try_get(1)?,
            meter_id: row.try_get(2)?,
            customer_id: row.try_get(3)?,
            minute: row.try_get(4)?,
            group_key: row.try_get(5)?,
            events: row.try_get(6)?,
            value_sum: row.try_get(7)?,
            value_max: row.try_get(8)?,
            latest_at: row.try_get(9)?,
            latest_id: row.try_get(10)?,
            latest_value: row.try_get(11)?,
        });
    }
    Ok(deltas)
}

/// Deletes the deltas [`deltas`] read, and no other.
#[tracing::instrument(target = "otel", level = "debug", name = "db meter_rollups.clear", skip_all, fields(otel.kind = "client"))]
pub async fn clear(conn: &mut AnyConnection, backend: Backend, deltas: &Deltas) -> Result<(), sqlx::Error> {
    let ids = serde_json::to_string(&deltas.row_ids).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(AssertSqlSafe(backend.delete_rows_sql("meter_rollup_deltas")))
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// A rollup's columns after its key's tenant, with their SQL types: what a batch appends to
/// `meter_rollup_deltas` and what a fold adds to `meter_rollups` (each with `tenant_id` first).
pub(crate) const COLUMNS: [(&str, &str); 10] = [
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
];

/// Adds rollups (one per key) to those stored, in one statement.
#[tracing::instrument(target = "otel", level = "debug", name = "db meter_rollups.add", skip_all, fields(otel.kind = "client"))]
pub async fn add(conn: &mut AnyConnection, backend: Backend, rollups: &[RollupRecord]) -> Result<(), sqlx::Error> {
    let columns: Vec<(&str, &str)> = std::iter::once(("tenant_id", "text")).chain(COLUMNS).collect();
    let rows = backend.json_records("$1", "r", &columns);
    // The latest event stays the one with the greatest (timestamp, identifier); written without
    // row comparisons, which the two backends spell differently. `WHERE true`: SQLite would read
    // `ON CONFLICT` as a join constraint of the SELECT.
    let later = "(excluded.latest_at > meter_rollups.latest_at OR (excluded.latest_at = meter_rollups.latest_at \
                 AND excluded.latest_id > meter_rollups.latest_id))";
    let sql = format!(
        "INSERT INTO meter_rollups (tenant_id, meter_id, customer_id, minute, group_key, events, value_sum, value_max, \
         latest_at, latest_id, latest_value) \
         SELECT r.tenant_id, r.meter_id, r.customer_id, r.minute, r.group_key, r.events, r.value_sum, r.value_max, \
         r.latest_at, r.latest_id, r.latest_value FROM {rows} WHERE true \
         ON CONFLICT (tenant_id, meter_id, customer_id, minute, group_key) DO UPDATE SET \
         events = meter_rollups.events + excluded.events, \
         value_sum = meter_rollups.value_sum + excluded.value_sum, \
         value_max = CASE WHEN excluded.value_max > meter_rollups.value_max THEN excluded.value_max ELSE meter_rollups.value_max END, \
         latest_value = CASE WHEN {later} THEN excluded.latest_value ELSE meter_rollups.latest_value END, \
         latest_id = CASE WHEN {later} THEN excluded.latest_id ELSE meter_rollups.latest_id END, \
         latest_at = CASE WHEN {later} THEN excluded.latest_at ELSE meter_rollups.latest_at END"
    );
    let json = serde_json::to_string(rollups).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(AssertSqlSafe(sql)).bind(json).execute(conn).await?;
    Ok(())
}

/// Takes the fold's advisory lock (PostgreSQL, transaction-scoped, across replicas) without
/// waiting: `false` means another replica is folding. SQLite's write transaction is the lock.
pub async fn try_lock(conn: &mut AnyConnection, backend: Backend) -> Result<bool, sqlx::Error> {
    let Some(sql) = backend.try_advisory_lock_sql() else {
        return Ok(true);
    };
    let locked: i64 = sqlx::query_scalar(sql)
        .bind("meter_rollups")
        .bind("fold")
        .fetch_one(conn)
        .await?;
    Ok(locked == 1)
}
