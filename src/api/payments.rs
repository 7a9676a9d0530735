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
use super::schema::{CurrencyCode, InvoiceId, MetadataParam, PaymentId, Text255, Text500};
use super::write::{Done, Write};
use crate::billing::payments::{self as ops, NewPayment, NewRefund};
use crate::domain::ids::Kind;
use crate::domain::metadata::Metadata;
use crate::domain::money::MAX_AMOUNT;
use crate::objects::{Payment, Refund};
use crate::store::payments::{Filter, RefundFilter};
use crate::telemetry::metrics;

#[derive(Debug, Deserialize, ToSchema)]
pub struct PaymentParams {
    /// The open or uncollectible invoice paid.
    #[serde(default)]
    #[schema(value_type = InvoiceId, required = true)]
    pub invoice: Field<String>,
    /// In the minor unit; at most the invoice's `amount_remaining`.
    #[serde(default)]
    #[schema(value_type = i64, minimum = 1, maximum = 1_000_000_000_000_i64, required = true)]
    pub amount: Field<i64>,
    /// Must be the invoice's currency.
    #[serde(default)]
    #[schema(value_type = CurrencyCode, required = true)]
    pub currency: Field<String>,
    /// Your reference for the payment (unique per tenant), e.g. a bank transfer id.
    #[serde(default)]
    #[schema(value_type = Option<Text255>)]
    pub reference: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<MetadataParam>)]
    pub metadata: Field<Metadata>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefundParams {
    /// The payment to refund.
    #[serde(default)]
    #[schema(value_type = PaymentId, required = true)]
    pub payment: Field<String>,
    /// The rest of the payment when not given.
    #[serde(default)]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub amount: Field<i64>,
    #[serde(default)]
    #[schema(value_type = Option<Text500>)]
    pub reason: Field<String>,
    #[serde(default)]
    #[schema(value_type = Option<MetadataParam>)]
    pub metadata: Field<Metadata>,
    #[serde(flatten)]
    #[schema(ignore)]
    pub unknown: Unknown,
}

#[utoipa::path(post, path = "/v1/payments", tag = "payments", request_body = PaymentParams,
    responses((status = 201, description = "The payment", body = Payment)))]
pub async fn create(w: Write) -> Result<Response, Problem> {
    w.principal.require("payments:write")?;
    let p: PaymentParams = w.body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let invoice = c.required("invoice", p.invoice);
    let invoice = c.id("invoice", invoice, Kind::Invoice);
    let amount = c.required("amount", p.amount);
    let amount = c.range("amount", amount, 1..=MAX_AMOUNT);
    let currency = c.required("currency", p.currency);
    let currency = c.currency("currency", currency);
    let reference = c.optional("reference", p.reference);
    let reference = c.text("reference", reference, 255);
    let metadata = c.optional("metadata", p.metadata);
    let metadata = c.metadata("metadata", metadata);
    let input = c.finish(|| {
        Some(NewPayment {
            invoice_id: invoice?,
            amount: amount?,
            currency: currency?,
            reference,
            metadata: metadata.unwrap_or_default(),
        })
    })?;
    w.run(async |conn, ctx| {
        let payment = ops::record(conn, ctx, input).await?;
        Ok(Done::created(payment).counting(metrics::PAYMENTS_RECORDED))
    })
    .await
}

#[utoipa::path(get, path = "/v1/payments/{id}", tag = "payments", params(("id" = String, Path, description = "Payment id")),
    responses((status = 200, description = "The payment", body = Payment)))]
pub async fn retrieve(r: Read, Path(id): Path<String>) -> Result<Json<Payment>, Problem> {
    r.require("payments:read")?;
    let id = path_id(Kind::Payment, id)?;
    r.answer(async |conn, tenant| ops::get(conn, tenant, &id).await).await
}

#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PaymentFilters {
    /// Only payments of this invoice.
    invoice: Option<String>,
}

#[utoipa::path(get, path = "/v1/payments", tag = "payments", params(list::PageParams, PaymentFilters),
    responses((status = 200, description = "Payments, newest first", body = List<Payment>)))]
pub async fn list(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<Payment>>, Problem> {
    r.require("payments:read")?;
    let mut query = list::Query::new(params, &["invoice"]);
    let filter = Filter {
        invoice: query.filter("invoice", Some(Kind::Invoice)),
    };
    let page = query.page(Kind::Payment)?;
    r.list(async |conn, tenant| ops::list(conn, tenant, &page, &filter).await)
        .await
}

#[utoipa::path(post, path = "/v1/refunds", tag = "refunds", operation_id = "create", request_body = RefundParams,
    responses((status = 201, description = "The refund", body = Refund)))]
pub async fn create_refund(w: Write) -> Result<Response, Problem> {
    w.principal.require("refunds:write")?;
    let p: RefundParams = w.body.read()?;
    let mut c = Check::new();
    c.unknown("", &p.unknown);
    let payment = c.required("payment", p.payment);
    let payment = c.id("payment", payment, Kind::Payment);
    let amount = c.optional("amount", p.amount);
    let amount = c.range("amount", amount, 1..=MAX_AMOUNT);
    let reason = c.optional("reason", p.reason);
    let reason = c.text("reason", reason, 500);
    let metadata = c.optional("metadata", p.metadata);
    let metadata = c.metadata("metadata", metadata);
    let input = c.finish(|| {
        Some(NewRefund {
            payment_id: payment?,
            amount,
            reason,
            metadata: metadata.unwrap_or_default(),
        })
    })?;
    w.run(async |conn, ctx| {
        let refund = ops::refund(conn, ctx, input).await?;
        Ok(Done::created(refund).counting(metrics::REFUNDS_RECORDED))
    })
    .await
}

#[utoipa::path(get, path = "/v1/refunds/{id}", tag = "refunds", operation_id = "retrieve", params(("id" = String, Path, description = "Refund id")),
    responses((status = 200, description = "The refund", body = Refund)))]
pub async fn retrieve_refund(r: Read, Path(id): Path<String>) -> Result<Json<Refund>, Problem> {
    r.require("refunds:read")?;
    let id = path_id(Kind::Refund, id)?;
    r.answer(async |conn, tenant| ops::get_refund(conn, tenant, &id).await)
        .await
}

#[allow(dead_code)]
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RefundFilters {
    /// Only refunds of this payment.
    payment: Option<String>,
}

#[utoipa::path(get, path = "/v1/refunds", tag = "refunds", operation_id = "list", params(list::PageParams, RefundFilters),
    responses((status = 200, description = "Refunds, newest first", body = List<Refund>)))]
pub async fn list_refunds(r: Read, RawQuery(params): RawQuery) -> Result<Json<List<Refund>>, Problem> {
    r.require("refunds:read")?;
    let mut query = list::Query::new(params, &["payment"]);
    let filter = RefundFilter {
        payment: query.filter("payment", Some(Kind::Payment)),
    };
    let page = query.page(Kind::Refund)?;
    r.list(async |conn, tenant| ops::list_refunds(conn, tenant, &page, &filter).await)
        .await
}
