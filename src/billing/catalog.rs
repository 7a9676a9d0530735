//! The catalogue: products, and the prices that say what they cost per period.
//!
//! A price's amounts never change once it exists (Stripe's rule, also enforced by a trigger): a
//! change is a **version**, a new price of the same product, currency and interval, numbered one
//! more and linked both ways to the one it replaces, which is deactivated in the same
//! transaction. Versions form a line: only the latest one can be versioned (409
//! `price_superseded` otherwise), so two concurrent changes cannot fork a price.
use sqlx::AnyConnection;

use crate::domain::ids::{Kind, new_id};
use crate::domain::metadata::Metadata;
use crate::domain::money::Currency;
use crate::domain::pricing::MAX_QUANTITY;
use crate::objects::{
    BillingScheme, Price, PriceRecurring, PriceTier, Product, TiersMode, TransformQuantity, UsageType,
};
use crate::operation::{Ctx, Error, Result};
use crate::store::catalog::{self, PriceFilter};
use crate::store::page::{Page, PageQuery};
use crate::store::tenants;

#[derive(Debug, Clone)]
pub struct NewProduct {
    pub name: String,
    pub description: Option<String>,
    pub active: bool,
    pub metadata: Metadata,
}

/// Fields to change; `None` leaves a field as it is. Metadata keys are merged.
#[derive(Debug, Clone, Default)]
pub struct ProductUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub active: Option<bool>,
    pub metadata: Option<Metadata>,
}

/// What a price charges per period, already checked (`domain::pricing::check_tiers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pricing {
    /// With `transform`, in packages (metered prices only).
    PerUnit {
        unit_amount: i64,
        transform: Option<TransformQuantity>,
    },
    Tiered {
        mode: TiersMode,
        tiers: Vec<PriceTier>,
    },
}

#[derive(Debug, Clone)]
pub struct NewPrice {
    pub product_id: String,
    pub currency: Currency,
    pub recurring: PriceRecurring,
    pub pricing: Pricing,
    pub nickname: Option<String>,
    pub active: bool,
    pub metadata: Metadata,
}

#[derive(Debug, Clone, Default)]
pub struct PriceUpdate {
    pub nickname: Option<String>,
    pub active: Option<bool>,
    pub metadata: Option<Metadata>,
}

/// The next version of a price: what it charges now, and optionally its name and metadata
/// (otherwise the previous version's).
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub pricing: Pricing,
    pub nickname: Option<String>,
    pub metadata: Option<Metadata>,
}

pub async fn create_product(conn: &mut AnyConnection, ctx: &Ctx, input: NewProduct) -> Result<Product> {
    tenants::ensure(conn, &ctx.tenant, ctx.now).await?;
    let product = Product {
        id: new_id(Kind::Product),
        object: Product::OBJECT,
        name: input.name,
        description: input.description,
        active: input.active,
        metadata: input.metadata,
        created: ctx.now,
    };
    catalog::insert_product(conn, &ctx.tenant, &product).await?;
    ctx.audit(conn, "product.created", &product.id).await?;
    ctx.emit(conn, "product.created", &product).await?;
    Ok(product)
}

pub async fn update_product(conn: &mut AnyConnection, ctx: &Ctx, id: &str, input: ProductUpdate) -> Result<Product> {
    let mut product = get_product(conn, &ctx.tenant, id).await?;
    if let Some(metadata) = input.metadata {
        super::merge_metadata(&mut product.metadata, metadata)?;
    }
    if let Some(name) = input.name {
        product.name = name;
    }
    if let Some(description) = input.description {
        product.description = Some(description);
    }
    if let Some(active) = input.active {
        product.active = active;
    }
    catalog::update_product(conn, &ctx.tenant, &product).await?;
    ctx.audit(conn, "product.updated", &product.id).await?;
    ctx.emit(conn, "product.updated", &product).await?;
    Ok(product)
}

pub async fn get_product(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Product> {
    catalog::find_product(conn, tenant, id)
        .await?
        .ok_or(Error::NotFound("product"))
}

pub async fn list_products(conn: &mut AnyConnection, tenant: &str, page: &PageQuery) -> Result<Page<Product>> {
    Ok(catalog::list_products(conn, tenant, page).await?)
}

type PriceFields = (
    BillingScheme,
    Option<i64>,
    Option<TransformQuantity>,
    Option<TiersMode>,
    Option<Vec<PriceTier>>,
);

/// The price's columns for `pricing`, checked against how it bills: packages are for metered
/// prices only, and a licensed price's tiers are bounded by the largest quantity an item may have
/// (422 `package_not_allowed`, `out_of_range`).
fn price_fields(pricing: Pricing, usage_type: UsageType) -> Result<PriceFields> {
    Ok(match pricing {
        Pricing::PerUnit { unit_amount, transform } => {
            if transform.is_some() && usage_type == UsageType::Licensed {
                return Err(Error::invalid(
                    "transform_quantity",
                    "package_not_allowed",
                    "package pricing is for metered prices (a licensed item's quantity is its count of units)",
                ));
            }
            (BillingScheme::PerUnit, Some(unit_amount), transform, None, None)
        }
        Pricing::Tiered { mode, tiers } => {
            if usage_type == UsageType::Licensed
                && let Some(i) = tiers.iter().position(|t| t.up_to.is_some_and(|u| u > MAX_QUANTITY))
            {
                return Err(Error::invalid(
                    &format!("tiers[{i}].up_to"),
                    "invalid_tiers",
                    format!(
                        "a licensed price's tiers are bounded at most at {MAX_QUANTITY}, an item's largest quantity"
                    ),
                ));
            }
            (BillingScheme::Tiered, None, None, Some(mode), Some(tiers))
        }
    })
}

pub async fn create_price(conn: &mut AnyConnection, ctx: &Ctx, input: NewPrice) -> Result<Price> {
    // The product must be this tenant's (a reference to another's is a missing product).
    get_product(conn, &ctx.tenant, &input.product_id).await?;
    // So must the meter a metered price bills.
    if let Some(meter) = &input.recurring.meter
        && crate::store::meters::find(conn, &ctx.tenant, meter).await?.is_none()
    {
        return Err(Error::NotFound("meter"));
    }
    let (billing_scheme, unit_amount, transform_quantity, tiers_mode, tiers) =
        price_fields(input.pricing, input.recurring.usage_type)?;
    let price = Price {
        id: new_id(Kind::Price),
        object: Price::OBJECT,
        product_id: input.product_id,
        currency: input.currency.code(),
        active: input.active,
        nickname: input.nickname,
        recurring: input.recurring,
        billing_scheme,
        unit_amount,
        transform_quantity,
        tiers_mode,
        tiers,
        version: 1,
        previous_version: None,
        superseded_by: None,
        metadata: input.metadata,
        created: ctx.now,
    };
    catalog::insert_price(conn, &ctx.tenant, &price).await?;
    ctx.audit(conn, "price.created", &price.id).await?;
    ctx.emit(conn, "price.created", &price).await?;
    Ok(price)
}

pub async fn update_price(conn: &mut AnyConnection, ctx: &Ctx, id: &str, input: PriceUpdate) -> Result<Price> {
    let mut price = catalog::find_price_for_update(conn, ctx.backend, &ctx.tenant, id)
        .await?
        .ok_or(Error::NotFound("price"))?;
    if let Some(metadata) = input.metadata {
        super::merge_metadata(&mut price.metadata, metadata)?;
    }
    if let Some(nickname) = input.nickname {
        price.nickname = Some(nickname);
    }
    if let Some(active) = input.active {
        if active && price.superseded_by.is_some() {
            return Err(superseded(&price));
        }
        price.active = active;
    }
    catalog::update_price(conn, &ctx.tenant, &price).await?;
    ctx.audit(conn, "price.updated", &price.id).await?;
    ctx.emit(conn, "price.updated", &price).await?;
    Ok(price)
}

fn superseded(price: &Price) -> Error {
    Error::Conflict {
        code: "price_superseded",
        message: format!(
            "{} was replaced by {}: use the latest version",
            price.id,
            price.superseded_by.as_deref().unwrap_or("a newer version")
        ),
    }
}

/// Replaces the price by a new version that charges `input.pricing`: same product, currency and
/// interval, `version + 1`. The previous one is deactivated and points at its successor, in the
/// same transaction; subscriptions on it keep it until they are moved.
pub async fn create_version(conn: &mut AnyConnection, ctx: &Ctx, id: &str, input: NewVersion) -> Result<Price> {
    let mut previous = catalog::find_price_for_update(conn, ctx.backend, &ctx.tenant, id)
        .await?
        .ok_or(Error::NotFound("price"))?;
    if previous.superseded_by.is_some() {
        return Err(superseded(&previous));
    }
    let mut metadata = previous.metadata.clone();
    if let Some(changes) = input.metadata {
        super::merge_metadata(&mut metadata, changes)?;
    }
    let (billing_scheme, unit_amount, transform_quantity, tiers_mode, tiers) =
        price_fields(input.pricing, previous.recurring.usage_type)?;
    let price = Price {
        id: new_id(Kind::Price),
        object: Price::OBJECT,
        product_id: previous.product_id.clone(),
        currency: previous.currency.clone(),
        active: true,
        nickname: input.nickname.or_else(|| previous.nickname.clone()),
        recurring: previous.recurring.clone(),
        billing_scheme,
        unit_amount,
        transform_quantity,
        tiers_mode,
        tiers,
        version: previous.version + 1,
        previous_version: Some(previous.id.clone()),
        superseded_by: None,
        metadata,
        created: ctx.now,
    };
    catalog::insert_price(conn, &ctx.tenant, &price).await?;
    previous.active = false;
    previous.superseded_by = Some(price.id.clone());
    catalog::update_price(conn, &ctx.tenant, &previous).await?;
    ctx.audit(conn, "price.created", &price.id).await?;
    ctx.emit(conn, "price.created", &price).await?;
    ctx.audit(conn, "price.updated", &previous.id).await?;
    ctx.emit(conn, "price.updated", &previous).await?;
    Ok(price)
}

pub async fn get_price(conn: &mut AnyConnection, tenant: &str, id: &str) -> Result<Price> {
    catalog::find_price(conn, tenant, id)
        .await?
        .ok_or(Error::NotFound("price"))
}

pub async fn list_prices(
    conn: &mut AnyConnection,
    tenant: &str,
    page: &PageQuery,
    filter: &PriceFilter,
) -> Result<Page<Price>> {
    Ok(catalog::list_prices(conn, tenant, page, filter).await?)
}
