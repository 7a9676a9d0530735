//! The `/v1` billing API: handlers that check their input and call the billing and webhook
//! layers, the write mechanism they share, the error shape of every answer, and the OpenAPI
//! document generated from the handlers.
pub mod credit_notes;
pub mod customers;
pub mod events;
pub mod extract;
pub mod idempotency;
pub mod input;
pub mod invoices;
pub mod ledger;
pub mod list;
pub mod meter_events;
pub mod meters;
pub mod openapi;
pub mod payments;
pub mod prices;
pub mod problem;
pub mod products;
pub mod rate_limit;
pub mod read;
pub mod schema;
pub mod state;
pub mod subscriptions;
pub mod test_clocks;
pub mod webhooks;
pub mod write;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use state::{AppState, Shared};

/// The billing routes, with the OpenAPI document that describes them.
pub fn routes() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, api) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(customers::create, customers::list))
        .routes(routes!(customers::retrieve, customers::update))
        .routes(routes!(customers::balance))
        .routes(routes!(credit_notes::credit_balance))
        .routes(routes!(credit_notes::credit_transactions))
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
        .routes(routes!(credit_notes::create, credit_notes::list))
        .routes(routes!(credit_notes::retrieve))
        .routes(routes!(products::create, products::list))
        .routes(routes!(products::retrieve, products::update))
        .routes(routes!(prices::create, prices::list))
        .routes(routes!(prices::retrieve, prices::update))
        .routes(routes!(prices::create_version))
        .routes(routes!(subscriptions::create, subscriptions::list))
        .routes(routes!(subscriptions::retrieve, subscriptions::update))
        .routes(routes!(subscriptions::preview))
        .routes(routes!(subscriptions::upcoming_invoice))
        .routes(routes!(subscriptions::cancel))
        .routes(routes!(subscriptions::pause))
        .routes(routes!(subscriptions::resume))
        .routes(routes!(meters::create, meters::list))
        .routes(routes!(meters::retrieve))
        .routes(routes!(meters::usage))
        .routes(routes!(meter_events::create))
        .routes(routes!(test_clocks::create, test_clocks::list))
        .routes(routes!(test_clocks::retrieve))
        .routes(routes!(test_clocks::advance))
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
