//! Routes that exist only in debug builds, and only when asked for, so that tests can make a
//! request slow, make a handler panic, post a typed body, or hold a database connection.
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use crate::api::AppState;
use crate::api::input::{JsonBody, sample};
use crate::api::problem::Problem;

/// The paths below (the request layer's route table lists them).
pub const PATHS: &[&str] = &["/__test/slow", "/__test/panic", "/__test/echo", "/__test/db"];

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/__test/slow", get(slow))
        .route("/__test/panic", get(panic))
        .route("/__test/echo", post(echo))
        .route("/__test/db", get(db))
}

#[derive(Deserialize)]
struct Wait {
    #[serde(default)]
    ms: u64,
}

async fn slow(Query(wait): Query<Wait>) -> Json<serde_json::Value> {
    tokio::time::sleep(Duration::from_millis(wait.ms)).await;
    Json(serde_json::json!({ "slept_ms": wait.ms }))
}

#[allow(clippy::panic)]
async fn panic() -> &'static str {
    panic!("test route asked to panic")
}

/// Reads a body the way every API route does, and sends it back.
async fn echo(body: JsonBody) -> Result<Json<serde_json::Value>, Problem> {
    let (name, amount) = sample::check(&body)?;
    Ok(Json(serde_json::json!({ "name": name, "amount": amount })))
}

/// Runs a query on a pooled connection and keeps the connection for `ms`.
async fn db(State(state): State<AppState>, Query(wait): Query<Wait>) -> Result<Json<serde_json::Value>, Problem> {
    let mut conn = state.store.acquire().await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut *conn).await?;
    tokio::time::sleep(Duration::from_millis(wait.ms)).await;
    Ok(Json(serde_json::json!({ "one": one })))
}
