//! Group commit for batches of meter events on PostgreSQL: batches of one tenant that wait for a
//! writer while another is busy are written together, in one transaction of the copy pool
//! (`metering::write_group`), and each is answered as if written alone.
//!
//! Why: what PostgreSQL spends on a transaction of `COPY` statements hardly depends on its size
//! up to thousands of rows (each statement sets up its buffers; each transaction its rollup
//! deltas, one per meter, customer and minute, whatever the number of events behind them), so
//! it is the number of transactions that costs. `bench/meter_events.sh` measured PostgreSQL's
//! CPU per event at 8.2 µs in transactions of 1,000 events and 4.4 µs in transactions of 4,000
//! (batches of 4,000, for the experiment).
//! Under a light load nothing waits and every batch is written at once, alone; under a heavy
//! one the waiting batches make the transactions bigger, and cheaper per event.
//!
//! Exactly once is kept: a group's claims, events and rollups commit together or not at all. A
//! group whose data PostgreSQL refuses is written again batch by batch, so that one batch's
//! failure is its own; any other failure (the database unreachable, a statement timeout) is
//! every batch's answer, and their retries count each event once. A batch whose caller has gone
//! before a writer took it (a client that hung up, a request timed out) is dropped unwritten:
//! the queue never holds more than the requests in flight, and the retry counts it once.
use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt;
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::Instrument;

use super::metering::{self, Prepared};
use crate::objects::MeterEventBatch;
use crate::operation::{Error, Result};
use crate::store::Store;
use crate::store::meter_events::Writer;
use crate::telemetry::metrics;

/// The most events one transaction takes: waiting batches are added to a group up to this.
pub const MAX_GROUP_EVENTS: usize = 8_000;

/// The writers, fed by a queue; dropped, they finish what is queued and stop.
#[derive(Debug)]
pub struct GroupCommit {
    queue: Arc<Queue>,
    _stop: DropGuard,
}

#[derive(Debug, Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Notify,
}

struct Job {
    tenant: String,
    received: i64,
    batch: Prepared,
    reply: oneshot::Sender<Result<MeterEventBatch>>,
    /// The request's span: the group's write is traced under its first job's, linked to the others'.
    span: tracing::Span,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Starts `writers` writers (each holds at most one connection of the store's copy pool at
    /// a time: `database.copy_connections` of them). Needs a Tokio runtime.
    pub fn start(store: &Store, writers: u32) -> Self {
        let queue = Arc::new(Queue::default());
        let stop = CancellationToken::new();
        for _ in 0..writers.max(1) {
            tokio::spawn(run(queue.clone(), store.clone(), stop.clone()));
        }
        GroupCommit {
            queue,
            _stop: stop.drop_guard(),
        }
    }

    /// Writes a prepared batch of the tenant's, with whatever batches of the tenant's wait
    /// beside it, and answers it once committed.
    pub async fn write(&self, tenant: &str, received: i64, batch: Prepared) -> Result<MeterEventBatch> {
        let (reply, answer) = oneshot::channel();
        self.queue.push(Job {
            tenant: tenant.to_owned(),
            received,
            batch,
            reply,
            span: tracing::Span::current(),
        });
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

impl GroupCommit {
    /// How many batches wait for a writer.
    pub fn waiting(&self) -> usize {
        self.queue.lock().len()
    }
}

fn stopped() -> Error {
    Error::Db(sqlx::Error::Protocol("the meter event writers have stopped".into()))
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Job>> {
        // A writer never panics holding the lock (it only moves jobs), so the queue is whole.
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, job: Job) {
        let mut jobs = self.lock();
        jobs.push_back(job);
        metrics::meter_batches_waiting(1.0);
        drop(jobs);
        self.ready.notify_one();
    }

    /// The oldest job and, behind it, the same tenant's next jobs while they fit in
    /// [`MAX_GROUP_EVENTS`], in the order they came (jobs whose caller has gone are dropped);
    /// whether jobs are left for another writer.
    fn take_group(&self) -> (Vec<Job>, bool) {
        let mut jobs = self.lock();
        let before = jobs.len();
        jobs.retain(|job| !job.reply.is_closed());
        let mut group: Vec<Job> = Vec::new();
        let mut events = 0;
        let mut i = 0;
        while i < jobs.len() {
            let job = &jobs[i];
            if group.first().is_some_and(|first| first.tenant != job.tenant) {
                i += 1;
                continue;
            }
            if !group.is_empty() && events + job.batch.len() > MAX_GROUP_EVENTS {
                break;
            }
            if let Some(job) = jobs.remove(i) {
                events += job.batch.len();
                group.push(job);
            }
        }
        metrics::meter_batches_waiting(-((before - jobs.len()) as f64));
        (group, !jobs.is_empty())
    }
}

async fn run(queue: Arc<Queue>, store: Store, stop: CancellationToken) {
    loop {
        // Made before looking, so a job pushed after the look still wakes this writer.
        let ready = queue.ready.notified();
        let (group, more) = queue.take_group();
        if group.is_empty() {
            tokio::select! {
                biased;
                () = ready => continue,
                () = stop.cancelled() => return,
            }
        }
        if more {
            queue.ready.notify_one();
        }
        let span = tracing::debug_span!(target: "otel", parent: &group[0].span, "meter_events.group_commit", batches = group.len());
        for job in &group[1..] {
            span.follows_from(&job.span);
        }
        // A panic would be a bug; it fails this group's batches (their callers get an error, as
        // their answers are dropped), not the writer.
        if AssertUnwindSafe(write(&store, group).instrument(span))
            .catch_unwind()
            .await
            .is_err()
        {
            tracing::error!("a meter event writer panicked writing a group; its batches were not answered");
        }
    }
}

/// Writes a group and answers each of its jobs.
async fn write(store: &Store, group: Vec<Job>) {
    let received = group.iter().map(|j| j.received).min().unwrap_or_default();
    let batches: Vec<&Prepared> = group.iter().map(|j| &j.batch).collect();
    let written = in_transaction(store, &group[0].tenant, received, &batches).await;
    drop(batches);
    match written {
        Ok(answers) => {
            for (job, answer) in group.into_iter().zip(answers) {
                // A caller that has gone needs no answer: its batch is written.
                let _ = job.reply.send(Ok(answer));
            }
        }
        Err(e) if group.len() > 1 && is_the_batches(&e) => {
            for job in group {
                let answer = in_transaction(store, &job.tenant, job.received, &[&job.batch])
                    .await
                    .and_then(|mut a| a.pop().ok_or_else(stopped));
                let _ = job.reply.send(answer);
            }
        }
        Err(e) => {
            let shared = share(&e);
            let mut first = Some(e);
            for job in group {
                let _ = job
                    .reply
                    .send(Err(first.take().unwrap_or_else(|| shared.clone_error())));
            }
        }
    }
}

async fn in_transaction(
    store: &Store,
    tenant: &str,
    received: i64,
    batches: &[&Prepared],
) -> Result<Vec<MeterEventBatch>> {
    let Some(tx) = store.begin_copy().await else {
        return Err(Error::Db(sqlx::Error::Configuration(
            "this store has no copy pool".into(),
        )));
    };
    let mut tx = tx?;
    let written = metering::write_group(Writer::Postgres(&mut tx), tenant, received, batches).await?;
    tx.commit().await?;
    metrics::meter_transaction();
    Ok(written)
}

/// Whether a group's failure may be one batch's: PostgreSQL refused its data (SQLSTATE classes
/// 22, data exception, and 23, integrity constraint violation, or an exception a trigger or
/// function raised, P0001), or the values overflowed together. Not a connection that failed or
/// could not be had, a deadlock, a timeout or a shutdown: that is every batch's.
fn is_the_batches(e: &Error) -> bool {
    match e {
        Error::Invalid(_) => true,
        Error::Db(sqlx::Error::Database(e)) => e
            .code()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("23") || code == "P0001"),
        _ => false,
    }
}

/// A failure to answer the group's other jobs with (`sqlx::Error` cannot be cloned): what
/// decides their answer (503 for a pool that had no connection, else 500) is kept.
struct Shared(Option<String>);

fn share(e: &Error) -> Shared {
    match e {
        Error::Db(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed) => Shared(None),
        other => Shared(Some(other.to_string())),
    }
}

impl Shared {
    fn clone_error(&self) -> Error {
        match &self.0 {
            None => Error::Db(sqlx::Error::PoolTimedOut),
            Some(why) => Error::Db(sqlx::Error::Protocol(format!("the batch's group failed: {why}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(tenant: &str, events: usize) -> (Job, oneshot::Receiver<Result<MeterEventBatch>>) {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            tenant: tenant.into(),
            received: 0,
            batch: Prepared::of_events(events),
            reply,
            span: tracing::Span::none(),
        };
        (job, answer)
    }

    fn taken(queue: &Queue) -> (Vec<(String, usize)>, bool) {
        let (group, more) = queue.take_group();
        (group.iter().map(|j| (j.tenant.clone(), j.batch.len())).collect(), more)
    }

    #[test]
    fn a_group_is_the_oldest_jobs_tenants_next_jobs_in_order_while_they_fit() {
        let queue = Queue::default();
        let mut answers = Vec::new();
        for (tenant, events) in [("a", 3_000), ("b", 1_000), ("a", 3_000), ("a", 3_000), ("a", 500)] {
            let (job, answer) = job(tenant, events);
            queue.push(job);
            answers.push(answer);
        }
        let a = |n: usize| ("a".to_owned(), n);
        // The third job of `a` would make 9,000 events: the group stops there, and the last
        // (which would fit) does not go ahead of it.
        assert_eq!(taken(&queue), (vec![a(3_000), a(3_000)], true));
        assert_eq!(taken(&queue), (vec![("b".to_owned(), 1_000)], true));
        assert_eq!(taken(&queue), (vec![a(3_000), a(500)], false));
        assert_eq!(taken(&queue), (vec![], false));
    }

    #[test]
    fn a_job_whose_caller_has_gone_is_dropped_unwritten() {
        let queue = Queue::default();
        let (first, _kept) = job("a", 10);
        let (gone, answer) = job("a", 20);
        drop(answer);
        let (last, _kept_too) = job("a", 30);
        for j in [first, gone, last] {
            queue.push(j);
        }
        assert_eq!(taken(&queue), (vec![("a".to_owned(), 10), ("a".to_owned(), 30)], false));
        assert_eq!(queue.lock().len(), 0);
    }
}
