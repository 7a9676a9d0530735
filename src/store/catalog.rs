//! The catalogue: products and prices, read straight into the public objects. A price's amounts
//! are written once (the `prices_fixed` trigger refuses any change to them); only its name,
//! metadata, `active` and `superseded_by` are ever updated.
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::Backend;
use super::page::{self, Listing, Page, PageError, PageQuery};
use super::rows::{get, metadata, metadata_text};
use crate::objects::{
    BillingScheme, Interval, Price, PriceRecurring, PriceTier, Product, Round, TiersMode, TransformQuantity, UsageType,
};

const PRODUCT_COLUMNS: &str = "id, name, description, active, metadata, created";
const PRODUCTS: Listing = Listing {
    table: "products",
    columns: PRODUCT_COLUMNS,
};

const PRICE_COLUMNS: &str = "id, product_id, currency, active, nickname, interval_unit, interval_count, \
    billing_scheme, unit_amount, tiers_mode, tiers, version, previous_version, superseded_by, metadata, created, \
    usage_type, meter_id, transform_divide_by, transform_round";
const PRICES: Listing = Listing {
    table: "prices",
    columns: PRICE_COLUMNS,
};

fn decode_error(column: &str, message: String) -> sqlx::Error {
    sqlx::Error::ColumnDecode {
        index: column.into(),
        source: message.into(),
    }
}

fn product_from_row(row: &AnyRow) -> Result<Product, sqlx::Error> {
    Ok(Product {
        id: get(row, "id")?,
        object: Product::OBJECT,
        name: get(row, "name")?,
        description: get(row, "description")?,
        active: get::<i64>(row, "active")? != 0,
        metadata: metadata(row)?,
        created: get(row, "created")?,
    })
}

fn price_from_row(row: &AnyRow) -> Result<Price, sqlx::Error> {
    let text = |column: &str| -> Result<String, sqlx::Error> { get(row, column) };
    let interval = text("interval_unit")?;
    let scheme = text("billing_scheme")?;
    let tiers_mode: Option<String> = get(row, "tiers_mode")?;
    let tiers: Option<String> = get(row, "tiers")?;
    let usage_type = text("usage_type")?;
    let divide_by: Option<i64> = get(row, "transform_divide_by")?;
    let round: Option<String> = get(row, "transform_round")?;
    let transform_quantity = match (divide_by, round) {
        (Some(divide_by), Some(round)) => Some(TransformQuantity {
            divide_by,
            round: Round::parse(&round).ok_or_else(|| decode_error("transform_round", round))?,
        }),
        _ => None,
    };
    Ok(Price {
        id: get(row, "id")?,
        object: Price::OBJECT,
        product_id: get(row, "product_id")?,
        currency: get(row, "currency")?,
        active: get::<i64>(row, "active")? != 0,
        nickname: get(row, "nickname")?,
        recurring: PriceRecurring {
            interval: Interval::parse(&interval).ok_or_else(|| decode_error("interval_unit", interval))?,
            interval_count: get(row, "interval_count")?,
            usage_type: UsageType::parse(&usage_type).ok_or_else(|| decode_error("usage_type", usage_type))?,
            meter: get(row, "meter_id")?,
        },
        billing_scheme: BillingScheme::parse(&scheme).ok_or_else(|| decode_error("billing_scheme", scheme))?,
        unit_amount: get(row, "unit_amount")?,
        transform_quantity,
        tiers_mode: tiers_mode
            .map(|m| TiersMode::parse(&m).ok_or_else(|| decode_error("tiers_mode", m)))
            .transpose()?,
        tiers: tiers
            .map(|t| serde_json::from_str::<Vec<PriceTier>>(&t).map_err(|e| decode_error("tiers", e.to_string())))
            .transpose()?,
        version: get(row, "version")?,
        previous_version: get(row, "previous_version")?,
        superseded_by: get(row, "superseded_by")?,
        metadata: metadata(row)?,
        created: get(row, "created")?,
    })
}

#[tracing::instrument(target = "otel", level = "debug", name = "db products.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert_product(conn: &mut AnyConnection, tenant: &str, p: &Product) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO products (id, tenant_id, name, description, active, metadata, created) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&p.id)
    .bind(tenant)
    .bind(&p.name)
    .bind(&p.description)
    .bind(i64::from(p.active))
    .bind(metadata_text(&p.metadata))
    .bind(p.created)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db products.update", skip_all, fields(otel.kind = "client"))]
pub async fn update_product(conn: &mut AnyConnection, tenant: &str, p: &Product) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE products SET name = $1, description = $2, active = $3, metadata = $4 WHERE tenant_id = $5 AND id = $6",
    )
    .bind(&p.name)
    .bind(&p.description)
    .bind(i64::from(p.active))
    .bind(metadata_text(&p.metadata))
    .bind(tenant)
    .bind(&p.id)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db products.find", skip_all, fields(otel.kind = "client"))]
pub async fn find_product(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<Product>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {PRODUCT_COLUMNS} FROM products WHERE tenant_id = $1 AND id = $2"
    ));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(product_from_row).transpose()
}

#[tracing::instrument(target = "otel", level = "debug", name = "db products.list", skip_all, fields(otel.kind = "client"))]
pub async fn list_products(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
) -> Result<Page<Product>, PageError> {
    PRODUCTS.fetch(conn, tenant, page, &[], product_from_row).await
}

#[tracing::instrument(target = "otel", level = "debug", name = "db prices.insert", skip_all, fields(otel.kind = "client"))]
pub async fn insert_price(conn: &mut AnyConnection, tenant: &str, p: &Price) -> Result<(), sqlx::Error> {
    let tiers = p
        .tiers
        .as_ref()
        .map(|t| serde_json::to_string(t).map_err(|e| sqlx::Error::Encode(e.into())))
        .transpose()?;
    sqlx::query(
        "INSERT INTO prices (id, tenant_id, product_id, currency, active, nickname, interval_unit, interval_count, \
         billing_scheme, unit_amount, tiers_mode, tiers, version, previous_version, superseded_by, metadata, created, \
         usage_type, meter_id, transform_divide_by, transform_round) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)",
    )
    .bind(&p.id)
    .bind(tenant)
    .bind(&p.product_id)
    .bind(&p.currency)
    .bind(i64::from(p.active))
    .bind(&p.nickname)
    .bind(p.recurring.interval.as_str())
    .bind(p.recurring.interval_count)
    .bind(p.billing_scheme.as_str())
    .bind(p.unit_amount)
    .bind(p.tiers_mode.map(TiersMode::as_str))
    .bind(tiers)
    .bind(p.version)
    .bind(&p.previous_version)
    .bind(&p.superseded_by)
    .bind(metadata_text(&p.metadata))
    .bind(p.created)
    .bind(p.recurring.usage_type.as_str())
    .bind(&p.recurring.meter)
    .bind(p.transform_quantity.map(|t| t.divide_by))
    .bind(p.transform_quantity.map(|t| t.round.as_str()))
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes what may change of a price: never what it charges.
#[tracing::instrument(target = "otel", level = "debug", name = "db prices.update", skip_all, fields(otel.kind = "client"))]
pub async fn update_price(conn: &mut AnyConnection, tenant: &str, p: &Price) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE prices SET active = $1, nickname = $2, metadata = $3, superseded_by = $4 WHERE tenant_id = $5 AND id = $6",
    )
    .bind(i64::from(p.active))
    .bind(&p.nickname)
    .bind(metadata_text(&p.metadata))
    .bind(&p.superseded_by)
    .bind(tenant)
    .bind(&p.id)
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(target = "otel", level = "debug", name = "db prices.find", skip_all, fields(otel.kind = "client"))]
pub async fn find_price(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Option<Price>, sqlx::Error> {
    select_price(conn, tenant, id, "").await
}

/// The price, locked until the transaction ends (on SQLite the write transaction is the lock).
#[tracing::instrument(target = "otel", level = "debug", name = "db prices.find_for_update", skip_all, fields(otel.kind = "client"))]
pub async fn find_price_for_update(
    conn: &mut AnyConnection,
    backend: Backend,
    tenant: &str,
    id: &str,
) -> Result<Option<Price>, sqlx::Error> {
    select_price(conn, tenant, id, backend.for_update()).await
}

async fn select_price(
    conn: &mut AnyConnection,
    tenant: &str,
    id: &str,
    lock: &str,
) -> Result<Option<Price>, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {PRICE_COLUMNS} FROM prices WHERE tenant_id = $1 AND id = $2{lock}"
    ));
    let row = sqlx::query(sql).bind(tenant).bind(id).fetch_optional(conn).await?;
    row.as_ref().map(price_from_row).transpose()
}

/// What a price listing may be narrowed to.
#[derive(Debug, Clone, Default)]
pub struct PriceFilter {
    pub product: Option<String>,
}

#[tracing::instrument(target = "otel", level = "debug", name = "db prices.list", skip_all, fields(otel.kind = "client"))]
pub async fn list_prices(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &PriceFilter,
) -> Result<Page<Price>, PageError> {
    let filters = page::set([("product_id", filter.product.as_deref())]);
    PRICES.fetch(conn, tenant, page, &filters, price_from_row).await
}
