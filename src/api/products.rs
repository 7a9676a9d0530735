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
use super::schema::{MetadataParam, Text256, Text500};
use super::write::{Done, Write};
use crate::billing::catalog::{self as ops, NewProduct, ProductUpdate};
use crate::domain::ids::Kind;
use crate::domain::metadata::Metadata;
use crate::objects::Product;

/// Creating or updating a product, as read (the two are described apart below).
#[derive(Debug, Deserialize)]
pub struct ProductParams {
    #[serde(default)]
    pub name: Field<String>,
    #[serde(default)]
    pub description: Field<String>,
    #[serde(default)]
    pub active: Field<bool>,
    #[serde(default)]
    pub metadata: Field<Metadata>,
    #[serde(flatten)]
    pub unknown: Unknown,
}

/// A new product.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct ProductCreateParams {
    name: Text256,
    description: Option<Text500>,
    /// `true` when not given.
    active: Option<bool>,
    metadata: Option<MetadataParam>,
}

/// Changes to a product: every field is optional.
#[allow(dead_code)]
#[derive(ToSchema)]
pub struct ProductUpdateParams {
    name: Option<Text256>,
    description: Option<Text500>,
    /// `false` archives the product: its prices and subscriptions stay as they are.
    active: Option<bool>,
    /// Keys are merged and an empty value removes a key.
    metadata: Option<MetadataParam>,
}

struct Checked {
    name: Option<String>,
    description: Option<String>,
    active: Option<bool>,
    metadata: Option<Metadata>,
}

fn check(p: ProductParams, creating: bool) -> (Check, Checked) {
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let name = if creating {
        c.required("name", p.name)
    } else {
        c.optional("name", p.name)
    };
    let name = c.text("name", name, 256);
    let description = c.optional("description", p.description);
    let description = c.text("description", description, 500);
    let active = c.optional("active", p.active);
    let metadata = c.optional("metadata", p.metadata);
    let metadata = c.metadata("metadata", metadata);
    (
        c,
        Checked {
            name,
            description,
            active,
            metadata,
        },
    )
}

#[utoipa::path(post, path = "/v1/products", tag = "products", request_body = ProductCreateParams,
    responses((status = 201, description = "Created", body = Product)))]
pub async fn create(w: Write) -> Result<Response, Problem> {
    w.principal.require("products:write")?;
    let (c, p) = check(w.body.read()?, true);
    let input = c.finish(|| {
        Some(NewProduct {
            name: p.name?,
            description: p.description,
            active: p.active.unwrap_or(true),
            metadata: p.metadata.unwrap_or_default(),
        })
    })?;
    w.run(async |conn, ctx| ops::create_product(conn, ctx, input).await.map(Done::created))
        .await
}

#[utoipa::path(post, path = "/v1/products/{id}", tag = "products", request_body = ProductUpdateParams,
    params(("id" = String, Path, description = "Product id")),
    responses((status = 200, description = "Updated", body = Product)))]
pub async fn update(Path(id): Path<String>, w: Write) -> Result<Response, Problem> {
    w.principal.require("products:write")?;
    let id = path_id(Kind::Product, id)?;
    let (c, p) = check(w.body.read()?, false);
    let input = c.finish(|| {
        Some(ProductUpdate {
            name: p.name,
            description: p.description,
            active: p.active,
            metadata: p.metadata,
        })
    })?;
    w.run(async |conn, ctx| ops::update_product(conn, ctx, &id, input).await.map(Done::ok))
        .await
}

#[utoipa::path(get, path = "/v1/products/{id}", tag = "products",
    params(("id" = String, Path, description = "Product id")),
    responses((status = 200, description = "The product", body = Product)))]
pub async fn retrieve(r: Read, Path(id): Path<String>) -> Result<Json<Product>, Problem> {
    r.require("products:read")?;
    let id = path_id(Kind::Product, id)?;
    r.answer(async |conn, tenant| ops::get_product(conn, tenant, &id).await)
        .await
}

#[utoipa::path(get, path = "/v1/products", tag = "products", params(list::PageParams),
    responses((status = 200, description = "Products, newest first", body = List<Product>)))]
pub async fn list(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<Product>>, Problem> {
    r.require("products:read")?;
    let page = list::Query::new(params, &[]).page(Kind::Product)?;
    r.list(async |conn, tenant| ops::list_products(conn, tenant, &page).await)
        .await
}
