//! What handlers share. The router clones it for every request, so it is one `Arc`.
use std::sync::Arc;
use std::time::Duration;

use sqlx::pool::PoolConnection;

use super::idempotency::Registry;
use super::problem::Problem;
use crate::auth::Authenticator;
use crate::billing::group_commit::GroupCommit;
use crate::ratelimit::Limiter;
use crate::shutdown::Shutdown;
use crate::store::Store;
use crate::webhooks::Webhooks;

#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

#[derive(Debug)]
pub struct Shared {
    pub store: Store,
    /// Writes batches of meter events on PostgreSQL (`None` when the store does not copy).
    pub meter_writers: Option<GroupCommit>,
    pub shutdown: Shutdown,
    pub health_timeout: Duration,
    /// `billing.past_due_after` in seconds (a test clock's advance moves standings with it).
    pub past_due_after: i64,
    /// `billing.meter_event_grace` in seconds: how old a meter event may be.
    pub meter_event_grace: i64,
    pub auth: Authenticator,
    pub idempotency: Registry,
    pub webhooks: Arc<Webhooks>,
    /// `None` when `rate_limit.enabled` is off.
    pub rate_limit: Option<Arc<Limiter>>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }

    /// A pooled connection for reads (a fast 503 when none frees up in time).
    pub async fn conn(&self) -> Result<PoolConnection<sqlx::Any>, Problem> {
        Ok(self.store.acquire().await?)
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
