//! Meters, and the usage their rollups add up to.
use std::sync::LazyLock;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::page::{Listing, Page, PageError, PageQuery};
use super::rows::get;
use crate::domain::metering::{Aggregation, MeterSpec, PropertyPath};
use crate::objects::Meter;

const COLUMNS: &str = "id, event_name, display_name, aggregation, value_property, group_by, created";
const LISTING: Listing = Listing {
    table: "meters",
    columns: COLUMNS,
};

fn decode_error(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.into(),
        source: message.into(),
    }
}

fn from_row(row: &AnyRow) -> Result<Meter, sqlx::Error> {
    let aggregation: String = get(row, "aggregation")?;
    let group_by: String = get(row, "group_by")?;
    Ok(Meter {
        id: get(row, "id")?,
        object: Meter::OBJECT,
        event_name: get(row, "event_name")?,
        display_name: get(row, "display_name")?,
        aggregation: Aggregation::parse(&aggregation)
            .ok_or_else(|| decode_error("aggregation", aggregation))?
            .as_str(),
        value_property: get(row, "value_property")?,
        group_by: serde_json::from_str(&group_by).map_err(|e| decode_error("group_by", e.to_string()))?,
        created: get(row, "created")?,
    })
}

/// The meter as aggregation needs it, its paths parsed.
pub fn spec(meter: &Meter) -> Result<MeterSpec, sqlx::Error> {
    let path = |text: &str| PropertyPath::parse(text).ok_or_else(|| decode_error("value_property", text.to_owned()));
    Ok(MeterSpec {
        id: meter.id.clone(),
        event_name: meter.event_name.clone(),
        aggregation: Aggregation::parse(meter.aggregation)
            .ok_or_else(|| decode_error("aggregation", meter.aggregation.to_owned()))?,
        value: meter.value_property.as_deref().map(path).transpose()?,
        group_by: meter.group_by.iter().map(|g| path(g)).collect::<Result<_, _>>()?,
    })
}

#[tracing::instrument(target = "otel", level = "debug", name = "db meters.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert(conn: &mut AnyConnection, tenant: &str, m: &Meter) -> Result<(), sqlx::Error> {
    let group_by = serde_json::to_string(&m.group_by).map_err(|e| sqlx::Error::Encode(e.into()))?;
    sqlx::query(
        "INSERT INTO meters (id, tenant_id, event_name, display_name, aggregation, value_property, group_by, created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&m.id)
    .bind(tenant)
    .bind(&m.event_name)
    .bind(&m.display_name)
    .bind(m.aggregation)
    .bind(&m.value_property)
    .bind(group_by)
    .bind(m.created)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db meters.find", skip_all, fields(otel.kind = "client"))]
pub async fn find(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<Meter>, sqlx::Error> {
    let sql = AssertSqlSafe(format!("SELECT {COLUMNS} FROM meters WHERE tenant_id = $1 AND id = $2"));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(from_row).transpose()
}

#[tracing::instrument(target = "otel", level = "debug", name = "db meters.list", skip_all, fields(otel.kind = "client"))]
pub async fn list(conn: &mut AnyConnection, tenant: &str, page: &PageQuery) -> Result<Page<Meter>, PageError> {
    LISTING.fetch(conn, tenant, page, &[], from_row).await
}

/// Every meter of the tenant, oldest first.
#[tracing::instrument(target = "otel", level = "debug", name = "db meters.all", skip_all, fields(otel.kind = "client"))]
pub async fn all(conn: &mut AnyConnection, tenant: &str) -> Result<Vec<Meter>, sqlx::Error> {
    let sql = AssertSqlSafe(format!("SELECT {COLUMNS} FROM meters WHERE tenant_id = $1 ORDER BY id"));
    let rows = sqlx::query(sql).bind(tenant).fetch_all(conn).await?;
    rows.iter().map(from_row).collect()
}

/// What a meter's rollups add up to for one group over `[start, end)` minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTotals {
    pub group: String,
    pub events: i64,
    pub sum: i64,
    pub max: i64,
    /// The latest event's (timestamp, identifier, value).
    pub latest: (i64, String, i64),
    /// Distinct values seen (`unique_count` meters).
    pub distinct: i64,
}

/// The rows of one customer's meter over the minutes `$4 <= minute < $5` (`$1` tenant, `$2`
/// meter, `$3` customer): the rollups and the deltas not yet folded into them, which together
/// hold every accepted event once, before and after a fold (`billing::rollups::fold_once`).
fn rollups_over(columns: &str, minutes: &str) -> String {
    let key = format!("tenant_id = $1 AND meter_id = $2 AND customer_id = $3 AND {minutes}");
    format!(
        "SELECT {columns} FROM meter_rollups WHERE {key} \
         UNION ALL SELECT {columns} FROM meter_rollup_deltas WHERE {key}"
    )
}

/// The meter's rollups for the customer over the minutes in `[start, end)`, per group: one
/// range of the rollups' primary key (and of the deltas' index), whatever the number of events
/// behind them. The latest event's identifier and value are read for a `latest` meter only, the
/// distinct values for a `unique_count` meter only.
#[tracing::instrument(target = "otel", level = "debug", name = "db meters.group_totals", skip_all, fields(otel.kind = "client"))]
pub async fn group_totals(
    conn: &mut AnyConnection,
    tenant: &str,
    meter: &str,
    customer: &str,
    (start, end): (i64, i64),
    aggregation: Aggregation,
) -> Result<Vec<GroupTotals>, sqlx::Error> {
    static TOTALS: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT group_key, CAST(SUM(events) AS BIGINT) AS events, CAST(SUM(value_sum) AS BIGINT) AS value_sum, \
             MAX(value_max) AS value_max, MAX(latest_at) AS latest_at FROM ({}) AS r \
             GROUP BY group_key ORDER BY group_key",
            rollups_over(
                "group_key, events, value_sum, value_max, latest_at",
                "minute >= $4 AND minute < $5"
            )
        )
    });
    static LATEST: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT latest_id, latest_value FROM ({}) AS r ORDER BY latest_at DESC, latest_id DESC LIMIT 1",
            rollups_over("latest_at, latest_id, latest_value", "minute = $4 AND group_key = $5")
        )
    });
    let rows = sqlx::query(AssertSqlSafe(TOTALS.as_str()))
        .bind(tenant)
        .bind(meter)
        .bind(customer)
        .bind(start)
        .bind(end)
        .fetch_all(&mut *conn)
        .await?;
    let mut totals = Vec::with_capacity(rows.len());
    for row in &rows {
        let group: String = get(row, "group_key")?;
        let latest_at: i64 = get(row, "latest_at")?;
        let (latest_id, latest_value) = if aggregation == Aggregation::Latest {
            // Within the latest second, the greatest identifier: all the events of that second
            // are in one minute's rows (its rollup and deltas), so this reads one key.
            sqlx::query_as(AssertSqlSafe(LATEST.as_str()))
                .bind(tenant)
                .bind(meter)
                .bind(customer)
                .bind(crate::domain::metering::minute_of(latest_at))
                .bind(&group)
                .fetch_one(&mut *conn)
                .await?
        } else {
            (String::new(), 0)
        };
        let distinct = if aggregation == Aggregation::UniqueCount {
            distinct_count(conn, tenant, meter, customer, (start, end), Some(&group)).await?
        } else {
            0
        };
        totals.push(GroupTotals {
            events: get(row, "events")?,
            sum: get(row, "value_sum")?,
            max: get(row, "value_max")?,
            latest: (latest_at, latest_id, latest_value),
            distinct,
            group,
        });
    }
    Ok(totals)
}

/// The distinct values over the minutes in `[start, end)`, of one group or of every group (a
/// value seen in two groups counts once).
#[tracing::instrument(target = "otel", level = "debug", name = "db meters.distinct_count", skip_all, fields(otel.kind = "client"))]
pub async fn distinct_count(
    conn: &mut AnyConnection,
    tenant: &str,
    meter: &str,
    customer: &str,
    (start, end): (i64, i64),
    group: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(DISTINCT value) FROM meter_distinct_values \
         WHERE tenant_id = $1 AND meter_id = $2 AND customer_id = $3 AND minute >= $4 AND minute < $5 \
         AND ($6 IS NULL OR group_key = $6)",
    )
    .bind(tenant)
    .bind(meter)
    .bind(customer)
    .bind(start)
    .bind(end)
    .bind(group)
    .fetch_one(conn)
    .await
}
