//! The baseline for the middleware benchmark: a bare axum server answering `GET /` with the same
//! JSON body as billing-api's `GET /`, on the same runtime, with no middleware at all.
//! Run by bench/middleware.sh; not part of the service.
use axum::{Router, http::header, routing::get};

/// The service's allocator (src/main.rs), so that the ratio measures the middleware alone.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_owned());
    // The very same bytes billing-api answers `GET /` with, prepared once as it does.
    let body = bytes::Bytes::from(billing_api::http::root_document());
    let app = Router::new().route(
        "/",
        get(move || async move { ([(header::CONTENT_TYPE, "application/json")], body.clone()) }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
