//! `[webhooks]`: secrets at rest, the destination policy, timeouts, retries, the breaker and the
//! dispatcher.
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::net::parse_network;
use super::section::{Checks, KeyDoc, Reader, key};
use super::value::{as_humantime, as_humantime_list, redacted_opt};

#[derive(Debug, Clone, Serialize)]
pub struct WebhookConfig {
    #[serde(serialize_with = "redacted_opt")]
    pub encryption_key: Option<SecretString>,
    #[serde(serialize_with = "redacted_opt")]
    pub previous_encryption_key: Option<SecretString>,
    pub allow_http: bool,
    pub allowed_networks: Vec<String>,
    #[serde(serialize_with = "as_humantime")]
    pub connect_timeout: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub timeout: Duration,
    #[serde(serialize_with = "as_humantime_list")]
    pub retry_schedule: Vec<Duration>,
    pub breaker_threshold: u32,
    #[serde(serialize_with = "as_humantime")]
    pub breaker_cooldown: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub disable_after: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub secret_overlap: Duration,
    pub dispatcher: bool,
    #[serde(serialize_with = "as_humantime")]
    pub poll_interval: Duration,
    pub batch_size: usize,
    pub concurrency: usize,
    #[serde(serialize_with = "as_humantime")]
    pub lease: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            encryption_key: None,
            previous_encryption_key: None,
            allow_http: false,
            allowed_networks: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            // About three days in all, like the major providers.
            retry_schedule: [5, 300, 1800, 7200, 18000, 36000, 86400, 86400]
                .map(Duration::from_secs)
                .to_vec(),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(60),
            disable_after: Duration::from_secs(5 * 86400),
            secret_overlap: Duration::from_secs(86400),
            dispatcher: true,
            poll_interval: Duration::from_secs(1),
            batch_size: 32,
            concurrency: 16,
            lease: Duration::from_secs(60),
        }
    }
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "webhooks.encryption_key",
        secret: true,
        default_text: None,
        description: "Key that encrypts webhook signing secrets at rest: 32 random bytes in base64 (`openssl rand -base64 32`). Webhook endpoints cannot be created without it.",
    },
    KeyDoc {
        key: "webhooks.previous_encryption_key",
        secret: true,
        default_text: None,
        description: "The key being rotated out: secrets encrypted with it can still be read (see docs/operations.md).",
    },
    key(
        "webhooks.allow_http",
        "Accept `http://` endpoint URLs (development only); otherwise `https://` is required.",
    ),
    key(
        "webhooks.allowed_networks",
        "Networks webhooks may reach even though they are private, loopback or link-local (e.g. `10.1.0.0/16`). Empty: only public addresses.",
    ),
    key("webhooks.connect_timeout", "Longest wait to connect to an endpoint."),
    key(
        "webhooks.timeout",
        "Longest a delivery attempt may take; a slower endpoint counts as failed.",
    ),
    key(
        "webhooks.retry_schedule",
        "Delays before each retry of a failed delivery (with ±20% jitter); after the last one the delivery is marked failed.",
    ),
    key(
        "webhooks.breaker_threshold",
        "Consecutive failures that open an endpoint's circuit breaker.",
    ),
    key(
        "webhooks.breaker_cooldown",
        "How long an open breaker defers the endpoint's deliveries before one probe is sent.",
    ),
    key(
        "webhooks.disable_after",
        "An endpoint failing without a success for this long is disabled (event `webhook_endpoint.disabled`).",
    ),
    key(
        "webhooks.secret_overlap",
        "After `rotate_secret`, how long the previous secret keeps signing next to the new one.",
    ),
    key(
        "webhooks.dispatcher",
        "Run the delivery dispatcher in this process (any number of replicas may). Turn it off where instances are frozen between requests (serverless) and run `billing-api webhooks dispatch --until-idle` on a schedule, or `billing-api webhooks dispatch` as a worker of its own.",
    ),
    key(
        "webhooks.poll_interval",
        "How often the dispatcher looks for due deliveries when nothing wakes it.",
    ),
    key("webhooks.batch_size", "Deliveries claimed at once."),
    key("webhooks.concurrency", "Delivery attempts in flight at once."),
    key(
        "webhooks.lease",
        "How long a claimed delivery is reserved for its dispatcher; a crashed dispatcher's claims come back after it.",
    ),
];

/// A 32-byte key given in base64.
pub fn parse_key(text: &str) -> Option<[u8; 32]> {
    STANDARD.decode(text.trim()).ok()?.try_into().ok()
}

impl WebhookConfig {
    /// The key secrets are encrypted under, and the one being rotated out, when configured.
    pub fn encryption_keys(&self) -> Option<([u8; 32], Option<[u8; 32]>)> {
        let key = |k: &Option<SecretString>| k.as_ref().and_then(|k| parse_key(k.expose_secret()));
        Some((key(&self.encryption_key)?, key(&self.previous_encryption_key)))
    }

    pub(super) fn load(r: &mut Reader<'_>) -> Self {
        let d = Self::default();
        // An empty key means "not set", so a template can leave it blank.
        let mut key = |name: &str| r.secret(name).filter(|k| !k.expose_secret().is_empty());
        WebhookConfig {
            encryption_key: key("encryption_key"),
            previous_encryption_key: key("previous_encryption_key"),
            allow_http: r.get("allow_http", d.allow_http),
            allowed_networks: r.get("allowed_networks", d.allowed_networks),
            connect_timeout: r.get("connect_timeout", d.connect_timeout),
            timeout: r.get("timeout", d.timeout),
            retry_schedule: r.get("retry_schedule", d.retry_schedule),
            breaker_threshold: r.get("breaker_threshold", d.breaker_threshold),
            breaker_cooldown: r.get("breaker_cooldown", d.breaker_cooldown),
            disable_after: r.get("disable_after", d.disable_after),
            secret_overlap: r.get("secret_overlap", d.secret_overlap),
            dispatcher: r.get("dispatcher", d.dispatcher),
            poll_interval: r.get("poll_interval", d.poll_interval),
            batch_size: r.get("batch_size", d.batch_size),
            concurrency: r.get("concurrency", d.concurrency),
            lease: r.get("lease", d.lease),
        }
    }

    pub(super) fn validate(&self, c: &mut Checks<'_>) {
        for (name, value) in [
            ("encryption_key", &self.encryption_key),
            ("previous_encryption_key", &self.previous_encryption_key),
        ] {
            if let Some(value) = value {
                c.require(
                    parse_key(value.expose_secret()).is_some(),
                    name,
                    "must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)",
                );
            }
        }
        for network in &self.allowed_networks {
            c.require(
                parse_network(network).is_some(),
                "allowed_networks",
                format!("{network:?} is not an IP address or network such as 127.0.0.1/32"),
            );
        }
        c.require(
            !self.retry_schedule.is_empty(),
            "retry_schedule",
            "needs at least one delay",
        );
        c.require(self.breaker_threshold >= 1, "breaker_threshold", "must be at least 1");
        c.positive("timeout", !self.timeout.is_zero());
        c.positive("connect_timeout", !self.connect_timeout.is_zero());
        c.positive("poll_interval", !self.poll_interval.is_zero());
        c.positive("batch_size", self.batch_size > 0);
        c.positive("concurrency", self.concurrency > 0);
        c.require(
            self.lease > self.timeout,
            "lease",
            format!(
                "must be longer than webhooks.timeout ({}), or a slow attempt could be sent twice",
                humantime::format_duration(self.timeout)
            ),
        );
    }
}
