//! `Idempotency-Key` (IETF draft semantics, scoped per tenant, Stripe-style replay):
//!
//! - the first request's status and body are stored in the same transaction as its effects;
//! - a retry with the same key and the same request gets them back with `Idempotent-Replayed: true`;
//! - the same key with a different request is 422 `idempotency_key_reused`;
//! - a retry while the first is still running is 409 `idempotency_key_in_use` (an in-process
//!   registry, and on PostgreSQL a transaction-scoped advisory lock, which covers every replica);
//! - keys are kept for `idempotency.retention` and purged in the background.
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;

use super::problem::{self, Problem};
use crate::operation::Ctx;
use crate::store::Store;
use crate::store::idempotency::{self as store, StoredResponse};
use crate::telemetry::metrics;

pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
const MAX_KEY_LEN: usize = 255;
/// What a key is, for the OpenAPI document: what [`key`] accepts.
pub const KEY_PATTERN: &str = "^[!-~]([ -~]{0,253}[!-~])?$";

/// The request's key: none, or 1 to 255 visible ASCII characters, spaces only inside (400
/// otherwise).
pub fn key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    is_key_shaped(value.as_bytes())
        .then(|| value.to_str().ok().map(|k| Some(k.to_owned())))
        .flatten()
        .ok_or_else(|| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_idempotency_key",
                "Invalid Idempotency-Key",
                format!("an Idempotency-Key is 1 to {MAX_KEY_LEN} visible ASCII characters"),
            )
        })
}

/// Whether `bytes` are a key's shape ([`KEY_PATTERN`]): 1 to 255 visible ASCII characters,
/// spaces only inside. Meter event identifiers have the same shape.
pub fn is_key_shaped(bytes: &[u8]) -> bool {
    let visible = |b: &u8| (b'!'..=b'~').contains(b);
    (1..=MAX_KEY_LEN).contains(&bytes.len())
        && bytes.iter().all(|b| visible(b) || *b == b' ')
        && bytes.first().is_some_and(visible)
        && bytes.last().is_some_and(visible)
}

/// Keys being processed by this process.
#[derive(Debug)]
pub struct Registry {
    pub retention: Duration,
    in_flight: Mutex<HashSet<(String, String)>>,
}

/// A key held by this process until the request is done, however it ends.
pub struct Claim<'a> {
    registry: &'a Registry,
    entry: (String, String),
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.registry.in_flight.lock() {
            set.remove(&self.entry);
        }
    }
}

impl Registry {
    pub fn new(retention: Duration) -> Self {
        Registry {
            retention,
            in_flight: Mutex::new(HashSet::new()),
        }
    }

    /// Holds `key` for `tenant`, or 409 when a request with it is still running here.
    pub fn claim(&self, tenant: &str, key: &str) -> Result<Claim<'_>, Problem> {
        let entry = (tenant.to_owned(), key.to_owned());
        let inserted = self
            .in_flight
            .lock()
            .map(|mut set| set.insert(entry.clone()))
            .unwrap_or(false);
        if !inserted {
            return Err(in_use());
        }
        Ok(Claim { registry: self, entry })
    }
}

fn in_use() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "idempotency_key_in_use",
        "Idempotency Key In Use",
        "a request with this Idempotency-Key is still being processed; retry later",
    )
}

/// The request a key was first used with: its fingerprint (method and path) and its body in
/// canonical form (keys sorted), so a client that re-serializes its request still matches.
pub fn request_hash(fingerprint: &str, body: &Value) -> String {
    let canonical = serde_json::to_vec(body).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(fingerprint.as_bytes());
    hasher.update(b"\n");
    hasher.update(&canonical);
    hex::encode(hasher.finalize())
}

/// Inside the write's transaction: the stored answer to replay, or `None` for a first use.
pub async fn look_up(
    tx: &mut AnyConnection,
    ctx: &Ctx,
    registry: &Registry,
    key: &str,
    hash: &str,
) -> Result<Option<Response>, Problem> {
    if !store::try_lock(tx, ctx.backend, &ctx.tenant, key).await? {
        return Err(in_use());
    }
    let not_before = ctx.now - registry.retention.as_secs() as i64;
    let Some(stored) = store::find(tx, &ctx.tenant, key, not_before).await? else {
        return Ok(None);
    };
    if stored.request_hash != hash {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "Idempotency Key Reused",
            "this Idempotency-Key was used with a different request",
        ));
    }
    metrics::count(metrics::IDEMPOTENT_REPLAYS);
    Ok(Some(replay(stored)))
}

/// Stores the answer with the write's effects.
pub async fn remember(
    tx: &mut AnyConnection,
    ctx: &Ctx,
    key: &str,
    request_hash: String,
    status: StatusCode,
    body: String,
) -> Result<(), sqlx::Error> {
    let stored = StoredResponse {
        request_hash,
        status_code: status.as_u16(),
        body,
    };
    store::store(tx, &ctx.tenant, key, &stored, ctx.now).await
}

pub fn respond(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status_code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if status.is_success() {
        "application/json"
    } else {
        problem::CONTENT_TYPE
    };
    let mut response = respond(status, stored.body.into_bytes(), content_type);
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED.clone(), HeaderValue::from_static("true"));
    response
}

/// Deletes expired idempotency keys every `interval` until `stop`.
pub async fn purge_expired(
    store: Store,
    retention: Duration,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let before = crate::clock::now() - retention.as_secs() as i64;
        let result = async {
            let mut conn = store.acquire().await?;
            store::purge(&mut conn, before).await
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idempotency keys deleted"),
            Err(e) => tracing::warn!(error = %crate::store::describe_error(&e), "idempotency purge failed"),
        }
    }
}
