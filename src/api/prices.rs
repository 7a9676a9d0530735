//! Prices: create, read, list (by product), rename or (de)activate, and version. What a price
//! charges is fixed; `POST /v1/prices/{id}/versions` replaces it (see `billing::catalog`).
use axum::Json;
use axum::extract::{Path, RawQuery};
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::path_id;
use super::input::{Check, Field, Unknown};
use super::list::{self, List};
use super::problem::Problem;
use super::read::Read;
use super::schema::{CurrencyCode, MetadataParam, MeterId, ProductId, Text256};
use super::write::{Done, Write};
use crate::billing::catalog::{self as ops, NewPrice, NewVersion, PriceUpdate, Pricing};
use crate::domain::calendar::Cadence;
use crate::domain::ids::Kind;
use crate::domain::metadata::Metadata;
use crate::domain::metering::MAX_VALUE;
use crate::domain::money::MAX_AMOUNT;
use crate::domain::pricing::{self, MAX_TIERS, MAX_USAGE_BOUND, Tier};
use crate::objects::{Interval, Price, PriceRecurring, PriceTier, Round, TiersMode, TransformQuantity, UsageType};
use crate::store::catalog::PriceFilter;

/// The longest interval count, for any unit (3 years in days); each unit has its own limit.
const MAX_INTERVAL_COUNT: i64 = 1_095;

/// How often the price charges.
#[derive(Debug, Deserialize, ToSchema)]
pub struct RecurringParams {
    #[serde(default)]
    #[schema(value_type = Interval, required = true)]
    pub interval: Field<String>,
    /// 1 when not given. At most 3 years: 1095 days, 156 weeks, 36 months or 3 years.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_095)]
    pub interval_count: Field<i64>,
    /// `licensed` (the default): items are billed a quantity, in advance. `metered`: items are
    /// billed what `meter` counted for the customer, in arrears.
    #[serde(default)]
    #[schema(value_type = Option<UsageType>)]
    pub usage_type: Field<String>,
    /// For `metered` (required then, refused otherwise): the meter whose usage it bills.
    #[serde(default)]
    #[schema(value_type = Option<MeterId>)]
    pub meter: Field<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// Package pricing, for a metered `per_unit` price: usage divided by `divide_by`, rounded `up`
/// or `down`; `unit_amount` is then the price of one package.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TransformParams {
    #[serde(default)]
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000_000_000_i64, required = true)]
    pub divide_by: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Round, required = true)]
    pub round: Field<String>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// One tier of a tiered price. `up_to` is at most 1,000,000 for a licensed price (an item's
/// largest quantity).
#[derive(Debug, Deserialize, ToSchema)]
pub struct TierParams {
    /// The last unit of this tier, inclusive; absent or `null` on the last tier only.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000_000_000_000_i64)]
    pub up_to: Field<i64>,
    /// The amount of each unit in this tier.
    #[serde(default)]
    #[schema(value_type = i64, minimum = 0, maximum = 1_000_000_000_000_i64, required = true)]
    pub unit_amount: Field<i64>,
    /// Charged once when the tier is reached; 0 when not given.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1_000_000_000_000_i64)]
    pub flat_amount: Field<i64>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// What a new price or a new version charges: `unit_amount`, or `tiers_mode` with `tiers`.
#[derive(Debug, Deserialize)]
pub struct PricingParams {
    #[serde(default)]
    pub unit_amount: Field<i64>,
    #[serde(default)]
    pub tiers_mode: Field<String>,
    #[serde(default)]
    pub tiers: Field<Vec<TierParams>>,
    #[serde(default)]
    pub transform_quantity: Field<TransformParams>,
}

/// A new price, as read.
#[derive(Debug, Deserialize)]
pub struct PriceParams {
    #[serde(default)]
    pub product: Field<String>,
    #[serde(default)]
    pub currency: Field<String>,
    #[serde(default)]
    pub recurring: Field<RecurringParams>,
    #[serde(flatten)]
    pub pricing: PricingParams,
    #[serde(default)]
    pub nickname: Field<String>,
    #[serde(default)]
    pub active: Field<bool>,
    #[serde(default)]
    pub metadata: Field<Metadata>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// A new price. It charges `unit_amount` per unit (billing scheme `per_unit`), or by `tiers` in
/// `tiers_mode` (billing scheme `tiered`): one or the other.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct PriceCreateParams {
    product: ProductId,
    currency: CurrencyCode,
    recurring: RecurringParams,
    /// The amount of one unit for one period, in the currency's minor unit.
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    unit_amount: Option<i64>,
    tiers_mode: Option<TiersMode>,
    /// 1 to 8 tiers, `up_to` increasing, the last one unbounded (422 `invalid_tiers`).
    #[schema(min_items = 1, max_items = 8)]
    tiers: Option<Vec<TierParams>>,
    /// Package pricing (metered `per_unit` prices only; 422 `package_not_allowed` otherwise).
    transform_quantity: Option<TransformParams>,
    nickname: Option<Text256>,
    /// `true` when not given.
    active: Option<bool>,
    metadata: Option<MetadataParam>,
}

/// The next version of a price: what it charges from now on (`unit_amount`, or `tiers_mode`
/// with `tiers`; the billing scheme may change). Name and metadata default to the previous
/// version's (metadata keys are merged).
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct PriceVersionParams {
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    unit_amount: Option<i64>,
    tiers_mode: Option<TiersMode>,
    #[schema(min_items = 1, max_items = 8)]
    tiers: Option<Vec<TierParams>>,
    /// Package pricing (metered `per_unit` prices only; 422 `package_not_allowed` otherwise).
    transform_quantity: Option<TransformParams>,
    nickname: Option<Text256>,
    metadata: Option<MetadataParam>,
}

/// A new version, as read.
#[derive(Debug, Deserialize)]
pub struct VersionParams {
    #[serde(flatten)]
    pub pricing: PricingParams,
    #[serde(default)]
    pub nickname: Field<String>,
    #[serde(default)]
    pub metadata: Field<Metadata>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// Changes to a price. What it charges cannot change: that is a new version.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PriceUpdateParams {
    #[serde(default)]
    #[schema(value_type = Option<Text256>)]
    pub nickname: Field<String>,
    /// `false` stops new subscriptions from using it. A replaced version cannot be reactivated.
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub active: Field<bool>,
    /// Keys are merged and an empty value removes a key.
    #[serde(default)]
    #[schema(value_type = Option<MetadataParam>)]
    pub metadata: Field<Metadata>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

/// Fields that say what a price charges: never changed by an update.
const FIXED: &[&str] = &[
    "product",
    "currency",
    "recurring",
    "unit_amount",
    "tiers_mode",
    "tiers",
    "transform_quantity",
];

fn check_recurring(c: &mut Check, p: RecurringParams) -> Option<PriceRecurring> {
    c.unknown("recurring.", &p.unknown);
    let interval = c.required("recurring.interval", p.interval).and_then(|s| {
        let interval = Interval::parse(&s);
        if interval.is_none() {
            c.error("recurring.interval", "invalid", "one of day, week, month, year");
        }
        interval
    });
    let count = c.optional("recurring.interval_count", p.interval_count);
    let count = c.range("recurring.interval_count", count, 1..=MAX_INTERVAL_COUNT);
    let usage_type = match c.optional("recurring.usage_type", p.usage_type) {
        None => Some(UsageType::Licensed),
        Some(s) => {
            let usage_type = UsageType::parse(&s);
            if usage_type.is_none() {
                c.error("recurring.usage_type", "invalid", "licensed or metered");
            }
            usage_type
        }
    };
    let meter_given = !matches!(p.meter, Field::Missing);
    let meter = c.optional("recurring.meter", p.meter);
    let meter = c.id("recurring.meter", meter, Kind::Meter);
    match (usage_type, &meter) {
        (Some(UsageType::Metered), None) if !meter_given => {
            c.error(
                "recurring.meter",
                "meter_required",
                "a metered price names the meter it bills",
            );
        }
        (Some(UsageType::Licensed), Some(_)) => {
            c.error(
                "recurring.meter",
                "meter_not_allowed",
                "only a metered price bills a meter",
            );
        }
        _ => {}
    }
    let interval = interval?;
    let usage_type = usage_type?;
    let count = count.unwrap_or(1);
    let within = u16::try_from(count)
        .ok()
        .and_then(|n| Cadence::new(interval.unit(), n))
        .is_some();
    if !within {
        c.error(
            "recurring.interval_count",
            "interval_too_long",
            format!(
                "at most {} for interval {} (three years)",
                interval.unit().max_count(),
                interval.as_str()
            ),
        );
        return None;
    }
    Some(PriceRecurring {
        interval,
        interval_count: count,
        usage_type,
        meter,
    })
}

fn check_transform(c: &mut Check, p: TransformParams) -> Option<TransformQuantity> {
    c.unknown("transform_quantity.", &p.unknown);
    let divide_by = c.required("transform_quantity.divide_by", p.divide_by);
    let divide_by = c.range("transform_quantity.divide_by", divide_by, 1..=MAX_VALUE);
    let round = c.required("transform_quantity.round", p.round).and_then(|s| {
        let round = Round::parse(&s);
        if round.is_none() {
            c.error("transform_quantity.round", "invalid", "up or down");
        }
        round
    });
    Some(TransformQuantity {
        divide_by: divide_by?,
        round: round?,
    })
}

fn check_tier(c: &mut Check, i: usize, p: TierParams) -> Option<PriceTier> {
    let f = |name: &str| format!("tiers[{i}].{name}");
    c.unknown(&format!("tiers[{i}]."), &p.unknown);
    let up_to = c.optional(&f("up_to"), p.up_to);
    let up_to = c.range(&f("up_to"), up_to, 1..=MAX_USAGE_BOUND);
    let unit_amount = c.required(&f("unit_amount"), p.unit_amount);
    let unit_amount = c.range(&f("unit_amount"), unit_amount, 0..=MAX_AMOUNT);
    let flat_amount = c.optional(&f("flat_amount"), p.flat_amount);
    let flat_amount = c.range(&f("flat_amount"), flat_amount, 0..=MAX_AMOUNT);
    Some(PriceTier {
        up_to,
        unit_amount: unit_amount?,
        flat_amount: flat_amount.unwrap_or(0),
    })
}

/// `unit_amount`, or `tiers_mode` with valid `tiers`.
fn check_pricing(c: &mut Check, p: PricingParams) -> Option<Pricing> {
    let unit_amount = c.optional("unit_amount", p.unit_amount);
    let unit_amount = c.range("unit_amount", unit_amount, 0..=MAX_AMOUNT);
    let mode = c.optional("tiers_mode", p.tiers_mode).and_then(|s| {
        let mode = TiersMode::parse(&s);
        if mode.is_none() {
            c.error("tiers_mode", "invalid", "graduated or volume");
        }
        mode
    });
    let transform = c.optional("transform_quantity", p.transform_quantity);
    let transform = transform.map(|t| check_transform(c, t));
    let tiers = c.optional("tiers", p.tiers);
    let tiers = tiers.map(|tiers| {
        if tiers.is_empty() || tiers.len() > MAX_TIERS {
            c.error("tiers", "invalid_length", format!("1 to {MAX_TIERS} tiers"));
            return None;
        }
        tiers
            .into_iter()
            .enumerate()
            .map(|(i, t)| check_tier(c, i, t))
            .collect::<Option<Vec<_>>>()
    });
    match (unit_amount, mode, tiers) {
        (Some(unit_amount), None, None) => Some(Pricing::PerUnit {
            unit_amount,
            transform: match transform {
                None => None,
                Some(t) => Some(t?),
            },
        }),
        (None, Some(mode), Some(Some(tiers))) => {
            if transform.is_some() {
                c.error(
                    "transform_quantity",
                    "package_not_allowed",
                    "package pricing is for per_unit prices",
                );
                return None;
            }
            let domain: Vec<Tier> = tiers.iter().map(PriceTier::tier).collect();
            if let Err(e) = pricing::check_tiers(&domain, MAX_USAGE_BOUND) {
                c.error(e.field, "invalid_tiers", e.message);
                return None;
            }
            Some(Pricing::Tiered { mode, tiers })
        }
        // A tier or a value was refused above: already reported.
        (_, _, Some(None)) => None,
        _ => {
            c.error(
                "unit_amount",
                "invalid_pricing",
                "give unit_amount, or tiers_mode with tiers (not both)",
            );
            None
        }
    }
}

#[utoipa::path(post, path = "/v1/prices", tag = "prices", request_body = PriceCreateParams,
    responses((status = 201, description = "Created", body = Price)))]
pub async fn create(w: Write) -> Result<Response, Problem> {
    w.principal.require("prices:write")?;
    let p: PriceParams = w.body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let product = c.required("product", p.product);
    let product = c.id("product", product, Kind::Product);
    let currency = c.required("currency", p.currency);
    let currency = c.currency("currency", currency);
    let recurring = c.required("recurring", p.recurring);
    let recurring = recurring.and_then(|r| check_recurring(&mut c, r));
    let pricing = check_pricing(&mut c, p.pricing);
    let nickname = c.optional("nickname", p.nickname);
    let nickname = c.text("nickname", nickname, 256);
    let active = c.optional("active", p.active);
    let metadata = c.optional("metadata", p.metadata);
    let metadata = c.metadata("metadata", metadata);
    let input = c.finish(|| {
        Some(NewPrice {
            product_id: product?,
            currency: currency?,
            recurring: recurring?,
            pricing: pricing?,
            nickname,
            active: active.unwrap_or(true),
            metadata: metadata.unwrap_or_default(),
        })
    })?;
    w.run(async |conn, ctx| ops::create_price(conn, ctx, input).await.map(Done::created))
        .await
}

#[utoipa::path(post, path = "/v1/prices/{id}", tag = "prices", request_body = PriceUpdateParams,
    params(("id" = String, Path, description = "Price id")),
    responses((status = 200, description = "Updated", body = Price)))]
pub async fn update(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("prices:write")?;
    let id = path_id(Kind::Price, id)?;
    let p: PriceUpdateParams = w.body.read()?;
    let mut c = Check::new();
    for name in p.unknown.keys() {
        let message = if FIXED.contains(&name.as_str()) {
            "what a price charges never changes: create a new version (POST /v1/prices/{id}/versions)"
        } else {
            "this field is not accepted here"
        };
        c.error(name.clone(), "unknown_field", message);
    }
    let nickname = c.optional("nickname", p.nickname);
    let nickname = c.text("nickname", nickname, 256);
    let active = c.optional("active", p.active);
    let metadata = c.optional("metadata", p.metadata);
    let metadata = c.metadata("metadata", metadata);
    let input = c.finish(|| {
        Some(PriceUpdate {
            nickname,
            active,
            metadata,
        })
    })?;
    w.run(async |conn, ctx| ops::update_price(conn, ctx, &id, input).await.map(Done::ok))
        .await
}

#[utoipa::path(post, path = "/v1/prices/{id}/versions", tag = "prices", request_body = PriceVersionParams,
    params(("id" = String, Path, description = "The price to replace: its latest version")),
    responses((status = 201, description = "The new version; the previous one is now inactive", body = Price)))]
pub async fn create_version(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("prices:write")?;
    let id = path_id(Kind::Price, id)?;
    let p: VersionParams = w.body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let pricing = check_pricing(&mut c, p.pricing);
    let nickname = c.optional("nickname", p.nickname);
    let nickname = c.text("nickname", nickname, 256);
    let metadata = c.optional("metadata", p.metadata);
    let metadata = c.metadata("metadata", metadata);
    let input = c.finish(|| {
        Some(NewVersion {
            pricing: pricing?,
            nickname,
            metadata,
        })
    })?;
    w.run(async |conn, ctx| ops::create_version(conn, ctx, &id, input).await.map(Done::created))
        .await
}

#[utoipa::path(get, path = "/v1/prices/{id}", tag = "prices",
    params(("id" = String, Path, description = "Price id")),
    responses((status = 200, description = "The price", body = Price)))]
pub async fn retrieve(r: Read, Path(id): Path<String>) -> Result<Json<Price>, Problem> {
    r.require("prices:read")?;
    let id = path_id(Kind::Price, id)?;
    r.answer(async |conn, tenant| ops::get_price(conn, tenant, &id).await)
        .await
}

#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PriceFilters {
    /// Only this product's prices.
    product: Option<String>,
}

#[utoipa::path(get, path = "/v1/prices", tag = "prices", params(list::PageParams, PriceFilters),
    responses((status = 200, description = "Prices, newest first", body = List<Price>)))]
pub async fn list(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<Price>>, Problem> {
    r.require("prices:read")?;
    let mut query = list::Query::new(params, &["product"]);
    let product = query.filter("product", Some(Kind::Product));
    let page = query.page(Kind::Price)?;
    let filter = PriceFilter { product };
    r.list(async |conn, tenant| ops::list_prices(conn, tenant, &page, &filter).await)
        .await
}
