//! `[rate_limit]`: request budgets per tenant (reads and writes apart) and per client address
//! for requests that fail authentication, kept in this process or shared through Redis.
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::section::{Checks, KeyDoc, Reader, key};
use super::value::{as_humantime, redacted_opt};

/// A budget: `per_second` requests a second on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub per_second: u32,
    pub burst: u32,
}

impl Budget {
    /// What one request costs: the time the budget takes to earn it back.
    pub fn interval(self) -> Duration {
        Duration::from_micros(1_000_000 / u64::from(self.per_second.max(1)))
    }

    /// How long an empty budget takes to be whole again (the policy's window).
    pub fn window(self) -> Duration {
        self.interval() * self.burst
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RateLimitConfig {
    pub enabled: bool,
    pub read_per_second: u32,
    pub read_burst: u32,
    pub write_per_second: u32,
    pub write_burst: u32,
    pub unauthenticated_per_second: u32,
    pub unauthenticated_burst: u32,
    /// Shared budgets across replicas; local ones when unset (or while Redis is unreachable).
    #[serde(serialize_with = "redacted_opt")]
    pub redis_url: Option<SecretString>,
    #[serde(serialize_with = "as_humantime")]
    pub redis_timeout: Duration,
    pub redis_key_prefix: String,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        // Stripe's live-mode default is 100 requests a second per account, reads and writes alike;
        // writes here are the costlier half (a durable transaction each), so they get half.
        RateLimitConfig {
            enabled: true,
            read_per_second: 100,
            read_burst: 200,
            write_per_second: 50,
            write_burst: 100,
            unauthenticated_per_second: 10,
            unauthenticated_burst: 20,
            redis_url: None,
            redis_timeout: Duration::from_millis(50),
            redis_key_prefix: "billing-api:rl:".to_owned(),
        }
    }
}

pub const KEYS: &[KeyDoc] = &[
    key(
        "rate_limit.enabled",
        "Limit the `/v1` requests of each tenant (and of each client address whose credential fails). Probes, `/` and `/openapi.json` are never limited.",
    ),
    key(
        "rate_limit.read_per_second",
        "A tenant's `GET` requests a second, on average (all its API keys and tokens together).",
    ),
    key(
        "rate_limit.read_burst",
        "A tenant's `GET` requests at once, after a quiet spell.",
    ),
    key(
        "rate_limit.write_per_second",
        "A tenant's `POST` and `DELETE` requests a second, on average.",
    ),
    key(
        "rate_limit.write_burst",
        "A tenant's `POST` and `DELETE` requests at once.",
    ),
    key(
        "rate_limit.unauthenticated_per_second",
        "Requests a second from one client address whose credential is missing or refused (slows down guessing).",
    ),
    key(
        "rate_limit.unauthenticated_burst",
        "Such requests at once from one client address.",
    ),
    KeyDoc {
        key: "rate_limit.redis_url",
        secret: true,
        default_text: Some("unset: budgets per instance"),
        description: "`redis://[:PASSWORD@]HOST[:PORT][/DB]`: budgets shared by every instance. While Redis does not answer, each instance falls back to its own budgets (so the limits are per instance for that time).",
    },
    key(
        "rate_limit.redis_timeout",
        "How long a request waits for Redis before the instance uses its own budget (and stops asking Redis for a second).",
    ),
    key(
        "rate_limit.redis_key_prefix",
        "Prefix of the Redis keys (one per tenant and class, expiring when the budget is full again).",
    ),
];

impl RateLimitConfig {
    pub(super) fn load(r: &mut Reader<'_>) -> Self {
        let d = Self::default();
        RateLimitConfig {
            enabled: r.get("enabled", d.enabled),
            read_per_second: r.get("read_per_second", d.read_per_second),
            read_burst: r.get("read_burst", d.read_burst),
            write_per_second: r.get("write_per_second", d.write_per_second),
            write_burst: r.get("write_burst", d.write_burst),
            unauthenticated_per_second: r.get("unauthenticated_per_second", d.unauthenticated_per_second),
            unauthenticated_burst: r.get("unauthenticated_burst", d.unauthenticated_burst),
            redis_url: r.secret("redis_url"),
            redis_timeout: r.get("redis_timeout", d.redis_timeout),
            redis_key_prefix: r.get("redis_key_prefix", d.redis_key_prefix),
        }
    }

    pub(super) fn validate(&self, c: &mut Checks<'_>) {
        for (name, value) in [
            ("read_per_second", self.read_per_second),
            ("read_burst", self.read_burst),
            ("write_per_second", self.write_per_second),
            ("write_burst", self.write_burst),
            ("unauthenticated_per_second", self.unauthenticated_per_second),
            ("unauthenticated_burst", self.unauthenticated_burst),
        ] {
            c.positive(name, value > 0);
        }
        c.positive("redis_timeout", !self.redis_timeout.is_zero());
        if let Some(url) = &self.redis_url {
            let url = url.expose_secret();
            c.require(
                url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://"),
                "redis_url",
                "must be a redis://, rediss:// or unix:// URL",
            );
        }
    }

    pub fn read(&self) -> Budget {
        Budget {
            per_second: self.read_per_second,
            burst: self.read_burst,
        }
    }

    pub fn write(&self) -> Budget {
        Budget {
            per_second: self.write_per_second,
            burst: self.write_burst,
        }
    }

    pub fn unauthenticated(&self) -> Budget {
        Budget {
            per_second: self.unauthenticated_per_second,
            burst: self.unauthenticated_burst,
        }
    }
}
