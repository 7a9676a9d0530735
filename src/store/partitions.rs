//! The monthly partitions of `meter_events` on PostgreSQL, made ahead of the events that fill
//! them. An event outside every partition lands in the default one: nothing is refused for a
//! missing partition, but a partition cannot be made later for a month the default one holds
//! events of, so the service makes them early (see `billing::metering::maintain_partitions`).
use sqlx::{AnyConnection, AssertSqlSafe, Connection};

use super::Backend;
use crate::domain::calendar::utc_month_of;

/// `meter_events_y2026m12`: the partition of the UTC month starting at `start`.
fn name_of(start: i64) -> Option<String> {
    let date = jiff::Timestamp::from_second(start).ok()?.to_string();
    // "2026-12-01T00:00:00Z"
    Some(format!("meter_events_y{}m{}", date.get(0..4)?, date.get(5..7)?))
}

/// Makes the partitions of the UTC months from the one containing `from` to the one containing
/// `to`, those that do not exist yet; answers the names made.
#[tracing::instrument(target = "otel", level = "debug", name = "db partitions.ensure", skip_all, fields(otel.kind = "client"))]
pub async fn ensure_months(
    conn: &mut AnyConnection,
    backend: Backend,
    from: i64,
    to: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let mut made = Vec::new();
    let mut at = from;
    while at <= to {
        let Ok((start, end)) = utc_month_of(at) else { break };
        at = end;
        let Some(name) = name_of(start) else { break };
        let Some(statements) = backend.meter_event_partition_sql(&name, start, end) else {
            return Ok(made);
        };
        let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(&name)
            .fetch_one(&mut *conn)
            .await?;
        if exists.is_some() {
            continue;
        }
        let mut tx = conn.begin().await?;
        for sql in statements {
            sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        made.push(name);
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    #[test]
    fn partitions_are_named_by_month() {
        assert_eq!(super::name_of(1_764_547_200).as_deref(), Some("meter_events_y2025m12"));
    }
}
