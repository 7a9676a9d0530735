//! Every POST runs as one write transaction, idempotent when the client sends an
//! `Idempotency-Key` (IETF draft semantics, scoped per tenant, Stripe-style replay):
//!
//! - the first request's status and body are stored in the same transaction as its effects;
//! - a retry with the same key and the same request gets them back with `Idempotent-Replayed: true`;
//! - the same key with a different request is 422 `idempotency_key_reused`;
//! - a retry while the first is still running is 409 `idempotency_key_in_use` (an in-process
//!   registry, and on PostgreSQL a transaction-scoped advisory lock, which covers every replica);
//! - keys are kept for `idempotency.retention` and purged in the background.
//!
//! Requests that fail validation never start a transaction, so nothing is stored for them.
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{Any, AnyConnection, Transaction};

use super::input::JsonBody;
use crate::auth::Principal;
use crate::billing::{BillingError, Ctx};
use crate::http::AppState;
use crate::http::problem::{self, Problem};
use crate::store::idempotency::{self, StoredResponse};
use crate::telemetry::metrics;

pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
const MAX_KEY_LEN: usize = 255;

/// Keys being processed by this process.
#[derive(Debug)]
pub struct Registry {
    pub retention: Duration,
    in_flight: Mutex<HashSet<(String, String)>>,
}

impl Registry {
    pub fn new(retention: Duration) -> Self {
        Registry {
            retention,
            in_flight: Mutex::new(HashSet::new()),
        }
    }
}

/// Releases a key from the registry when the request is done, however it ends.
struct InFlight {
    registry: Arc<Registry>,
    entry: (String, String),
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut set) = self.registry.in_flight.lock() {
            set.remove(&self.entry);
        }
    }
}

pub enum Begin {
    Replay(Response),
    Fresh(Write),
}

pub struct Write {
    tx: Transaction<'static, Any>,
    ctx: Ctx,
    key: Option<(String, String)>,
    /// The business counter this operation advances once committed.
    counter: Option<&'static str>,
    _in_flight: Option<InFlight>,
}

/// Money movements are counted (never their amounts) for dashboards and alerts.
fn business_counter(path: &str) -> Option<&'static str> {
    if path == "/v1/payments" {
        Some(metrics::PAYMENTS_RECORDED)
    } else if path == "/v1/refunds" {
        Some(metrics::REFUNDS_RECORDED)
    } else if path.starts_with("/v1/invoices/") && path.ends_with("/finalize") {
        Some(metrics::INVOICES_FINALIZED)
    } else {
        None
    }
}

fn conflict(code: &'static str, title: &'static str, detail: &str) -> Problem {
    Problem::new(StatusCode::CONFLICT, code, title, detail)
}

impl Write {
    /// Opens the transaction, or answers from the stored result of an earlier identical request.
    pub async fn begin(
        state: &AppState,
        principal: &Principal,
        request_id: &str,
        headers: &HeaderMap,
        path: &str,
        body: &JsonBody,
    ) -> Result<Begin, Problem> {
        let key = match headers.get(&IDEMPOTENCY_KEY) {
            None => None,
            Some(value) => {
                let key = value
                    .to_str()
                    .ok()
                    .filter(|k| !k.is_empty() && k.len() <= MAX_KEY_LEN)
                    .ok_or_else(|| {
                        Problem::new(
                            StatusCode::BAD_REQUEST,
                            "invalid_idempotency_key",
                            "Invalid Idempotency-Key",
                            format!("an Idempotency-Key is 1 to {MAX_KEY_LEN} visible ASCII characters"),
                        )
                    })?;
                Some(key.to_owned())
            }
        };
        let ctx = Ctx {
            backend: state.store.backend(),
            tenant: principal.tenant.clone(),
            actor: principal.actor.clone(),
            request_id: request_id.to_owned(),
            now: crate::billing::now(),
        };
        let in_flight = match &key {
            Some(key) => {
                let entry = (principal.tenant.clone(), key.clone());
                let inserted = state
                    .idempotency
                    .in_flight
                    .lock()
                    .map(|mut set| set.insert(entry.clone()))
                    .unwrap_or(false);
                if !inserted {
                    return Err(in_use());
                }
                Some(InFlight {
                    registry: state.idempotency.clone(),
                    entry,
                })
            }
            None => None,
        };
        let mut tx = state.store.begin(state.store.backend().begin_write_sql()).await?;
        let Some(key) = key else {
            return Ok(Begin::Fresh(Write {
                tx,
                ctx,
                key: None,
                counter: business_counter(path),
                _in_flight: None,
            }));
        };
        if !idempotency::try_lock(&mut tx, ctx.backend, &ctx.tenant, &key).await? {
            return Err(in_use());
        }
        let hash = request_hash(path, body);
        let not_before = ctx.now - state.idempotency.retention.as_secs() as i64;
        if let Some(stored) = idempotency::find(&mut tx, &ctx.tenant, &key, not_before).await? {
            if stored.request_hash != hash {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "Idempotency Key Reused",
                    "this Idempotency-Key was used with a different request",
                ));
            }
            metrics::count(metrics::IDEMPOTENT_REPLAYS);
            return Ok(Begin::Replay(replay(stored)));
        }
        Ok(Begin::Fresh(Write {
            tx,
            ctx,
            key: Some((key, hash)),
            counter: business_counter(path),
            _in_flight: in_flight,
        }))
    }

    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// Commits the operation's effects (and, with a key, its response) and answers.
    pub async fn finish<T: Serialize>(mut self, result: Result<(StatusCode, T), BillingError>) -> Response {
        let (status, body, content_type) = match result {
            Ok((status, value)) => match serde_json::to_vec(&value) {
                Ok(body) => (status, body, "application/json"),
                Err(_) => return Problem::internal().into_response(),
            },
            Err(BillingError::Db(e)) => return Problem::from(e).into_response(),
            Err(refusal) => {
                // Refused before writing anything (see `billing`): storing the refusal is safe.
                let problem = Problem::from(refusal);
                (
                    problem.status,
                    problem.to_json(&self.ctx.request_id),
                    problem::CONTENT_TYPE,
                )
            }
        };
        if let Some((key, request_hash)) = &self.key {
            let stored = StoredResponse {
                request_hash: request_hash.clone(),
                status_code: status.as_u16(),
                body: without_secret(&body),
            };
            if let Err(e) = idempotency::store(&mut self.tx, &self.ctx.tenant, key, &stored, self.ctx.now).await {
                return Problem::from(e).into_response();
            }
        }
        if let Err(e) = self.tx.commit().await {
            return Problem::from(e).into_response();
        }
        if let Some(counter) = self.counter.filter(|_| status.is_success()) {
            metrics::count(counter);
        }
        // Deliveries this write queued go out now rather than at the dispatcher's next poll.
        crate::webhooks::wake();
        respond(status, body, content_type)
    }
}

/// The response as stored for replays. A webhook signing secret is shown once and is kept only
/// encrypted: a replay answers the endpoint without it (rotate the secret if it was lost).
fn without_secret(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if !text.contains("\"secret\"") {
        return text.into_owned();
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.remove("secret");
            serde_json::Value::Object(object).to_string()
        }
        _ => text.into_owned(),
    }
}

fn in_use() -> Problem {
    conflict(
        "idempotency_key_in_use",
        "Idempotency Key In Use",
        "a request with this Idempotency-Key is still being processed; retry later",
    )
}

/// Method and path are fixed by the route; the body is hashed in canonical form (keys sorted),
/// so a client that re-serializes its request still matches.
fn request_hash(path: &str, body: &JsonBody) -> String {
    let canonical = serde_json::to_vec(&body.0).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(&canonical);
    hex::encode(hasher.finalize())
}

fn respond(status: StatusCode, body: Vec<u8>, content_type: &'static str) -> Response {
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

impl From<BillingError> for Problem {
    fn from(e: BillingError) -> Self {
        match e {
            BillingError::NotFound(what) => Problem::not_found(format!("no such {what}")),
            BillingError::Conflict { code, message } => Problem::new(StatusCode::CONFLICT, code, "Conflict", message),
            BillingError::Invalid(errors) => Problem::validation(errors),
            BillingError::Db(e) => Problem::from(e),
        }
    }
}

/// Deletes expired idempotency keys every `purge_interval` until shutdown.
pub async fn purge_expired(
    state: AppState,
    retention: Duration,
    interval: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let before = crate::billing::now() - retention.as_secs() as i64;
        let result = async {
            let mut conn = state.store.acquire().await?;
            idempotency::purge(&mut conn, before).await
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idempotency keys deleted"),
            Err(e) => tracing::warn!(error = %crate::store::describe_error(&e), "idempotency purge failed"),
        }
    }
}
