//! Meter events: the identifiers claimed, the events stored, and what they add to the rollups,
//! each a single statement per batch whatever its size.
//!
//! Two writers, one behaviour ([`Writer`]): through the `Any` pool, a batch goes as one JSON
//! parameter read back as rows by `Backend::json_records`; on PostgreSQL's own connection, the
//! identifiers, the events and the rollup deltas are streamed with `COPY`, which the `Any` driver cannot say and
//! which costs PostgreSQL about half the CPU of an `INSERT … SELECT` from JSON (measured with
//! `bench/meter_events.sh`).
use std::collections::HashSet;

use serde::Serialize;
use serde_json::Value;
use sqlx::postgres::PgConnection;
use sqlx::{Acquire, AnyConnection, AssertSqlSafe};

use super::Backend;

/// An event as stored.
#[derive(Serialize)]
pub struct EventRow<'a> {
    pub identifier: &'a str,
    pub event_name: &'a str,
    pub customer_id: &'a str,
    pub occurred: i64,
    pub properties: &'a Value,
}

/// What a batch adds to one rollup.
#[derive(Serialize)]
pub struct RollupRow<'a> {
    pub meter_id: &'a str,
    pub customer_id: &'a str,
    pub minute: i64,
    pub group_key: &'a str,
    pub events: i64,
    pub value_sum: i64,
    pub value_max: i64,
    pub latest_at: i64,
    pub latest_id: &'a str,
    pub latest_value: i64,
}

/// A distinct value a `unique_count` meter saw.
#[derive(Serialize)]
pub struct DistinctRow<'a> {
    pub meter_id: &'a str,
    pub customer_id: &'a str,
    pub minute: i64,
    pub group_key: &'a str,
    pub value: &'a str,
}

/// The identifiers a batch claimed: all it asked for, or only these.
pub enum Claimed {
    All,
    Only(HashSet<String>),
}

impl Claimed {
    pub fn contains(&self, identifier: &str) -> bool {
        match self {
            Claimed::All => true,
            Claimed::Only(claimed) => claimed.contains(identifier),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Claimed::Only(claimed) if claimed.is_empty())
    }
}

/// Where a batch is written, inside the caller's transaction: the `Any` connection (either
/// backend), or PostgreSQL's own (`COPY`).
pub enum Writer<'c> {
    Any(&'c mut AnyConnection, Backend),
    Postgres(&'c mut PgConnection),
}

fn json<T: Serialize + ?Sized>(value: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(e.into()))
}

impl Writer<'_> {
    fn backend(&self) -> Backend {
        match self {
            Writer::Any(_, backend) => *backend,
            Writer::Postgres(_) => Backend::Postgres,
        }
    }

    /// Claims the identifiers (without repeats) that no earlier event took: the others are
    /// duplicates. The claim is the transaction's until it commits; a concurrent batch claiming
    /// the same identifier waits for it, then finds it taken.
    ///
    /// With `COPY`, the batch is first taken as all new (the common case: a retry is the
    /// exception), in a savepoint: an identifier already claimed fails it with a unique
    /// violation (which PostgreSQL logs), and the claim is made again the way that skips them.
    #[tracing::instrument(target = "otel", level = "debug", name = "db meter_events.claim", skip_all, fields(otel.kind = "client"))]
    pub async fn claim(&mut self, tenant: &str, identifiers: &[&str]) -> Result<Claimed, sqlx::Error> {
        let backend = self.backend();
        // `WHERE true`: SQLite would read `ON CONFLICT` as a join constraint of the SELECT.
        let sql = AssertSqlSafe(format!(
            "INSERT INTO meter_event_ids (tenant_id, identifier) SELECT $1, i.value FROM {} WHERE true \
             ON CONFLICT DO NOTHING RETURNING identifier",
            backend.json_texts("$2", "i")
        ));
        let ids = json(identifiers)?;
        let claimed: Vec<String> = match self {
            Writer::Any(conn, _) => {
                sqlx::query_scalar(sql)
                    .bind(tenant)
                    .bind(ids)
                    .fetch_all(&mut **conn)
                    .await?
            }
            Writer::Postgres(conn) => {
                let mut rows = Vec::with_capacity(identifiers.len() * (tenant.len() + 48));
                for id in identifiers {
                    copy_row(&mut rows, &[Field::Text(tenant), Field::Text(id)]);
                }
                let mut savepoint = conn.begin().await?;
                match copy_in(
                    &mut savepoint,
                    "COPY meter_event_ids (tenant_id, identifier) FROM STDIN",
                    rows,
                )
                .await
                {
                    Ok(()) => {
                        savepoint.commit().await?;
                        return Ok(Claimed::All);
                    }
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => savepoint.rollback().await?,
                    Err(e) => return Err(e),
                }
                sqlx::query_scalar(sql)
                    .bind(tenant)
                    .bind(ids)
                    .fetch_all(&mut **conn)
                    .await?
            }
        };
        Ok(Claimed::Only(claimed.into_iter().collect()))
    }

    /// Stores events (`properties` as its JSON text: read as `json` on PostgreSQL, whose text
    /// is kept as sent rather than unescaped from a string).
    #[tracing::instrument(target = "otel", level = "debug", name = "db meter_events.insert", skip_all, fields(otel.kind = "client"))]
    pub async fn insert(&mut self, tenant: &str, events: &[EventRow<'_>], received: i64) -> Result<(), sqlx::Error> {
        match self {
            Writer::Any(conn, backend) => {
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
                    .bind(json(events)?)
                    .bind(received)
                    .execute(&mut **conn)
                    .await?;
            }
            Writer::Postgres(conn) => {
                let mut rows = Vec::with_capacity(events.len() * 256);
                for e in events {
                    copy_row(
                        &mut rows,
                        &[
                            Field::Text(tenant),
                            Field::Text(e.identifier),
                            Field::Text(e.event_name),
                            Field::Text(e.customer_id),
                            Field::Int(e.occurred),
                            Field::Json(e.properties),
                            Field::Int(received),
                        ],
                    );
                }
                copy_in(
                    conn,
                    "COPY meter_events (tenant_id, identifier, event_name, customer_id, occurred, properties, received) FROM STDIN",
                    rows,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Appends what the batch adds to the rollups (`meter_rollup_deltas`, folded into
    /// `meter_rollups` later by `billing::rollups::fold_once`): an insert of new rows, so that
    /// concurrent batches adding to the same rollups never wait on one another.
    #[tracing::instrument(target = "otel", level = "debug", name = "db meter_events.add_rollups", skip_all, fields(otel.kind = "client"))]
    pub async fn add_rollups(
        &mut self,
        tenant: &str,
        rollups: &[RollupRow<'_>],
        received: i64,
    ) -> Result<(), sqlx::Error> {
        match self {
            Writer::Any(conn, backend) => {
                let rows = backend.json_records("$2", "r", &super::meter_rollups::COLUMNS);
                let sql = AssertSqlSafe(format!(
                    "INSERT INTO meter_rollup_deltas (tenant_id, meter_id, customer_id, minute, group_key, events, value_sum, \
                     value_max, latest_at, latest_id, latest_value, received) \
                     SELECT $1, r.meter_id, r.customer_id, r.minute, r.group_key, r.events, r.value_sum, r.value_max, \
                     r.latest_at, r.latest_id, r.latest_value, $3 FROM {rows}"
                ));
                sqlx::query(sql)
                    .bind(tenant)
                    .bind(json(rollups)?)
                    .bind(received)
                    .execute(&mut **conn)
                    .await?;
            }
            Writer::Postgres(conn) => {
                let mut rows = Vec::with_capacity(rollups.len() * 160);
                for r in rollups {
                    copy_row(
                        &mut rows,
                        &[
                            Field::Text(tenant),
                            Field::Text(r.meter_id),
                            Field::Text(r.customer_id),
                            Field::Int(r.minute),
                            Field::Text(r.group_key),
                            Field::Int(r.events),
                            Field::Int(r.value_sum),
                            Field::Int(r.value_max),
                            Field::Int(r.latest_at),
                            Field::Text(r.latest_id),
                            Field::Int(r.latest_value),
                            Field::Int(received),
                        ],
                    );
                }
                copy_in(
                    conn,
                    "COPY meter_rollup_deltas (tenant_id, meter_id, customer_id, minute, group_key, events, value_sum, \
                     value_max, latest_at, latest_id, latest_value, received) FROM STDIN",
                    rows,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Records distinct values.
    #[tracing::instrument(target = "otel", level = "debug", name = "db meter_events.add_distinct", skip_all, fields(otel.kind = "client"))]
    pub async fn add_distinct(&mut self, tenant: &str, values: &[DistinctRow<'_>]) -> Result<(), sqlx::Error> {
        let rows = self.backend().json_records(
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
        let sql = format!(
            "INSERT INTO meter_distinct_values (tenant_id, meter_id, customer_id, minute, group_key, value) \
         SELECT $1, d.meter_id, d.customer_id, d.minute, d.group_key, d.value FROM {rows} WHERE true \
         ON CONFLICT DO NOTHING"
        );
        self.execute(sql, tenant, json(values)?).await
    }

    /// Runs a statement that takes the tenant and a JSON array, on either connection.
    async fn execute(&mut self, sql: String, tenant: &str, rows: String) -> Result<(), sqlx::Error> {
        match self {
            Writer::Any(conn, _) => {
                sqlx::query(AssertSqlSafe(sql))
                    .bind(tenant)
                    .bind(rows)
                    .execute(&mut **conn)
                    .await?;
            }
            Writer::Postgres(conn) => {
                sqlx::query(AssertSqlSafe(sql))
                    .bind(tenant)
                    .bind(rows)
                    .execute(&mut **conn)
                    .await?;
            }
        }
        Ok(())
    }
}

/// A field of a row in `COPY`'s text format.
enum Field<'a> {
    Text(&'a str),
    Int(i64),
    Json(&'a Value),
}

/// Appends one row in `COPY`'s text format: tab-separated, backslash, tab and line breaks escaped.
fn copy_row(out: &mut Vec<u8>, fields: &[Field<'_>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b'\t');
        }
        match field {
            Field::Text(text) => escape_into(out, text.as_bytes()),
            Field::Int(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Field::Json(value) => {
                // Serialising to memory cannot fail: every key of a `Value` is a string.
                let _ = serde_json::to_writer(Escaped(out), value);
            }
        }
    }
    out.push(b'\n');
}

fn escape_into(out: &mut Vec<u8>, bytes: &[u8]) {
    // Copied in runs between the bytes to escape (rare: identifiers and names hold none), not
    // byte by byte: this is most of the bytes a batch sends.
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(escaped);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
}

/// Writes through [`escape_into`].
struct Escaped<'a>(&'a mut Vec<u8>);

impl std::io::Write for Escaped<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        escape_into(self.0, buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn copy_in(conn: &mut PgConnection, statement: &str, rows: Vec<u8>) -> Result<(), sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(rows).await?;
    copy.finish().await?;
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_backslashes_tabs_and_line_breaks_and_nothing_else() {
        let mut out = Vec::new();
        escape_into(&mut out, "a\\b\tc\nd\re \"é\" \\".as_bytes());
        assert_eq!(String::from_utf8(out).as_deref(), Ok("a\\\\b\\tc\\nd\\re \"é\" \\\\"));
        let mut out = b"x".to_vec();
        escape_into(&mut out, b"plain");
        escape_into(&mut out, b"");
        assert_eq!(out, b"xplain");
    }
}
