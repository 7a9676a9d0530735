//! The `/v1` billing API and its OpenAPI description, generated from the handlers.

/// Runs one operation as a write transaction (see [`write`]) and answers with `$status` and the
/// operation's result: `write_op!(state, principal, request_id, headers, path, body, status,
/// |conn, ctx| async { ... })`.
macro_rules! write_op {
    ($state:expr, $principal:expr, $rid:expr, $headers:expr, $path:expr, $body:expr, $status:expr, |$conn:ident, $ctx:ident| $op:expr) => {{
        let path: String = $path;
        let mut w =
            match $crate::api::write::Write::begin(&$state, &$principal, &$rid, &$headers, &path, &$body).await? {
                $crate::api::write::Begin::Replay(response) => return Ok(response),
                $crate::api::write::Begin::Fresh(w) => w,
            };
        let ctx = w.ctx().clone();
        let result = {
            let $conn = w.conn();
            let $ctx = &ctx;
            $op.await
        };
        Ok(w.finish(result.map(|value| ($status, value))).await)
    }};
}
pub mod customers;
pub mod events;
pub mod input;
pub mod invoices;
pub mod ledger;
pub mod list;
pub mod objects;
pub mod openapi;
pub mod payments;
pub mod webhooks;
pub mod write;

use axum::extract::FromRequestParts;
use http::request::Parts;
use sqlx::pool::PoolConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::domain::ids::{self, Kind};
use crate::http::AppState;
use crate::http::middleware::request::RequestId;
use crate::http::problem::Problem;

/// The billing routes, with the OpenAPI document that describes them.
pub fn routes() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, api) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(customers::create, customers::list))
        .routes(routes!(customers::retrieve, customers::update))
        .routes(routes!(customers::balance))
        .routes(routes!(invoices::create, invoices::list))
        .routes(routes!(invoices::retrieve, invoices::delete))
        .routes(routes!(invoices::add_line))
        .routes(routes!(invoices::update_line, invoices::delete_line))
        .routes(routes!(invoices::finalize))
        .routes(routes!(invoices::void))
        .routes(routes!(invoices::mark_uncollectible))
        .routes(routes!(payments::create, payments::list))
        .routes(routes!(payments::retrieve))
        .routes(routes!(payments::create_refund, payments::list_refunds))
        .routes(routes!(payments::retrieve_refund))
        .routes(routes!(ledger::list))
        .routes(routes!(events::list))
        .routes(routes!(events::retrieve))
        .routes(routes!(events::resend))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::retrieve, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::attempts))
        .routes(routes!(webhooks::list_deliveries))
        .routes(routes!(webhooks::retrieve_delivery))
        .routes(routes!(webhooks::retry))
        .split_for_parts();
    (router, openapi::finish(api))
}

/// The request id the request layer assigned.
pub struct ReqId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ReqId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let id = parts
            .extensions
            .get::<RequestId>()
            .map(|r| r.0.to_string())
            .unwrap_or_default();
        Ok(ReqId(id))
    }
}

/// A pooled connection for reads.
pub async fn conn(state: &AppState) -> Result<PoolConnection<sqlx::Any>, Problem> {
    Ok(state.store.acquire().await?)
}

/// A path id of the wrong shape names nothing: 404, like a missing object.
pub fn path_id(kind: Kind, id: String, what: &str) -> Result<String, Problem> {
    if ids::is_valid(kind, &id) {
        Ok(id)
    } else {
        Err(Problem::not_found(format!("no such {what}")))
    }
}
