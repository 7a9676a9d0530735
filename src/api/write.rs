//! Every write runs as one transaction, idempotent when the client sends an `Idempotency-Key`
//! (see [`idempotency`](super::idempotency)). A handler takes a [`Write`] (the caller, the
//! request id, the key, the body), checks its input, and hands [`Write::run`] the operation;
//! the operation answers with a [`Done`], which says what the mechanism must know about it.
//!
//! Requests that fail validation never start a transaction, so nothing is stored for them. An
//! operation that refuses (see `operation::Error::is_refusal`) has written nothing, so its
//! problem is committed and stored like a success; a failure rolls back and is never stored.
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::Response;
use http::{Method, StatusCode};
use serde::Serialize;
use sqlx::AnyConnection;

use super::extract::RequestId;
use super::idempotency::{self, request_hash, respond};
use super::input::JsonBody;
use super::problem::{self, Problem};
use super::state::AppState;
use crate::auth::Principal;
use crate::billing::group_commit::GroupCommit;
use crate::operation::{self, Ctx};
use crate::store::Store;
use crate::telemetry::metrics;

/// A write request, taken apart: who asks (401 first), under which id, with which key, for
/// which route, with which body.
pub struct Write {
    state: AppState,
    pub principal: Principal,
    request_id: RequestId,
    key: Result<Option<String>, Problem>,
    /// What the key is bound to besides the body: the method and the path.
    fingerprint: String,
    pub body: JsonBody,
}

impl FromRequest<AppState> for Write {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Problem> {
        let (mut parts, body) = req.into_parts();
        let principal = Principal::from_request_parts(&mut parts, state).await?;
        let request_id = RequestId::from_request_parts(&mut parts, state).await?;
        // A malformed key is reported when the write begins, after the input is checked.
        let key = idempotency::key(&parts.headers);
        let path = parts.uri.path();
        let fingerprint = if parts.method == Method::POST {
            path.to_owned()
        } else {
            format!("{} {path}", parts.method)
        };
        let body = JsonBody::from_request(Request::from_parts(parts, body), state).await?;
        Ok(Write {
            state: state.clone(),
            principal,
            request_id,
            key,
            fingerprint,
            body,
        })
    }
}

/// What an operation answers, and what the mechanism needs to know about the answer.
pub struct Done<T> {
    status: StatusCode,
    value: T,
    /// The answer a replay gives, when it must differ from the first (a secret is shown once).
    replay: Option<T>,
    /// The business counters this write advances once committed, and by how much.
    counters: Vec<(&'static str, u64)>,
}

impl<T> Done<T> {
    pub fn created(value: T) -> Self {
        Done::new(StatusCode::CREATED, value)
    }

    pub fn ok(value: T) -> Self {
        Done::new(StatusCode::OK, value)
    }

    fn new(status: StatusCode, value: T) -> Self {
        Done {
            status,
            value,
            replay: None,
            counters: Vec::new(),
        }
    }

    /// Money movements are counted (never their amounts) for dashboards and alerts.
    pub fn counting(self, counter: &'static str) -> Self {
        self.counting_by(counter, 1)
    }

    /// Advances `counter` by `n` once committed (a batch counts its items).
    pub fn counting_by(mut self, counter: &'static str, n: u64) -> Self {
        self.counters.push((counter, n));
        self
    }

    /// The answer holds what must not be stored (a signing secret, shown once): a replay
    /// answers `without(&value)` instead.
    pub fn replayed_as(mut self, without: impl FnOnce(&T) -> T) -> Self {
        self.replay = Some(without(&self.value));
        self
    }
}

impl Write {
    /// Runs `op` in a write transaction and answers with what it returns, or with the stored
    /// answer of an earlier identical request.
    pub async fn run<T: Serialize>(
        self,
        op: impl AsyncFnOnce(&mut AnyConnection, &Ctx) -> operation::Result<Done<T>>,
    ) -> Result<Response, Problem> {
        let key = self.key?;
        let ctx = Ctx::new(
            self.state.store.backend(),
            self.principal.tenant,
            self.principal.actor,
            self.request_id.0.to_string(),
            crate::clock::now(),
        );
        let registry = &self.state.idempotency;
        let _claim = key.as_deref().map(|k| registry.claim(&ctx.tenant, k)).transpose()?;
        let mut tx = self.state.store.begin_write().await?;
        let key = match key {
            None => None,
            Some(key) => {
                let hash = request_hash(&self.fingerprint, &self.body.0);
                if let Some(replay) = idempotency::look_up(&mut tx, &ctx, registry, &key, &hash).await? {
                    return Ok(replay);
                }
                Some((key, hash))
            }
        };

        let (status, body, stored, content_type, counters) = match op(&mut tx, &ctx).await {
            Ok(done) => {
                let body = serde_json::to_vec(&done.value).map_err(|_| Problem::internal())?;
                let stored = match &done.replay {
                    Some(replay) => Some(serde_json::to_vec(replay).map_err(|_| Problem::internal())?),
                    None => None,
                };
                (done.status, body, stored, "application/json", done.counters)
            }
            Err(refusal) if refusal.is_refusal() => {
                let problem = Problem::from(refusal);
                let body = problem.to_json(&ctx.request_id);
                (problem.status, body, None, problem::CONTENT_TYPE, Vec::new())
            }
            // Dropping the transaction rolls the failure back.
            Err(failure) => return Err(Problem::from(failure)),
        };
        if let Some((key, hash)) = key {
            let stored = String::from_utf8_lossy(stored.as_deref().unwrap_or(&body)).into_owned();
            idempotency::remember(&mut tx, &ctx, &key, hash, status, stored).await?;
        }
        tx.commit().await?;
        ctx.committed();
        if status.is_success() {
            for (counter, n) in counters {
                metrics::add(counter, n);
            }
        }
        Ok(respond(status, body, content_type))
    }

    /// Runs a write of meter events. On PostgreSQL without an `Idempotency-Key`, `copying`
    /// has the group commit write them in transactions of the store's copy pool
    /// ([`ingest_copying`](crate::billing::metering::ingest_copying)); with a key (whose answer
    /// is stored in the write's transaction) or on SQLite, `op` runs in one [`Write::run`].
    pub async fn run_copying<I, T: Serialize>(
        self,
        input: I,
        copying: impl AsyncFnOnce(&GroupCommit, &Store, &Ctx, I) -> operation::Result<Done<T>>,
        op: impl AsyncFnOnce(&mut AnyConnection, &Ctx, I) -> operation::Result<Done<T>>,
    ) -> Result<Response, Problem> {
        let Some(writers) = self
            .state
            .meter_writers
            .as_ref()
            .filter(|_| matches!(self.key, Ok(None)))
        else {
            return self.run(async |conn, ctx| op(conn, ctx, input).await).await;
        };
        let store = &self.state.store;
        let ctx = Ctx::new(
            store.backend(),
            self.principal.tenant,
            self.principal.actor,
            self.request_id.0.to_string(),
            crate::clock::now(),
        );
        let done = copying(writers, store, &ctx, input).await?;
        ctx.committed();
        for (counter, n) in done.counters {
            metrics::add(counter, n);
        }
        let body = serde_json::to_vec(&done.value).map_err(|_| Problem::internal())?;
        Ok(respond(done.status, body, "application/json"))
    }
}
