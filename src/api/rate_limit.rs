//! Rate limits on the `/v1` routes: each request draws on its tenant's budget for reads (`GET`)
//! or for writes (`POST`, `DELETE`); a request whose credential fails draws on its client
//! address's budget instead (guessing keys is slowed down without touching anyone's budget).
//! Every answer says where its budget stands, in the fields of the IETF httpapi draft
//! "RateLimit header fields for HTTP": `RateLimit-Policy: "read";q=200;w=2` (the budget: 200 at
//! once, whole again within 2 s) and `RateLimit: "read";r=57;t=1` (57 left, whole again in 1 s).
//! A request over budget is answered 429 `rate_limited` with `Retry-After`, and never reaches
//! its handler.
//!
//! The credential is checked here, once: the handler's [`Principal`] comes from the request's
//! extensions.
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, Method, StatusCode};

use super::extract::{client_addr, refused};
use super::problem::Problem;
use super::state::AppState;
use crate::ratelimit::{Class, Decision, Limiter};

pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

pub async fn enforce(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let Some(limiter) = state.rate_limit.as_deref() else {
        return next.run(req).await;
    };
    let principal = state.auth.authenticate(req.headers()).await;
    let (class, key) = match &principal {
        Ok(p) if matches!(*req.method(), Method::GET | Method::HEAD) => (Class::Read, p.tenant.clone()),
        Ok(p) => (Class::Write, p.tenant.clone()),
        Err(_) => {
            let client = client_addr();
            (
                Class::Unauthenticated,
                client.map_or_else(|| "unknown".to_owned(), |ip: IpAddr| ip.to_string()),
            )
        }
    };
    let decision = limiter.check(class, &key).await;
    let mut response = if !decision.allowed {
        let wait = whole_seconds(decision.retry_after).max(1);
        Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too Many Requests",
            format!("the {} budget is spent: retry in {wait} s", class.name()),
        )
        .retry_after(wait)
        .into_response()
    } else {
        match principal {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
                next.run(req).await
            }
            Err(failure) => refused(failure).into_response(),
        }
    };
    set_headers(&mut response, limiter, class, &decision);
    response
}

fn set_headers(response: &mut Response, limiter: &Limiter, class: Class, decision: &Decision) {
    let budget = limiter.budget(class);
    let policy = format!(
        "\"{}\";q={};w={}",
        class.name(),
        budget.burst,
        whole_seconds(budget.window()).max(1)
    );
    let state = format!(
        "\"{}\";r={};t={}",
        class.name(),
        decision.remaining,
        whole_seconds(decision.reset)
    );
    let headers = response.headers_mut();
    for (name, value) in [(&RATELIMIT_POLICY, policy), (&RATELIMIT, state)] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name.clone(), value);
        }
    }
}

/// Seconds, rounded up: a client that waits this long is never early.
fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}
