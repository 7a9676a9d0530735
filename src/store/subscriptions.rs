//! Subscriptions and their items. A subscription is stored with the state its billing cycle
//! needs (anchor, period index and bounds) and shown with its items.
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::Backend;
use super::page::{self, Listing, Page, PageError, PageQuery};
use super::rows::{get, metadata, metadata_text};
use crate::domain::metadata::Metadata;
use crate::domain::subscription::Status;
use crate::objects::{CollectionMethod, Interval, Recurring, Subscription, SubscriptionItem, SubscriptionItemList};

#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRow {
    pub id: String,
    pub customer_id: String,
    pub status: Status,
    pub currency: String,
    pub time_zone: String,
    /// The local date and time periods are counted from (`2025-01-31T00:00:00`).
    pub anchor: String,
    pub anchor_fixed: bool,
    pub recurring: Recurring,
    pub period_index: i64,
    pub current_period_start: i64,
    pub current_period_end: i64,
    pub trial_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub collection_method: CollectionMethod,
    pub days_until_due: Option<i64>,
    pub next_action_at: Option<i64>,
    pub metadata: Metadata,
    pub created: i64,
    /// Whether it has ever had a metered item (set by [`mark_metered`], never unset): only
    /// those have usage to bill.
    pub metered: bool,
}

impl SubscriptionRow {
    /// The subscription as the API shows it, with its items.
    pub fn with_items(self, items: Vec<SubscriptionItem>) -> Subscription {
        let s = self;
        Subscription {
            id: s.id,
            object: Subscription::OBJECT,
            customer: s.customer_id,
            status: s.status,
            currency: s.currency,
            items: SubscriptionItemList {
                object: "list",
                data: items,
                has_more: false,
            },
            recurring: s.recurring,
            time_zone: s.time_zone,
            billing_cycle_anchor: s.anchor,
            current_period_start: s.current_period_start,
            current_period_end: s.current_period_end,
            trial_end: s.trial_end,
            cancel_at_period_end: s.cancel_at_period_end,
            canceled_at: s.canceled_at,
            ended_at: s.ended_at,
            collection_method: s.collection_method,
            days_until_due: s.days_until_due,
            metadata: s.metadata,
            created: s.created,
        }
    }
}

const COLUMNS: &str = "id, customer_id, status, currency, time_zone, anchor, anchor_fixed, interval_unit, interval_count, \
    period_index, current_period_start, current_period_end, trial_end, cancel_at_period_end, canceled_at, ended_at, \
    collection_method, days_until_due, next_action_at, metadata, created, metered";
const LISTING: Listing = Listing {
    table: "subscriptions",
    columns: COLUMNS,
};
const ITEM_COLUMNS: &str = "id, price_id, quantity, created";

fn decode_error(column: &str, value: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.into(),
        source: format!("unknown value {value:?}").into(),
    }
}

fn from_row(row: &AnyRow) -> Result<SubscriptionRow, sqlx::Error> {
    let status: String = get(row, "status")?;
    let interval: String = get(row, "interval_unit")?;
    let method: String = get(row, "collection_method")?;
    Ok(SubscriptionRow {
        id: get(row, "id")?,
        customer_id: get(row, "customer_id")?,
        status: Status::parse(&status).ok_or_else(|| decode_error("status", status))?,
        currency: get(row, "currency")?,
        time_zone: get(row, "time_zone")?,
        anchor: get(row, "anchor")?,
        anchor_fixed: get::<i64>(row, "anchor_fixed")? != 0,
        recurring: Recurring {
            interval: Interval::parse(&interval).ok_or_else(|| decode_error("interval_unit", interval))?,
            interval_count: get(row, "interval_count")?,
        },
        period_index: get(row, "period_index")?,
        current_period_start: get(row, "current_period_start")?,
        current_period_end: get(row, "current_period_end")?,
        trial_end: get(row, "trial_end")?,
        cancel_at_period_end: get::<i64>(row, "cancel_at_period_end")? != 0,
        canceled_at: get(row, "canceled_at")?,
        ended_at: get(row, "ended_at")?,
        collection_method: CollectionMethod::parse(&method).ok_or_else(|| decode_error("collection_method", method))?,
        days_until_due: get(row, "days_until_due")?,
        next_action_at: get(row, "next_action_at")?,
        metadata: metadata(row)?,
        created: get(row, "created")?,
        metered: get::<i64>(row, "metered")? != 0,
    })
}

fn item_from_row(row: &AnyRow) -> Result<SubscriptionItem, sqlx::Error> {
    Ok(SubscriptionItem {
        id: get(row, "id")?,
        object: SubscriptionItem::OBJECT,
        price: get(row, "price_id")?,
        quantity: get(row, "quantity")?,
        created: get(row, "created")?,
    })
}

#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert(conn: &mut AnyConnection, tenant: &str, s: &SubscriptionRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO subscriptions (id, tenant_id, customer_id, status, currency, time_zone, anchor, anchor_fixed, \
         interval_unit, interval_count, period_index, current_period_start, current_period_end, trial_end, \
         cancel_at_period_end, canceled_at, ended_at, collection_method, days_until_due, next_action_at, metadata, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)",
    )
    .bind(&s.id)
    .bind(tenant)
    .bind(&s.customer_id)
    .bind(s.status.as_str())
    .bind(&s.currency)
    .bind(&s.time_zone)
    .bind(&s.anchor)
    .bind(i64::from(s.anchor_fixed))
    .bind(s.recurring.interval.as_str())
    .bind(s.recurring.interval_count)
    .bind(s.period_index)
    .bind(s.current_period_start)
    .bind(s.current_period_end)
    .bind(s.trial_end)
    .bind(i64::from(s.cancel_at_period_end))
    .bind(s.canceled_at)
    .bind(s.ended_at)
    .bind(s.collection_method.as_str())
    .bind(s.days_until_due)
    .bind(s.next_action_at)
    .bind(metadata_text(&s.metadata))
    .bind(s.created)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the state that changes: status, the cycle's position, cancellation, metadata.
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.update", skip_all, fields(otel.kind = "client"))]
pub async fn update(conn: &mut AnyConnection, tenant: &str, s: &SubscriptionRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscriptions SET status = $1, anchor = $2, anchor_fixed = $3, period_index = $4, current_period_start = $5, \
         current_period_end = $6, cancel_at_period_end = $7, canceled_at = $8, ended_at = $9, next_action_at = $10, \
         metadata = $11 WHERE tenant_id = $12 AND id = $13",
    )
    .bind(s.status.as_str())
    .bind(&s.anchor)
    .bind(i64::from(s.anchor_fixed))
    .bind(s.period_index)
    .bind(s.current_period_start)
    .bind(s.current_period_end)
    .bind(i64::from(s.cancel_at_period_end))
    .bind(s.canceled_at)
    .bind(s.ended_at)
    .bind(s.next_action_at)
    .bind(metadata_text(&s.metadata))
    .bind(tenant)
    .bind(&s.id)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.insert_item", skip_all, fields(otel.kind = "client"))]
pub async fn insert_item(
    conn: &mut AnyConnection,
    tenant: &str,
    subscription_id: &str,
    item: &SubscriptionItem,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO subscription_items (id, tenant_id, subscription_id, price_id, quantity, created) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&item.id)
    .bind(tenant)
    .bind(subscription_id)
    .bind(&item.price)
    .bind(item.quantity)
    .bind(item.created)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.find", skip_all, fields(otel.kind = "client"))]
pub async fn find(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    select(conn, tenant, id, "").await
}

/// Reads a subscription to change it, holding its row until the transaction ends.
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.find_for_update", skip_all, fields(otel.kind = "client"))]
pub async fn find_for_update(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    id: &str,
) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    select(conn, tenant, id, backend.for_update()).await
}

async fn select(
    conn: &mut AnyConnection,
    tenant: &str,
    id: &str,
    lock: &str,
) -> Result<Option<SubscriptionRow>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM subscriptions WHERE tenant_id = $1 AND id = $2{lock}"
    ));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(from_row).transpose()
}

#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.items", skip_all, fields(otel.kind = "client"))]
pub async fn items(
    conn: &mut AnyConnection,
    tenant: &str,
    subscription_id: &str,
) -> Result<Vec<SubscriptionItem>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT {ITEM_COLUMNS} FROM subscription_items WHERE tenant_id = $1 AND subscription_id = $2 ORDER BY id"
    ));
    let rows = sqlx::query(sql)
        .bind(tenant)
        .bind(subscription_id)
        .fetch_all(conn)
        .await?;
    rows.iter().map(item_from_row).collect()
}

/// The items of several subscriptions in one query, by subscription.
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.items_of", skip_all, fields(otel.kind = "client"))]
pub async fn items_of(
    conn: &mut AnyConnection,
    tenant: &str,
    subscription_ids: &[&str],
) -> Result<std::collections::HashMap<String, Vec<SubscriptionItem>>, sqlx::Error> {
    let mut by_subscription: std::collections::HashMap<String, Vec<SubscriptionItem>> =
        std::collections::HashMap::new();
    if subscription_ids.is_empty() {
        return Ok(by_subscription);
    }
    let placeholders: Vec<String> = (0..subscription_ids.len()).map(|i| format!("${}", i + 2)).collect();
    let sql = format!(
        "SELECT subscription_id, {ITEM_COLUMNS} FROM subscription_items WHERE tenant_id = $1 AND subscription_id IN ({}) \
         ORDER BY id",
        placeholders.join(", ")
    );
    let mut query = sqlx::query(AssertSqlSafe(sql)).bind(tenant);
    for id in subscription_ids {
        query = query.bind(*id);
    }
    for row in query.fetch_all(conn).await? {
        let subscription_id: String = get(&row, "subscription_id")?;
        by_subscription
            .entry(subscription_id)
            .or_default()
            .push(item_from_row(&row)?);
    }
    Ok(by_subscription)
}

/// The currencies of the customer's subscriptions that are not canceled.
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.live_currencies", skip_all, fields(otel.kind = "client"))]
pub async fn live_currencies(
    conn: &mut AnyConnection,
    tenant: &str,
    customer_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT currency FROM subscriptions WHERE tenant_id = $1 AND customer_id = $2 AND status <> 'canceled'",
    )
    .bind(tenant)
    .bind(customer_id)
    .fetch_all(conn)
    .await
}

/// Which subscriptions a listing shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub customer: Option<String>,
    pub status: Option<Status>,
}

#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.list", skip_all, fields(otel.kind = "client"))]
pub async fn list(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &Filter,
) -> Result<Page<SubscriptionRow>, PageError> {
    let filters = page::set([
        ("customer_id", filter.customer.as_deref()),
        ("status", filter.status.map(Status::as_str)),
    ]);
    LISTING.fetch(conn, tenant, page, &filters, from_row).await
}

/// A subscription claimed by [`claim_due`] (locked, as [`find_for_update`] leaves it), and its
/// place in the queue of due ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Claimed {
    pub id: String,
    pub tenant: String,
    pub next_action_at: i64,
    pub row: SubscriptionRow,
}

/// Claims the subscription with the earliest work due by `until` that comes after `after` in
/// the queue (`next_action_at`, then id), other than those of customers on a test clock (billed
/// when their clock moves), if any: on PostgreSQL the row is locked and skipped by every other
/// claimer until this transaction ends, so any number of runners share the work; SQLite's write
/// transaction already excludes the others.
///
/// A claimer passes the last one it claimed as `after`: the search then starts where it left
/// off, rather than at the head of the index, where the entries of every subscription it moved
/// lie dead until the next vacuum (walking them made each claim of a long run slower than the
/// last). A subscription that failed is behind it, so it is not claimed again in the same run.
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.claim_due", skip_all, fields(otel.kind = "client"))]
pub async fn claim_due(
    conn: &mut AnyConnection,
    backend: Backend,
    until: i64,
    after: Option<&Claimed>,
) -> Result<Option<Claimed>, sqlx::Error> {
    let after_sql = if after.is_some() {
        // A row comparison, which both backends answer from the index as a range's start.
        " AND (s.next_action_at, s.id) > ($2, $3)"
    } else {
        ""
    };
    let sql = AssertSqlSafe(format!(
        "SELECT s.tenant_id, {COLUMNS} FROM subscriptions s \
         WHERE s.next_action_at IS NOT NULL AND s.next_action_at <= $1{after_sql} \
         AND NOT EXISTS (SELECT 1 FROM customers c WHERE c.tenant_id = s.tenant_id AND c.id = s.customer_id \
         AND c.test_clock_id IS NOT NULL) \
         ORDER BY s.next_action_at, s.id LIMIT 1{}",
        backend.claim_rows_of("s")
    ));
    let mut query = sqlx::query(sql).bind(until);
    if let Some(after) = after {
        query = query.bind(after.next_action_at).bind(&after.id);
    }
    let row = query.fetch_optional(conn).await?;
    row.map(|r| {
        Ok(Claimed {
            id: get(&r, "id")?,
            tenant: get(&r, "tenant_id")?,
            next_action_at: get(&r, "next_action_at")?,
            row: from_row(&r)?,
        })
    })
    .transpose()
}

/// Whether the subscription has an invoice still owed (open or uncollectible) that was due at or
/// before `due_by`.
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.has_overdue", skip_all, fields(otel.kind = "client"))]
pub async fn has_overdue(conn: &mut AnyConnection, tenant: &str, id: &str, due_by: i64) -> Result<bool, sqlx::Error> {
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM invoices WHERE tenant_id = $1 AND subscription_id = $2 AND status IN ('open', 'uncollectible') \
         AND due_date <= $3 LIMIT 1",
    )
    .bind(tenant)
    .bind(id)
    .bind(due_by)
    .fetch_optional(conn)
    .await?;
    Ok(found.is_some())
}

/// Claims a subscription whose standing no longer matches its invoices (other than `skip`, and
/// other than those of customers on a test clock, whose standing moves with their clock): an
/// active one with an invoice owed since `due_by` or before, or a past-due one with none left.
/// Locked and skipped by other claimers as [`claim_due`]'s. Both searches start from a small
/// partial index: the invoices still owed, and the past-due subscriptions.
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.claim_misstanding", skip_all, fields(otel.kind = "client"))]
pub async fn claim_misstanding(
    conn: &mut AnyConnection,
    backend: Backend,
    due_by: i64,
    skip: &[String],
) -> Result<Option<(String, String)>, sqlx::Error> {
    let skipped: String = (0..skip.len()).map(|i| format!(" AND s.id <> ${}", i + 2)).collect();
    let not_on_clock = "NOT EXISTS (SELECT 1 FROM customers c WHERE c.tenant_id = s.tenant_id AND c.id = s.customer_id \
         AND c.test_clock_id IS NOT NULL)";
    let owed = "i.status IN ('open', 'uncollectible') AND i.subscription_id IS NOT NULL AND i.due_date <= $1";
    let fell_behind = format!(
        "SELECT s.id, s.tenant_id FROM invoices i JOIN subscriptions s ON s.tenant_id = i.tenant_id AND s.id = i.subscription_id \
         WHERE {owed} AND s.status = 'active'{skipped} AND {not_on_clock} LIMIT 1{}",
        backend.claim_rows_of("s")
    );
    let settled = format!(
        "SELECT s.id, s.tenant_id FROM subscriptions s WHERE s.status = 'past_due'{skipped} AND {not_on_clock} \
         AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.tenant_id = s.tenant_id AND i.subscription_id = s.id AND {owed}) \
         LIMIT 1{}",
        backend.claim_rows_of("s")
    );
    for sql in [fell_behind, settled] {
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(due_by);
        for id in skip {
            query = query.bind(id);
        }
        if let Some(row) = query.fetch_optional(&mut *conn).await? {
            return Ok(Some((get(&row, "id")?, get(&row, "tenant_id")?)));
        }
    }
    Ok(None)
}

/// The subscriptions of the customers on a test clock, for their standing after it moves.
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.of_clock", skip_all, fields(otel.kind = "client"))]
pub async fn of_clock(conn: &mut AnyConnection, tenant: &str, clock_id: &str) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.id FROM subscriptions s JOIN customers c ON c.tenant_id = s.tenant_id AND c.id = s.customer_id \
         WHERE c.tenant_id = $1 AND c.test_clock_id = $2 AND s.status IN ('active', 'past_due') ORDER BY s.id",
    )
    .bind(tenant)
    .bind(clock_id)
    .fetch_all(conn)
    .await
}

/// Changes an item's price or quantity (the item keeps its id, as Stripe's do).
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.update_item", skip_all, fields(otel.kind = "client"))]
pub async fn update_item(conn: &mut AnyConnection, tenant: &str, item: &SubscriptionItem) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE subscription_items SET price_id = $1, quantity = $2 WHERE tenant_id = $3 AND id = $4")
        .bind(&item.price)
        .bind(item.quantity)
        .bind(tenant)
        .bind(&item.id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Removes an item (its charges stay, naming it, for the record).
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.delete_item", skip_all, fields(otel.kind = "client"))]
pub async fn delete_item(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM subscription_items WHERE tenant_id = $1 AND id = $2")
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The current period of the customer's latest subscription that is not canceled, if any.
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.current_period_of_customer", skip_all, fields(otel.kind = "client"))]
pub async fn current_period_of_customer(
    conn: &mut AnyConnection,
    tenant: &str,
    customer: &str,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT current_period_start, current_period_end FROM subscriptions \
         WHERE tenant_id = $1 AND customer_id = $2 AND status <> 'canceled' ORDER BY id DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(customer)
    .fetch_optional(conn)
    .await
}

/// Records that the subscription has a metered item.
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.mark_metered", skip_all, fields(otel.kind = "client"))]
pub async fn mark_metered(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE subscriptions SET metered = 1 WHERE tenant_id = $1 AND id = $2 AND metered = 0")
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Up to when each item's usage was billed (`None`: not since the item was added), by item.
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.usage_billed_until", skip_all, fields(otel.kind = "client"))]
pub async fn usage_billed_until(
    conn: &mut AnyConnection,
    tenant: &str,
    subscription_id: &str,
) -> Result<std::collections::HashMap<String, Option<i64>>, sqlx::Error> {
    let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT id, usage_billed_until FROM subscription_items WHERE tenant_id = $1 AND subscription_id = $2",
    )
    .bind(tenant)
    .bind(subscription_id)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.set_usage_billed_until", skip_all, fields(otel.kind = "client"))]
pub async fn set_usage_billed_until(
    conn: &mut AnyConnection,
    tenant: &str,
    item_id: &str,
    until: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE subscription_items SET usage_billed_until = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(until)
        .bind(tenant)
        .bind(item_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The meters billed by the items of the customer's subscriptions that have not ended, other
/// than `except` (a subscription being changed).
#[tracing::instrument(target = "otel", level = "debug", name = "db subscriptions.meters_billed", skip_all, fields(otel.kind = "client"))]
pub async fn meters_billed(
    conn: &mut AnyConnection,
    tenant: &str,
    customer_id: &str,
    except: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT p.meter_id FROM subscriptions s \
         JOIN subscription_items i ON i.tenant_id = s.tenant_id AND i.subscription_id = s.id \
         JOIN prices p ON p.tenant_id = i.tenant_id AND p.id = i.price_id \
         WHERE s.tenant_id = $1 AND s.customer_id = $2 AND s.status <> 'canceled' AND s.metered = 1 \
         AND p.meter_id IS NOT NULL AND ($3 IS NULL OR s.id <> $3)",
    )
    .bind(tenant)
    .bind(customer_id)
    .bind(except)
    .fetch_all(conn)
    .await
}
