//! Usage metering: meters, meter events accepted exactly once, and usage over a window.
//!
//! **Exactly once.** A batch claims its events' identifiers, stores the events and adds them to
//! the rollups in one transaction: an event is counted if and only if its identifier was
//! claimed, and a failed write (refused, rolled back, or cut by a crash) claims nothing, so the
//! client's retry counts it once. An identifier already claimed, by an earlier request or
//! earlier in the same batch, is answered `duplicate` and the rest of the batch goes on.
//!
//! **Refusals first.** Every check (customers, the values meters read) happens before the first
//! write: a refused batch writes nothing, and its events can be sent again once mended.
use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use sqlx::AnyConnection;

use super::group_commit::GroupCommit;
use crate::domain::FieldError;
use crate::domain::ids::{Kind, new_id};
use crate::domain::metering::{self, Accepted, Aggregation, MeterSpec, PropertyPath, Reading};
use crate::objects::{CustomerUsage, Meter, MeterEventBatch, MeterEventStatus, MeterUsage, UsageGroup};
use crate::operation::{Ctx, Error, Result};
use crate::store::meter_events::{DistinctRow, EventRow, RollupRow, Writer};
use crate::store::meters::{self, GroupTotals};
use crate::store::page::{Page, PageQuery};
use crate::store::{Store, meter_events, partitions, tenants};

#[derive(Debug, Clone)]
pub struct NewMeter {
    pub event_name: String,
    pub display_name: Option<String>,
    pub aggregation: Aggregation,
    pub value_property: Option<PropertyPath>,
    pub group_by: Vec<PropertyPath>,
}

/// One event of a batch, checked for its shape (not yet against customers and meters).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub identifier: String,
    pub event_name: String,
    pub customer: String,
    pub timestamp: i64,
    pub properties: Value,
}

pub async fn create_meter(conn: &mut AnyConnection, ctx: &Ctx, input: NewMeter) -> Result<Meter> {
    tenants::ensure(conn, &ctx.tenant, ctx.now).await?;
    let meter = Meter {
        id: new_id(Kind::Meter),
        object: Meter::OBJECT,
        event_name: input.event_name,
        display_name: input.display_name,
        aggregation: input.aggregation.as_str(),
        value_property: input.value_property.map(|p| p.as_str().to_owned()),
        group_by: input.group_by.iter().map(|p| p.as_str().to_owned()).collect(),
        created: ctx.now,
    };
    meters::insert(conn, &ctx.tenant, &meter).await?;
    ctx.audit(conn, "meter.created", &meter.id).await?;
    ctx.emit(conn, "meter.created", &meter).await?;
    Ok(meter)
}

pub async fn get_meter(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Meter> {
    meters::find(conn, tenant, id).await?.ok_or(Error::NotFound("meter"))
}

pub async fn list_meters(conn: &mut AnyConnection, tenant: &str, page: &PageQuery) -> Result<Page<Meter>> {
    Ok(meters::list(conn, tenant, page).await?)
}

/// A batch checked against the tenant's customers and meters, ready to be written: every
/// refusal has been found before it is.
pub struct Prepared {
    events: Vec<NewEvent>,
    specs: Vec<MeterSpec>,
    /// What each meter reads from each first event: (event, meter, reading).
    readings: Vec<(usize, usize, Reading)>,
}

impl Prepared {
    /// How many events the batch has (duplicates included).
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// A batch of `n` events that no meter reads, for tests of what carries batches.
    #[cfg(test)]
    pub(crate) fn of_events(n: usize) -> Prepared {
        let event = |i: usize| NewEvent {
            identifier: format!("e-{i}"),
            event_name: "test".into(),
            customer: "cus_test".into(),
            timestamp: 0,
            properties: Value::Null,
        };
        Prepared {
            events: (0..n).map(event).collect(),
            specs: Vec::new(),
            readings: Vec::new(),
        }
    }
}

/// Checks a batch: the customers are the tenant's, every meter of an event's name finds its
/// values. A refusal names every problem (`single`: the body was one event, so its fields are
/// named without `events[i].`).
pub async fn prepare(conn: &mut AnyConnection, ctx: &Ctx, events: Vec<NewEvent>, single: bool) -> Result<Prepared> {
    let prefix = |i: usize| if single { String::new() } else { format!("events[{i}].") };
    let first: Vec<bool> = {
        let mut seen: HashSet<&str> = HashSet::with_capacity(events.len());
        events.iter().map(|e| seen.insert(&e.identifier)).collect()
    };
    let candidates = || (0..events.len()).filter(|&i| first[i]);

    let customers: Vec<&str> = {
        let mut seen = HashSet::new();
        candidates()
            .map(|i| events[i].customer.as_str())
            .filter(|c| seen.insert(*c))
            .collect()
    };
    let known: HashSet<String> = meter_events::known_customers(conn, ctx.backend, &ctx.tenant, &json(&customers)?)
        .await?
        .into_iter()
        .collect();
    let mut problems: Vec<FieldError> = candidates()
        .filter(|&i| !known.contains(&events[i].customer))
        .map(|i| FieldError::new(format!("{}customer", prefix(i)), "unknown_customer", "no such customer"))
        .collect();

    let specs: Vec<MeterSpec> = meters::all(conn, &ctx.tenant)
        .await?
        .iter()
        .map(meters::spec)
        .collect::<std::result::Result<_, _>>()?;
    let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
    for (m, spec) in specs.iter().enumerate() {
        by_name.entry(spec.event_name.as_str()).or_default().push(m);
    }
    let mut readings = Vec::new();
    for i in candidates() {
        let e = &events[i];
        for &m in by_name.get(e.event_name.as_str()).into_iter().flatten() {
            match specs[m].read(&e.properties) {
                Ok(reading) => readings.push((i, m, reading)),
                Err(mut problem) => {
                    problem.field.insert_str(0, &prefix(i));
                    problems.push(problem);
                }
            }
        }
    }
    if !problems.is_empty() {
        return Err(Error::Invalid(problems));
    }
    Ok(Prepared {
        events,
        specs,
        readings,
    })
}

/// Accepts what is new in a prepared batch, exactly once, in the writer's transaction; see the
/// module's documentation.
pub async fn write(writer: Writer<'_>, ctx: &Ctx, batch: &Prepared) -> Result<MeterEventBatch> {
    let mut written = write_group(writer, &ctx.tenant, ctx.now, &[batch]).await?;
    written
        .pop()
        .ok_or_else(|| Error::Db(sqlx::Error::Protocol("a batch was written without an answer".into())))
}

/// Accepts what is new in prepared batches of one tenant, exactly once, in the writer's one
/// transaction (`received`: when the earliest arrived), and answers each batch as if it had been
/// written alone: an identifier sent in two of them is accepted in the first (by their order),
/// a duplicate in the other, just as two transactions one after the other would answer.
pub async fn write_group(
    mut writer: Writer<'_>,
    tenant: &str,
    received: i64,
    batches: &[&Prepared],
) -> Result<Vec<MeterEventBatch>> {
    // The first event of each identifier in the group (so also in its batch) may be counted.
    let mut seen: HashSet<&str> = HashSet::with_capacity(batches.iter().map(|b| b.events.len()).sum());
    let candidate: Vec<Vec<bool>> = batches
        .iter()
        .map(|b| b.events.iter().map(|e| seen.insert(&e.identifier)).collect())
        .collect();
    let events = || {
        batches
            .iter()
            .zip(&candidate)
            .flat_map(|(b, c)| b.events.iter().zip(c.iter().copied()))
    };
    let identifiers: Vec<&str> = events()
        .filter(|(_, c)| *c)
        .map(|(e, _)| e.identifier.as_str())
        .collect();
    let claimed = writer.claim(tenant, &identifiers).await?;
    let counted = |k: usize, i: usize| candidate[k][i] && claimed.contains(&batches[k].events[i].identifier);
    if !claimed.is_empty() {
        let rows: Vec<EventRow<'_>> = events()
            .filter(|(e, c)| *c && claimed.contains(&e.identifier))
            .map(|(e, _)| EventRow {
                identifier: &e.identifier,
                event_name: &e.event_name,
                customer_id: &e.customer,
                occurred: e.timestamp,
                properties: &e.properties,
            })
            .collect();
        writer.insert(tenant, &rows, received).await?;

        let accepted: Vec<Accepted<'_>> = batches
            .iter()
            .enumerate()
            .flat_map(|(k, b)| {
                b.readings
                    .iter()
                    .filter(move |(i, _, _)| counted(k, *i))
                    .map(move |(i, m, reading)| Accepted {
                        meter: &b.specs[*m].id,
                        customer: &b.events[*i].customer,
                        identifier: &b.events[*i].identifier,
                        timestamp: b.events[*i].timestamp,
                        reading: reading.clone(),
                    })
            })
            .collect();
        let (rollups, distinct) = metering::fold(&accepted).ok_or_else(|| {
            Error::invalid(
                "events",
                "out_of_range",
                "the values add up to more than can be counted",
            )
        })?;
        if !rollups.is_empty() {
            let rows: Vec<RollupRow<'_>> = rollups
                .iter()
                .map(|(k, r)| RollupRow {
                    meter_id: k.meter,
                    customer_id: k.customer,
                    minute: k.minute,
                    group_key: k.group,
                    events: r.events,
                    value_sum: r.sum,
                    value_max: r.max,
                    latest_at: r.latest.timestamp,
                    latest_id: r.latest.identifier,
                    latest_value: r.latest.value,
                })
                .collect();
            writer.add_rollups(tenant, &rows, received).await?;
        }
        if !distinct.is_empty() {
            let rows: Vec<DistinctRow<'_>> = distinct
                .iter()
                .map(|(k, value)| DistinctRow {
                    meter_id: k.meter,
                    customer_id: k.customer,
                    minute: k.minute,
                    group_key: k.group,
                    value,
                })
                .collect();
            writer.add_distinct(tenant, &rows).await?;
        }
    }

    Ok(batches
        .iter()
        .enumerate()
        .map(|(k, b)| {
            let mut accepted = 0;
            let statuses = b
                .events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let counted = counted(k, i);
                    accepted += i64::from(counted);
                    MeterEventStatus {
                        identifier: e.identifier.clone(),
                        status: if counted { "accepted" } else { "duplicate" },
                    }
                })
                .collect();
            MeterEventBatch {
                object: MeterEventBatch::OBJECT,
                accepted,
                duplicates: b.events.len() as i64 - accepted,
                events: statuses,
            }
        })
        .collect())
}

/// Checks and writes a batch on one connection (its transaction): [`prepare`], then [`write`].
pub async fn ingest(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    events: Vec<NewEvent>,
    single: bool,
) -> Result<MeterEventBatch> {
    let batch = prepare(conn, ctx, events, single).await?;
    write(Writer::Any(conn, ctx.backend), ctx, &batch).await
}

/// Checks a batch on a pooled connection, then has the group commit write it with `COPY` in a
/// transaction of the store's copy pool, with the tenant's batches that wait beside it
/// ([`GroupCommit`]): what `POST /v1/meter_events` does on PostgreSQL without an
/// `Idempotency-Key`. A refusal has written nothing: it is found before the batch is queued.
/// For a store that [does not copy](Store::copies), use [`ingest`].
pub async fn ingest_copying(
    writers: &GroupCommit,
    store: &Store,
    ctx: &Ctx,
    events: Vec<NewEvent>,
    single: bool,
) -> Result<MeterEventBatch> {
    let batch = prepare(&mut *store.acquire().await?, ctx, events, single).await?;
    writers.write(&ctx.tenant, ctx.now, batch).await
}

fn json<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Db(sqlx::Error::Encode(e.into())))
}

/// What one meter's group totals add up to, by its aggregation.
fn value_of(aggregation: Aggregation, totals: &[&GroupTotals], distinct: i64) -> i64 {
    match aggregation {
        Aggregation::Count => totals.iter().map(|t| t.events).sum(),
        Aggregation::Sum => totals.iter().map(|t| t.sum).sum(),
        Aggregation::Max => totals.iter().map(|t| t.max).max().unwrap_or(0),
        Aggregation::Latest => totals
            .iter()
            .max_by(|a, b| (a.latest.0, &a.latest.1).cmp(&(b.latest.0, &b.latest.1)))
            .map_or(0, |t| t.latest.2),
        Aggregation::UniqueCount => distinct,
    }
}

/// What `meter` counted for the customer over `[start, end)`, to the minute: the value the usage
/// endpoint shows, and what a metered price bills.
pub(super) async fn meter_value(
    conn: &mut AnyConnection,
    tenant: &str,
    meter: &Meter,
    customer: &str,
    (start, end): (i64, i64),
) -> Result<i64> {
    let spec = meters::spec(meter)?;
    let minutes = metering::window_minutes(start, end);
    let totals = meters::group_totals(conn, tenant, &meter.id, customer, minutes, spec.aggregation).await?;
    let distinct = if spec.aggregation == Aggregation::UniqueCount {
        meters::distinct_count(conn, tenant, &meter.id, customer, minutes, None).await?
    } else {
        0
    };
    let every: Vec<&GroupTotals> = totals.iter().collect();
    Ok(value_of(spec.aggregation, &every, distinct))
}

/// The window usage is shown for when none is asked: the current period of the customer's
/// latest subscription that is not canceled, else the UTC calendar month of `now`.
pub async fn default_window(conn: &mut AnyConnection, tenant: &str, customer: &str, now: i64) -> Result<(i64, i64)> {
    if let Some(period) = crate::store::subscriptions::current_period_of_customer(conn, tenant, customer).await? {
        return Ok(period);
    }
    crate::domain::calendar::utc_month_of(now).map_err(|e| Error::invalid("start", "out_of_range", e.to_string()))
}

/// The customer's usage over `[start, end)`, to the minute (`metering::window_minutes`), by
/// each of the tenant's meters (or `only` one). A bound not given is the default window's
/// ([`default_window`]); a window that ends at or before its start is empty.
pub async fn usage(
    conn: &mut AnyConnection,
    tenant: &str,
    customer: &str,
    window: (Option<i64>, Option<i64>),
    only: Option<&str>,
    now: i64,
) -> Result<CustomerUsage> {
    super::customers::get(conn, tenant, customer).await?;
    let (start, end) = match window {
        (Some(start), Some(end)) => (start, end),
        (start, end) => {
            let default = default_window(conn, tenant, customer, now).await?;
            (start.unwrap_or(default.0), end.unwrap_or(default.1))
        }
    };
    let all = match only {
        Some(id) => vec![get_meter(conn, tenant, id).await?],
        None => meters::all(conn, tenant).await?,
    };
    let (first, last) = metering::window_minutes(start, end);
    let mut usages = Vec::with_capacity(all.len());
    for meter in all {
        let spec = meters::spec(&meter)?;
        let unique = spec.aggregation == Aggregation::UniqueCount;
        let totals = meters::group_totals(conn, tenant, &meter.id, customer, (first, last), spec.aggregation).await?;
        let distinct = if unique {
            meters::distinct_count(conn, tenant, &meter.id, customer, (first, last), None).await?
        } else {
            0
        };
        let every: Vec<&GroupTotals> = totals.iter().collect();
        let groups = if spec.group_by.is_empty() {
            Vec::new()
        } else {
            totals
                .iter()
                .map(|t| {
                    let values: Vec<Value> = serde_json::from_str(&t.group).unwrap_or_default();
                    let group = spec
                        .group_by
                        .iter()
                        .zip(values.into_iter().chain(std::iter::repeat(Value::Null)))
                        .map(|(path, value)| (path.as_str().to_owned(), value))
                        .collect();
                    UsageGroup {
                        group,
                        value: value_of(spec.aggregation, &[t], t.distinct),
                        events: t.events,
                    }
                })
                .collect()
        };
        usages.push(MeterUsage {
            value: value_of(spec.aggregation, &every, distinct),
            events: every.iter().map(|t| t.events).sum(),
            meter: meter.id,
            event_name: meter.event_name,
            aggregation: meter.aggregation,
            groups,
        });
    }
    Ok(CustomerUsage {
        object: CustomerUsage::OBJECT,
        customer: customer.to_owned(),
        start,
        end,
        meters: usages,
    })
}

/// How far ahead `meter_events` partitions are made: this month and the next two.
const PARTITIONS_AHEAD: i64 = 62 * 86_400;
/// How often the partitions are looked after.
const PARTITION_CHECK: std::time::Duration = std::time::Duration::from_secs(6 * 3_600);

/// Makes the `meter_events` partitions (PostgreSQL) of every month an event may be sent for,
/// from `grace` seconds ago to two months ahead: now, then every 6 hours until `stop`. Any
/// number of replicas may (a partition that exists is left alone).
pub async fn maintain_partitions(store: Store, grace: i64, stop: tokio_util::sync::CancellationToken) {
    loop {
        let now = crate::clock::now();
        let result = async {
            let mut conn = store.acquire().await?;
            partitions::ensure_months(
                &mut conn,
                store.backend(),
                now.saturating_sub(grace),
                now + PARTITIONS_AHEAD,
            )
            .await
        }
        .await;
        match result {
            Ok(made) if made.is_empty() => {}
            Ok(made) => tracing::info!(partitions = ?made, "meter event partitions made"),
            Err(e) => {
                tracing::warn!(error = %crate::store::describe_error(&e), "meter event partitions could not be made")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(PARTITION_CHECK) => {}
        }
    }
}
