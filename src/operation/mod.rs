//! What every operation on a tenant's data shares, billing and webhooks alike: who acts, for
//! which tenant, under which request and when ([`Ctx`]); how an operation ends when it does not
//! succeed ([`Error`]); the audit trail; and the event outbox ([`Ctx::emit`]).
//!
//! Operations run inside the caller's write transaction. Rule that idempotency relies on: an
//! operation either fails before its first write (a *refusal*: [`Error::is_refusal`]), or
//! succeeds, or fails on the database. A refusal leaves its transaction clean, so the refusal
//! itself can be stored and replayed; a database failure rolls everything back.
mod error;
mod events;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use sqlx::AnyConnection;

pub use error::{Error, Result};
pub use events::{deliveries_queued, emit_for};

use crate::store::Backend;
use crate::store::audit::{self, Actor};

/// Who is acting, for which tenant, under which request, and when.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub backend: Backend,
    pub tenant: String,
    /// `key_…` for an API key, `jwt:<subject>` for a token.
    pub actor: String,
    pub request_id: String,
    /// The operation's time: the time of its objects (a test clock's for the objects on one).
    pub now: i64,
    /// The real time of the operation, whatever clock its objects are on: when its events and
    /// audit records happened, and when their webhooks are first due.
    wall: i64,
    /// Whether this operation queued webhook deliveries (told to the dispatcher on commit);
    /// shared with the contexts made from it by [`Ctx::at`].
    queued: Arc<AtomicBool>,
}

impl Ctx {
    pub fn new(backend: Backend, tenant: String, actor: String, request_id: String, now: i64) -> Self {
        Ctx {
            backend,
            tenant,
            actor,
            request_id,
            now,
            wall: now,
            queued: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The same operation at another instant: a test clock's time, for the objects on it. Its
    /// events and audit records keep the real time (a clock ahead of it must not delay webhooks).
    pub fn at(&self, now: i64) -> Ctx {
        Ctx { now, ..self.clone() }
    }

    /// Records who did `action` to `object_id`, in the operation's transaction.
    pub async fn audit(&self, conn: &mut AnyConnection, action: &str, object_id: &str) -> Result<()> {
        let who = Actor {
            tenant: &self.tenant,
            actor: &self.actor,
            request_id: &self.request_id,
        };
        Ok(audit::record(conn, &who, action, object_id, self.wall).await?)
    }

    /// Records the event `kind` with a snapshot of `object` (as the API shows it), and queues its
    /// deliveries, in the operation's transaction.
    pub async fn emit<T: Serialize>(&self, conn: &mut AnyConnection, kind: &str, object: &T) -> Result<()> {
        if emit_for(conn, &self.tenant, self.wall, kind, object).await? > 0 {
            self.queued_deliveries();
        }
        Ok(())
    }

    /// Notes that this operation queued webhook deliveries (an event does so itself).
    pub fn queued_deliveries(&self) {
        self.queued.store(true, Ordering::Relaxed);
    }

    /// To be called once the operation's transaction has committed: what it queued is visible
    /// now, and the dispatcher is told so rather than finding it at its next poll.
    pub fn committed(&self) {
        if self.queued.load(Ordering::Relaxed) {
            events::announce();
        }
    }
}
