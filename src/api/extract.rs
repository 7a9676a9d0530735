//! What handlers take from a request besides its body: the caller, the request id, path ids.
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::request::Parts;

use super::problem::Problem;
use super::state::AppState;
use crate::auth::Principal;
use crate::domain::ids::{self, Kind};
use crate::telemetry::context;

/// The id the request layer gave the request (from the request's telemetry context).
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = Problem;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Problem> {
        Ok(RequestId(
            context::with_current(|r| r.request_id.clone()).unwrap_or_else(|| Arc::from("")),
        ))
    }
}

/// The client's address as the request layer determined it (behind a trusted proxy, the one
/// the proxy reports).
pub fn client_addr() -> Option<IpAddr> {
    context::with_current(|r| r.client).flatten()
}

/// The caller: 401 (with its reason logged and counted) unless the credential is good. The rate
/// limit layer has usually checked it already and left the result in the extensions.
impl FromRequestParts<AppState> for Principal {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        state.auth.authenticate(&parts.headers).await.map_err(refused)
    }
}

/// The answer to a refused credential, logged and counted.
pub fn refused(failure: crate::auth::Failure) -> Problem {
    tracing::info!(reason = failure.reason(), "authentication failed");
    crate::telemetry::metrics::auth_failure(failure.reason());
    Problem::from(failure)
}

/// A path id of the wrong shape names nothing: 404, like a missing object.
pub fn path_id(kind: Kind, id: String) -> Result<String, Problem> {
    if ids::is_valid(kind, &id) {
        Ok(id)
    } else {
        Err(Problem::not_found(format!("no such {}", kind.noun())))
    }
}
