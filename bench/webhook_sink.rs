//! The receiver of bench/webhooks.sh: answers every `POST /hook` with 204 and counts the
//! deliveries it saw (distinct `webhook-id`s and all requests) at `GET /count`.
//! Run by bench/webhooks.sh; not part of the service.
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let seen: Arc<Mutex<(HashSet<String>, u64)>> = Arc::default();
    let (s1, s2) = (seen.clone(), seen);
    let app = Router::new()
        .route(
            "/hook",
            post(move |headers: HeaderMap| async move {
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                if let Ok(mut s) = s1.lock() {
                    s.0.insert(id);
                    s.1 += 1;
                }
                StatusCode::NO_CONTENT
            }),
        )
        .route(
            "/count",
            get(move || async move {
                let (distinct, requests) = s2.lock().map(|s| (s.0.len(), s.1)).unwrap_or_default();
                Json(serde_json::json!({"distinct": distinct, "requests": requests}))
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
