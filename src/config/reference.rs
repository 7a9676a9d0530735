//! The configuration reference: one line per setting. The README's table is generated from it
//! (`billing-api config reference`) and a test keeps the two, and the loader, in step.
use super::{Config, ENV_PREFIX};

pub struct KeyDoc {
    pub key: &'static str,
    /// Secret settings can also be read from a file (`<KEY>_FILE`) and are never printed.
    pub secret: bool,
    /// Shown instead of the built-in default when that needs words.
    pub default_text: Option<&'static str>,
    pub description: &'static str,
}

const fn key(key: &'static str, description: &'static str) -> KeyDoc {
    KeyDoc {
        key,
        secret: false,
        default_text: None,
        description,
    }
}

pub const KEYS: &[KeyDoc] = &[
    key(
        "server.host",
        "IP address the API listens on (`0.0.0.0` or `::` in a container).",
    ),
    key(
        "server.port",
        "TCP port of the API. `PORT` is honoured when this is not set.",
    ),
    key(
        "server.request_timeout",
        "Longest time a request may take before it is answered 408 `request_timeout`.",
    ),
    key(
        "server.body_limit",
        "Largest request body in bytes; larger bodies get 413 `payload_too_large`.",
    ),
    key(
        "server.concurrency_limit",
        "Requests served at once; excess requests are shed with 503 `overloaded` and `Retry-After` (health probes are exempt).",
    ),
    key(
        "server.compression",
        "Compress responses (gzip) for clients that accept it.",
    ),
    key(
        "server.cors_allowed_origins",
        "Origins allowed by CORS, e.g. `https://app.example.com`, or `*`. Empty turns CORS off.",
    ),
    key("server.sensitive_headers", "Headers whose values are redacted in logs."),
    key(
        "server.trusted_proxies",
        "Addresses or networks of reverse proxies (e.g. `10.0.0.0/8`) whose `X-Forwarded-For` names the client in logs. Empty: the peer is the client.",
    ),
    key(
        "admin.host",
        "IP address of the admin listener (`GET /metrics`, probes). Keep it private: bind it where only Prometheus reaches it.",
    ),
    key("admin.port", "TCP port of the admin listener; `0` picks a free one."),
    KeyDoc {
        key: "database.url",
        secret: true,
        default_text: None,
        description: "`sqlite://PATH` (created with its folder if absent) or `postgres://USER:PASSWORD@HOST/DB`.",
    },
    key("database.max_connections", "Most connections the pool opens."),
    key("database.min_connections", "Connections the pool keeps open when idle."),
    key(
        "database.acquire_timeout",
        "Longest wait for a pooled connection; then the request gets 503 `database_unavailable`.",
    ),
    key(
        "database.idle_timeout",
        "Idle connections above `min_connections` are closed after this.",
    ),
    key("database.max_lifetime", "Connections are replaced after this age."),
    key(
        "database.statement_timeout",
        "PostgreSQL `statement_timeout` for every connection (`0s` turns it off; SQLite ignores it).",
    ),
    key(
        "database.busy_timeout",
        "SQLite: how long a write waits for the database lock.",
    ),
    key(
        "database.health_timeout",
        "How long `/health/ready` waits for the database to answer.",
    ),
    KeyDoc {
        key: "database.migrate_on_start",
        secret: false,
        default_text: Some("`true` for SQLite, `false` for PostgreSQL"),
        description: "Apply pending migrations when `serve` starts. Keep it off with several PostgreSQL replicas and run `billing-api migrate run` as a release step.",
    },
    key(
        "auth.jwt_algorithms",
        "Accepted JWT algorithms, e.g. `RS256` or `ES256,EdDSA` (one family). Fixed here, never taken from the token.",
    ),
    key(
        "auth.jwt_public_key_file",
        "PEM public key that verifies JWTs (RSA, EC or Ed25519, matching the algorithms).",
    ),
    KeyDoc {
        key: "auth.jwt_hmac_secret",
        secret: true,
        default_text: None,
        description: "Shared secret (at least 32 bytes) for `HS256`/`HS384`/`HS512` JWTs. Cannot be combined with public keys.",
    },
    key(
        "auth.jwt_jwks_url",
        "JWKS URL of the identity provider; the token's `kid` picks the key.",
    ),
    key(
        "auth.jwt_issuer",
        "Required `iss` of JWTs (must be set when JWTs are enabled).",
    ),
    key(
        "auth.jwt_audience",
        "Required `aud` of JWTs (must be set when JWTs are enabled).",
    ),
    key("auth.jwt_leeway", "Clock skew allowed when checking `exp` and `nbf`."),
    key("auth.jwt_tenant_claim", "Claim that names the tenant."),
    key(
        "auth.jwt_scope_claim",
        "Claim with the scopes: a space-separated string or an array.",
    ),
    key(
        "auth.jwks_refresh_interval",
        "Least time between two JWKS fetches (a token with an unknown `kid` triggers one).",
    ),
    key("auth.jwks_max_age", "A JWKS older than this is fetched again."),
    key(
        "idempotency.retention",
        "How long an `Idempotency-Key` and its stored response are kept.",
    ),
    key(
        "idempotency.purge_interval",
        "How often expired idempotency keys are deleted.",
    ),
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
        "Run the delivery dispatcher in this process (any number of replicas may).",
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
    key(
        "log.level",
        "Log filter: a level (`info`) or directives (`info,billing_api=debug`). `RUST_LOG` wins when set.",
    ),
    key(
        "log.format",
        "`json` (one object per line) or `pretty` (for a terminal).",
    ),
    key(
        "shutdown.grace_period",
        "After SIGTERM, how long the API keeps serving while `/health/ready` answers 503, so load balancers stop sending traffic.",
    ),
    key(
        "shutdown.drain_timeout",
        "Then, how long in-flight requests may take to finish before the process exits.",
    ),
];

/// The environment variable for a key: `server.port` is `BILLING_SERVER__PORT`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_ascii_uppercase())
}

/// The Markdown table embedded in the README.
pub fn reference_markdown() -> String {
    let defaults = Config::default();
    let rendered = toml::Value::try_from(&defaults).ok();
    let default_of = |key: &str| -> String {
        let (section, name) = key.split_once('.').unwrap_or((key, ""));
        rendered
            .as_ref()
            .and_then(|v| v.get(section))
            .and_then(|v| v.get(name))
            .map(|v| match v {
                toml::Value::String(s) => format!("`{s}`"),
                toml::Value::Array(items) if items.is_empty() => "(empty)".to_owned(),
                toml::Value::Array(items) => {
                    let items: Vec<String> = items
                        .iter()
                        .map(|i| i.as_str().unwrap_or_default().to_owned())
                        .collect();
                    format!("`{}`", items.join(","))
                }
                other => format!("`{other}`"),
            })
            .unwrap_or_else(|| "(unset)".to_owned())
    };
    let mut out = String::from("| Key | Environment variable | Default | Meaning |\n|---|---|---|---|\n");
    for doc in KEYS {
        let mut env = format!("`{}`", env_name(doc.key));
        if doc.secret {
            env.push_str(&format!(" or `{}_FILE`", env_name(doc.key)));
        }
        let default = match (doc.default_text, doc.key) {
            (Some(text), _) => text.to_owned(),
            (None, "database.url") => format!("`{}`", super::DEFAULT_DATABASE_URL),
            (None, _) if doc.secret => "(unset)".to_owned(),
            (None, key) => default_of(key),
        };
        out.push_str(&format!(
            "| `{}` | {env} | {default} | {} |\n",
            doc.key, doc.description
        ));
    }
    out
}
