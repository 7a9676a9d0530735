//! The billing cycle: bills every subscription whose period has ended, in the service (any
//! number of replicas) or from `billing-api cycles run` (a cron job, a serverless deployment).
//!
//! Each subscription is advanced in a transaction of its own: claim the earliest one due
//! (PostgreSQL: `FOR UPDATE SKIP LOCKED`, so concurrent runners never wait on each other nor take
//! the same one; SQLite: the write transaction is the lock), bill what fell due, commit. A runner
//! killed at any moment loses its transaction and leaves the subscription due for the next run;
//! a period is billed once whoever runs it (the subscription's stored period moves in the same
//! transaction, and the unique index `invoices_one_per_period` stands behind it).
//!
//! Then it moves each subscription whose standing changed: `past_due` when one of its invoices
//! is still owed `billing.past_due_after` past its due date, `active` again when none is.
use std::time::Duration;

use futures_util::future::join_all;

use tokio_util::sync::CancellationToken;

use crate::operation::{Ctx, Error};
use crate::store::subscriptions::{self, Claimed};
use crate::store::{Backend, Store};
use crate::telemetry::metrics;

use super::subscriptions::{advance_locked, update_standing};

/// The most periods one subscription is billed in one transaction (a long-stopped scheduler
/// catches up a year of monthly periods at a time, then moves on to the others).
pub const MAX_PERIODS_PER_RUN: usize = 12;

/// Claimers per run on PostgreSQL (each holds a pooled connection while the run lasts): on two
/// cores, 3 bill about twice as fast as 1 and 4 no faster (bench/cycles.sh).
pub const WORKERS: usize = 3;

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Subscriptions advanced.
    pub subscriptions: usize,
    /// Periods billed (one invoice each).
    pub periods: usize,
    /// Subscriptions that failed (left due, retried by the next run).
    pub failures: usize,
    /// Subscriptions that became past due, or active again.
    pub standings: usize,
}

/// Bills everything due by `until`, then moves the subscriptions whose standing changed by then
/// (`past_due_after`: seconds an invoice may stay owed past its due date), then returns. Stops
/// early when `stop` is cancelled, between two subscriptions.
pub async fn run_with_standing(store: &Store, until: i64, past_due_after: i64, stop: &CancellationToken) -> Report {
    let mut report = run_until(store, until, stop).await;
    let due_by = until.saturating_sub(past_due_after);
    // A subscription moved no longer matches the claim; one that failed or did not move (another
    // writer moved it first) is not claimed again in this run, so a run always ends.
    let mut done: Vec<String> = Vec::new();
    while !stop.is_cancelled() {
        match standing_one(store, due_by, &done).await {
            Ok(None) => break,
            Ok(Some((_, true))) => report.standings += 1,
            Ok(Some((id, false))) => done.push(id),
            Err((id, e)) => {
                tracing::warn!(subscription = %id, error = %e, "updating a subscription's standing failed");
                metrics::cycle_failure();
                report.failures += 1;
                if id.is_empty() || done.contains(&id) {
                    break;
                }
                done.push(id);
            }
        }
    }
    report
}

/// Bills everything due by `until`, then returns (the standing of subscriptions is left as it
/// is: see [`run_with_standing`]). Stops early when `stop` is cancelled, between two
/// subscriptions.
///
/// On PostgreSQL [`WORKERS`] claimers (at most half of `database.max_connections`) run side by
/// side, each a transaction at a time: one subscription's round trips leave the database and
/// the service idle in turn, so one claimer keeps about one core of two busy. SQLite has one
/// writer at a time, so one claimer.
pub async fn run_until(store: &Store, until: i64, stop: &CancellationToken) -> Report {
    // Never more than half the pool, so that requests still find connections meanwhile.
    let pool_share = store.pool().options().get_max_connections() as usize / 2;
    let workers = match store.backend() {
        Backend::Postgres => WORKERS.min(pool_share).max(1),
        Backend::Sqlite => 1,
    };
    let reports = join_all((0..workers).map(|_| claimer(store, until, stop))).await;
    reports.into_iter().fold(Report::default(), |mut sum, r| {
        sum.subscriptions += r.subscriptions;
        sum.periods += r.periods;
        sum.failures += r.failures;
        sum
    })
}

/// One claimer of [`run_until`]: bills one due subscription after another, in the order they
/// fell due, until none is left. One that fails stays due (its transaction is rolled back) and
/// the claimer moves past it, so a run always ends; the next run retries it.
async fn claimer(store: &Store, until: i64, stop: &CancellationToken) -> Report {
    let mut report = Report::default();
    let mut after: Option<Claimed> = None;
    while !stop.is_cancelled() {
        match advance_one(store, until, &mut after).await {
            Ok(None) => break,
            Ok(Some(periods)) => {
                report.subscriptions += 1;
                report.periods += periods;
                metrics::cycle_periods(periods);
            }
            Err((Some(id), e)) => {
                tracing::warn!(subscription = %id, error = %e, "billing a subscription failed; it stays due");
                metrics::cycle_failure();
                report.failures += 1;
            }
            Err((None, e)) => {
                tracing::warn!(error = %e, "claiming a due subscription failed");
                metrics::cycle_failure();
                report.failures += 1;
                break;
            }
        }
    }
    report
}

/// Claims the next due subscription after `after` (which it then names) and bills what fell
/// due. `Ok(None)`: nothing more is due. An error leaves `after` at the one that failed, or as
/// it was when the claim itself failed.
async fn advance_one(
    store: &Store,
    until: i64,
    after: &mut Option<Claimed>,
) -> Result<Option<usize>, (Option<String>, Error)> {
    let backend = store.backend();
    let unclaimed = |e: sqlx::Error| (None, Error::from(e));
    let mut tx = store.begin_write().await.map_err(unclaimed)?;
    let claimed = subscriptions::claim_due(&mut tx, backend, until, after.as_ref()).await;
    let Some(claimed) = claimed.map_err(unclaimed)? else {
        return Ok(None);
    };
    let (id, tenant, row) = (claimed.id.clone(), claimed.tenant.clone(), claimed.row.clone());
    *after = Some(claimed);
    let ctx = Ctx::new(
        backend,
        tenant,
        "system:billing-cycle".to_owned(),
        format!("cycle-{}", uuid::Uuid::now_v7()),
        crate::clock::now(),
    );
    let failed = |e: Error| (Some(id.clone()), e);
    let periods = advance_locked(&mut tx, &ctx, row, until, MAX_PERIODS_PER_RUN)
        .await
        .map_err(failed)?;
    tx.commit().await.map_err(|e| failed(e.into()))?;
    ctx.committed();
    Ok(Some(periods))
}

/// Claims a subscription whose standing changed (by `due_by`, other than `skip`) and moves it:
/// its id and whether it moved. `Ok(None)`: none has.
async fn standing_one(store: &Store, due_by: i64, skip: &[String]) -> Result<Option<(String, bool)>, (String, Error)> {
    let backend = store.backend();
    let mut tx = store.begin_write().await.map_err(|e| (String::new(), e.into()))?;
    let claimed = subscriptions::claim_misstanding(&mut tx, backend, due_by, skip)
        .await
        .map_err(|e| (String::new(), e.into()))?;
    let Some((id, tenant)) = claimed else {
        return Ok(None);
    };
    let ctx = Ctx::new(
        backend,
        tenant,
        "system:billing-cycle".to_owned(),
        format!("cycle-{}", uuid::Uuid::now_v7()),
        crate::clock::now(),
    );
    let changed = update_standing(&mut tx, &ctx, &id, due_by)
        .await
        .map_err(|e| (id.clone(), e))?;
    tx.commit().await.map_err(|e| (id.clone(), e.into()))?;
    ctx.committed();
    Ok(Some((id, changed)))
}

/// The scheduler inside the service: every `interval` until `stop`, bills what is due and moves
/// the subscriptions whose standing changed (`past_due_after` seconds past an invoice's due date).
pub async fn run(store: Store, interval: Duration, past_due_after: i64, stop: CancellationToken) {
    loop {
        let report = run_with_standing(&store, crate::clock::now(), past_due_after, &stop).await;
        if report.periods > 0 || report.failures > 0 || report.standings > 0 {
            tracing::info!(
                subscriptions = report.subscriptions,
                periods = report.periods,
                standings = report.standings,
                failures = report.failures,
                "billing cycle ran"
            );
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
