//! Request budgets: per tenant for reads and for writes, per client address for requests whose
//! credential fails. Each budget is a GCRA ("generic cell rate algorithm", a leaky bucket kept as
//! one timestamp per key): `per_second` requests a second on average, `burst` at once.
//!
//! Budgets live in this process ([`local`], the governor crate) or, with `rate_limit.redis_url`,
//! in Redis ([`shared`]), where every instance draws on the same ones. When Redis fails or is
//! slower than `rate_limit.redis_timeout`, the instance answers from its own budgets and leaves
//! Redis alone for a second: a Redis outage loosens the limits (each instance enforces them on
//! its own), it never fails or slows requests.
mod local;
mod shared;

use std::time::Duration;

use crate::config::{Budget, RateLimitConfig};
use crate::telemetry::metrics;

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Read,
    Write,
    /// A request whose credential is missing or refused, by client address.
    Unauthenticated,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Read, Class::Write, Class::Unauthenticated];

    /// The policy's name in the `RateLimit-Policy` header and the metrics' `class` label.
    pub fn name(self) -> &'static str {
        match self {
            Class::Read => "read",
            Class::Write => "write",
            Class::Unauthenticated => "unauthenticated",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The answer for one request: whether it may go on, and what the headers say about its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Requests that could still be made at once.
    pub remaining: u32,
    /// Seconds until the budget is whole again.
    pub reset: Duration,
    /// When refused: how long until one more request is allowed.
    pub retry_after: Duration,
}

/// The budgets of every tenant and client address, for one instance.
pub struct Limiter {
    budgets: [Budget; 3],
    local: local::Budgets,
    shared: Option<shared::Budgets>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("budgets", &self.budgets)
            .field("shared", &self.shared.is_some())
            .finish()
    }
}

impl Limiter {
    /// `None` when rate limiting is off. Connects to Redis in the background (an unreachable one
    /// delays nothing: the local budgets apply until it answers).
    pub fn new(config: &RateLimitConfig) -> anyhow::Result<Option<Limiter>> {
        if !config.enabled {
            return Ok(None);
        }
        let budgets = [config.read(), config.write(), config.unauthenticated()];
        let shared = match &config.redis_url {
            Some(url) => Some(shared::Budgets::connect(
                url,
                config.redis_timeout,
                &config.redis_key_prefix,
            )?),
            None => None,
        };
        Ok(Some(Limiter {
            budgets,
            local: local::Budgets::new(budgets),
            shared,
        }))
    }

    pub fn budget(&self, class: Class) -> Budget {
        self.budgets[class.index()]
    }

    /// Draws one request from `key`'s budget of `class`.
    pub async fn check(&self, class: Class, key: &str) -> Decision {
        let budget = self.budget(class);
        if let Some(shared) = &self.shared {
            match shared.check(class, key, budget).await {
                Some(decision) => {
                    metrics::rate_limit_store(true);
                    return self.counted(class, decision);
                }
                None => metrics::rate_limit_store(false),
            }
        }
        self.counted(class, self.local.check(class, key))
    }

    fn counted(&self, class: Class, decision: Decision) -> Decision {
        if !decision.allowed {
            metrics::rate_limited(class.name());
        }
        decision
    }
}
