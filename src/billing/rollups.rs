//! The rollup folder: moves what batches of meter events appended to `meter_rollup_deltas` into
//! `meter_rollups`, every second on every replica (one at a time: the others find the lock
//! taken and skip), and once more when the service stops, after its requests have drained.
//!
//! Batches append rather than add to the rollups because a busy customer's batches all add to
//! the same few minutes: added in place, each batch would wait for the one before it to commit.
//! Nothing waits for a fold to count: usage reads the rollups and the deltas together.
use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::metering::{Latest, Rollup, RollupKey};
use crate::store::Store;
use crate::store::meter_rollups::{self, RollupRecord};
use crate::telemetry::metrics;

/// How often the deltas are folded.
pub const FOLD_INTERVAL: Duration = Duration::from_secs(1);

/// What a fold moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Folded {
    /// Delta rows folded.
    pub deltas: usize,
    /// Rollup rows they added to.
    pub rollups: usize,
    /// When the oldest delta was received (Unix seconds).
    pub oldest: i64,
}

/// The most deltas one fold reads (a few seconds' worth under heavy load): a backlog, after
/// the database was away, is folded in steps rather than read into memory at once.
pub const FOLD_LIMIT: i64 = 100_000;

/// Folds the deltas committed so far, up to `limit` of them, in one transaction; `None` if
/// there was none, or another replica was folding.
pub async fn fold_once(store: &Store, limit: i64) -> Result<Option<Folded>, sqlx::Error> {
    let backend = store.backend();
    let mut tx = store.begin_snapshot_write().await?;
    if !meter_rollups::try_lock(&mut tx, backend).await? {
        return Ok(None);
    }
    let deltas = meter_rollups::deltas(&mut tx, backend, limit).await?;
    let Some(oldest) = deltas.oldest else {
        metrics::rollups_folded(0, 0);
        return Ok(None);
    };
    let rollups = add_up(&deltas.records)
        .ok_or_else(|| sqlx::Error::Protocol("a rollup's total would pass 64 bits (bigint out of range)".into()))?;
    meter_rollups::add(&mut tx, backend, &rollups).await?;
    meter_rollups::clear(&mut tx, backend, &deltas).await?;
    tx.commit().await?;
    metrics::rollups_folded(deltas.len() as i64, crate::clock::now() - oldest);
    Ok(Some(Folded {
        deltas: deltas.len(),
        rollups: rollups.len(),
        oldest,
    }))
}

/// Folds [`FOLD_LIMIT`] deltas at a time until fewer were left.
pub async fn fold_all(store: &Store) -> Result<(), sqlx::Error> {
    while let Some(folded) = fold_once(store, FOLD_LIMIT).await? {
        if (folded.deltas as i64) < FOLD_LIMIT {
            break;
        }
    }
    Ok(())
}

/// The deltas added up per tenant and rollup key, as the rollups add them (`Rollup::merge`);
/// `None` when a total would overflow.
fn add_up(deltas: &[RollupRecord]) -> Option<Vec<RollupRecord>> {
    let mut by_key: BTreeMap<(&str, RollupKey<'_>), Rollup<'_>> = BTreeMap::new();
    for d in deltas {
        let key = RollupKey {
            meter: &d.meter_id,
            customer: &d.customer_id,
            minute: d.minute,
            group: &d.group_key,
        };
        let rollup = Rollup {
            events: d.events,
            sum: d.value_sum,
            max: d.value_max,
            latest: Latest {
                timestamp: d.latest_at,
                identifier: &d.latest_id,
                value: d.latest_value,
            },
        };
        match by_key.get_mut(&(d.tenant_id.as_str(), key)) {
            Some(total) => total.merge(&rollup)?,
            None => {
                by_key.insert((&d.tenant_id, key), rollup);
            }
        }
    }
    Some(
        by_key
            .into_iter()
            .map(|((tenant, k), r)| RollupRecord {
                tenant_id: tenant.to_owned(),
                meter_id: k.meter.to_owned(),
                customer_id: k.customer.to_owned(),
                minute: k.minute,
                group_key: k.group.to_owned(),
                events: r.events,
                value_sum: r.sum,
                value_max: r.max,
                latest_at: r.latest.timestamp,
                latest_id: r.latest.identifier.to_owned(),
                latest_value: r.latest.value,
            })
            .collect(),
    )
}

/// Folds every [`FOLD_INTERVAL`] until `stop`. A failed fold is logged and tried again: the
/// deltas wait, and are counted meanwhile.
pub async fn run(store: Store, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(FOLD_INTERVAL) => {}
        }
        if let Err(e) = fold_all(&store).await {
            metrics::rollup_fold_failure();
            tracing::warn!(error = %crate::store::describe_error(&e), "meter rollups could not be folded; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(tenant: &str, minute: i64, events: i64, latest: (i64, &str, i64)) -> RollupRecord {
        RollupRecord {
            tenant_id: tenant.into(),
            meter_id: "mtr_1".into(),
            customer_id: "cus_1".into(),
            minute,
            group_key: "[]".into(),
            events,
            value_sum: events * 10,
            value_max: events,
            latest_at: latest.0,
            latest_id: latest.1.into(),
            latest_value: latest.2,
        }
    }

    #[test]
    fn deltas_add_up_per_tenant_and_key_and_the_latest_is_the_greatest_timestamp_then_identifier() {
        let deltas = [
            delta("t1", 60, 2, (61, "b", 5)),
            delta("t1", 60, 3, (65, "a", 7)),
            delta("t1", 60, 1, (65, "c", 9)),
            delta("t1", 120, 4, (130, "z", 1)),
            delta("t2", 60, 5, (61, "y", 2)),
        ];
        let folded = add_up(&deltas).unwrap();
        let summary: Vec<(&str, i64, i64, i64, i64, &str, i64)> = folded
            .iter()
            .map(|r| {
                (
                    r.tenant_id.as_str(),
                    r.minute,
                    r.events,
                    r.value_sum,
                    r.value_max,
                    r.latest_id.as_str(),
                    r.latest_value,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("t1", 60, 6, 60, 3, "c", 9),
                ("t1", 120, 4, 40, 4, "z", 1),
                ("t2", 60, 5, 50, 5, "y", 2),
            ]
        );
        let mut huge = delta("t1", 60, 1, (61, "a", 1));
        huge.value_sum = i64::MAX;
        assert_eq!(
            add_up(&[huge.clone(), huge]),
            None,
            "an overflow is refused, not wrapped"
        );
    }
}
