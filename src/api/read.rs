//! A read: the caller (401 first), checked for a scope, and one call to the layer below on a
//! pooled connection, answered as JSON.
use axum::Json;
use axum::extract::FromRequestParts;
use http::request::Parts;
use sqlx::AnyConnection;

use super::list::List;
use super::problem::Problem;
use super::state::AppState;
use crate::auth::Principal;
use crate::operation;
use crate::store::page::Page;

pub struct Read {
    state: AppState,
    principal: Principal,
}

impl FromRequestParts<AppState> for Read {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        Ok(Read {
            principal: Principal::from_request_parts(parts, state).await?,
            state: state.clone(),
        })
    }
}

impl Read {
    /// 403 unless the credential carries `scope`.
    pub fn require(&self, scope: &'static str) -> Result<(), Problem> {
        Ok(self.principal.require(scope)?)
    }

    /// Runs `op` for the caller's tenant and answers what it found.
    pub async fn answer<T>(
        &self,
        op: impl AsyncFnOnce(&mut AnyConnection, &str) -> operation::Result<T>,
    ) -> Result<Json<T>, Problem> {
        let mut conn = self.state.conn().await?;
        Ok(Json(op(&mut conn, &self.principal.tenant).await?))
    }

    /// Runs `op` for the caller's tenant and answers the page it found as a list.
    pub async fn list<T>(
        &self,
        op: impl AsyncFnOnce(&mut AnyConnection, &str) -> operation::Result<Page<T>>,
    ) -> Result<Json<List<T>>, Problem> {
        let mut conn = self.state.conn().await?;
        Ok(Json(op(&mut conn, &self.principal.tenant).await?.into()))
    }
}
