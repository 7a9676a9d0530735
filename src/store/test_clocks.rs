//! Test clocks, and the time of the objects on one.
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::Backend;
use super::page::{Listing, Page, PageError, PageQuery};
use super::rows::get;
use crate::objects::TestClock;

const COLUMNS: &str = "id, name, frozen_time, created";
const LISTING: Listing = Listing {
    table: "test_clocks",
    columns: COLUMNS,
};

fn from_row(row: &AnyRow) -> Result<TestClock, sqlx::Error> {
    Ok(TestClock {
        id: get(row, "id")?,
        object: TestClock::OBJECT,
        name: get(row, "name")?,
        frozen_time: get(row, "frozen_time")?,
        created: get(row, "created")?,
    })
}

#[tracing::instrument(target = "otel", level = "debug", name = "db test_clocks.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert(conn: &mut AnyConnection, tenant: &str, c: &TestClock) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO test_clocks (id, tenant_id, name, frozen_time, created) VALUES ($1, $2, $3, $4, $5)")
        .bind(&c.id)
        .bind(tenant)
        .bind(&c.name)
        .bind(c.frozen_time)
        .bind(c.created)
        .execute(conn)
        .await?;
    Ok(())
}

/// The clock, its row held until the transaction ends when `lock` (an advance).
#[tracing::instrument(target = "otel", level = "debug", name = "db test_clocks.find", skip_all, fields(otel.kind = "client"))]
pub async fn find(
    conn: &mut AnyConnection,
    backend: Option<Backend>,
    tenant: &str,
    id: &str,
) -> Result<Option<TestClock>, sqlx::Error> {
    let lock = backend.map_or("", Backend::for_update);
    let sql = AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM test_clocks WHERE tenant_id = $1 AND id = $2{lock}"
    ));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(from_row).transpose()
}

#[tracing::instrument(target = "otel", level = "debug", name = "db test_clocks.set_time", skip_all, fields(otel.kind = "client"))]
pub async fn set_time(conn: &mut AnyConnection, tenant: &str, id: &str, frozen_time: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE test_clocks SET frozen_time = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(frozen_time)
        .bind(tenant)
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db test_clocks.list", skip_all, fields(otel.kind = "client"))]
pub async fn list(conn: &mut AnyConnection, tenant: &str, page: &PageQuery) -> Result<Page<TestClock>, PageError> {
    LISTING.fetch(conn, tenant, page, &[], from_row).await
}

/// The time of the customer's clock, if they are on one. The clock's row is held from changing
/// until the transaction ends: an advance waits for the operation that runs at its old time.
#[tracing::instrument(target = "otel", level = "debug", name = "db test_clocks.time_of_customer", skip_all, fields(otel.kind = "client"))]
pub async fn time_of_customer(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    customer_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT t.frozen_time FROM customers c JOIN test_clocks t ON t.tenant_id = c.tenant_id AND t.id = c.test_clock_id \
         WHERE c.tenant_id = $1 AND c.id = $2{}",
        backend.for_share_of("t")
    ));
    sqlx::query_scalar(sql)
        .bind(tenant)
        .bind(customer_id)
        .fetch_optional(conn)
        .await
}

/// The time of the clock the subscription's customer is on, if any, held from changing until
/// the transaction ends (as [`time_of_customer`]).
#[tracing::instrument(target = "otel", level = "debug", name = "db test_clocks.time_of_subscription", skip_all, fields(otel.kind = "client"))]
pub async fn time_of_subscription(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    subscription_id: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let sql = AssertSqlSafe(format!(
        "SELECT t.frozen_time FROM subscriptions s \
         JOIN customers c ON c.tenant_id = s.tenant_id AND c.id = s.customer_id \
         JOIN test_clocks t ON t.tenant_id = c.tenant_id AND t.id = c.test_clock_id \
         WHERE s.tenant_id = $1 AND s.id = $2{}",
        backend.for_share_of("t")
    ));
    sqlx::query_scalar(sql)
        .bind(tenant)
        .bind(subscription_id)
        .fetch_optional(conn)
        .await
}

/// The subscriptions of the clock's customers that have something due by `until`.
#[tracing::instrument(target = "otel", level = "debug", name = "db test_clocks.due_subscriptions", skip_all, fields(otel.kind = "client"))]
pub async fn due_subscriptions(
    conn: &mut AnyConnection,
    tenant: &str,
    clock_id: &str,
    until: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.id FROM subscriptions s JOIN customers c ON c.tenant_id = s.tenant_id AND c.id = s.customer_id \
         WHERE c.tenant_id = $1 AND c.test_clock_id = $2 AND s.next_action_at IS NOT NULL AND s.next_action_at <= $3 \
         ORDER BY s.id",
    )
    .bind(tenant)
    .bind(clock_id)
    .bind(until)
    .fetch_all(conn)
    .await
}
