//! Billing operations: each one runs inside the caller's write transaction, applies the domain
//! rules to what the store holds, and writes its effects (rows, ledger postings, audit).
//!
//! Rule that idempotency relies on: an operation either fails before its first write, or succeeds.
//! So a refused operation leaves its transaction clean and the refusal itself can be stored.
pub mod customers;
pub mod events;
pub mod invoices;
pub mod payments;

use crate::domain::FieldError;
use crate::store::Backend;
use crate::store::audit::{self, Actor};

/// Who is acting, for which tenant, under which request, and when.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub backend: Backend,
    pub tenant: String,
    pub actor: String,
    pub request_id: String,
    pub now: i64,
}

impl Ctx {
    pub(crate) async fn audit(
        &self,
        conn: &mut sqlx::AnyConnection,
        action: &str,
        object_id: &str,
    ) -> std::result::Result<(), sqlx::Error> {
        let who = Actor {
            tenant: &self.tenant,
            actor: &self.actor,
            request_id: &self.request_id,
        };
        audit::record(conn, &who, action, object_id, self.now).await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// The object does not exist for this tenant (or at all: the two are indistinguishable).
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The object's state does not allow this (409).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request does not fit the objects it refers to (422).
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl BillingError {
    pub fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        BillingError::Invalid(vec![FieldError::new(field, code, message)])
    }
}

impl From<crate::domain::invoice::Refusal> for BillingError {
    fn from(r: crate::domain::invoice::Refusal) -> Self {
        BillingError::Conflict {
            code: r.code,
            message: r.message,
        }
    }
}

pub type Result<T> = std::result::Result<T, BillingError>;

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
