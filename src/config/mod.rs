//! Typed, layered configuration: built-in defaults < TOML file < `BILLING_<SECTION>__<KEY>`
//! environment variables. Loading reports every problem at once and never panics.
mod layers;
mod reference;
#[cfg(test)]
mod tests;
mod value;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, Serializer};

pub use layers::{CONFIG_FILE_ENV, ENV_PREFIX, Origin, Problem, Sources};
pub use reference::{KEYS, KeyDoc, reference_markdown};

use crate::store::Backend;
use layers::Layers;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/billing.db";
/// Exit status for an invalid configuration (sysexits.h EX_CONFIG).
pub const EX_CONFIG: u8 = 78;

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub idempotency: IdempotencyConfig,
    pub webhooks: WebhookConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    #[serde(serialize_with = "as_humantime")]
    pub request_timeout: Duration,
    pub body_limit: usize,
    pub concurrency_limit: usize,
    pub compression: bool,
    pub cors_allowed_origins: Vec<String>,
    pub sensitive_headers: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed (a reverse proxy, a load balancer).
    pub trusted_proxies: Vec<String>,
}

/// The operators' listener: `/metrics` (and probes), kept off the API port.
#[derive(Debug, Clone, Serialize)]
pub struct AdminConfig {
    pub host: IpAddr,
    /// 0 picks a free port (tests).
    pub port: u16,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseConfig {
    #[serde(serialize_with = "redacted")]
    pub url: SecretString,
    pub max_connections: u32,
    pub min_connections: u32,
    #[serde(serialize_with = "as_humantime")]
    pub acquire_timeout: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub idle_timeout: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub max_lifetime: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub statement_timeout: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub busy_timeout: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub health_timeout: Duration,
    pub migrate_on_start: bool,
}

/// JWT verification; off unless a key source (public key, HMAC secret or JWKS URL) is set.
#[derive(Debug, Clone, Serialize)]
pub struct AuthConfig {
    pub jwt_algorithms: Vec<String>,
    pub jwt_public_key_file: Option<std::path::PathBuf>,
    #[serde(serialize_with = "redacted_opt")]
    pub jwt_hmac_secret: Option<SecretString>,
    pub jwt_jwks_url: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    #[serde(serialize_with = "as_humantime")]
    pub jwt_leeway: Duration,
    pub jwt_tenant_claim: String,
    pub jwt_scope_claim: String,
    #[serde(serialize_with = "as_humantime")]
    pub jwks_refresh_interval: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub jwks_max_age: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdempotencyConfig {
    #[serde(serialize_with = "as_humantime")]
    pub retention: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub purge_interval: Duration,
}

/// Webhook delivery: secrets at rest, the destination policy, timeouts, retries and the breaker.
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

#[derive(Debug, Clone, Serialize)]
pub struct LogConfig {
    pub level: String,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShutdownConfig {
    #[serde(serialize_with = "as_humantime")]
    pub grace_period: Duration,
    #[serde(serialize_with = "as_humantime")]
    pub drain_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: ServerConfig {
                host: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 8080,
                request_timeout: Duration::from_secs(30),
                body_limit: 1024 * 1024,
                concurrency_limit: 512,
                compression: true,
                cors_allowed_origins: Vec::new(),
                trusted_proxies: Vec::new(),
                sensitive_headers: [
                    "authorization",
                    "proxy-authorization",
                    "cookie",
                    "set-cookie",
                    "x-api-key",
                ]
                .map(String::from)
                .to_vec(),
            },
            admin: AdminConfig {
                host: IpAddr::V4(Ipv4Addr::LOCALHOST),
                port: 9464,
            },
            database: DatabaseConfig {
                url: SecretString::from(DEFAULT_DATABASE_URL),
                max_connections: 10,
                min_connections: 0,
                acquire_timeout: Duration::from_secs(3),
                idle_timeout: Duration::from_secs(600),
                max_lifetime: Duration::from_secs(1800),
                statement_timeout: Duration::from_secs(30),
                busy_timeout: Duration::from_secs(5),
                health_timeout: Duration::from_secs(1),
                migrate_on_start: true,
            },
            auth: AuthConfig {
                jwt_algorithms: Vec::new(),
                jwt_public_key_file: None,
                jwt_hmac_secret: None,
                jwt_jwks_url: None,
                jwt_issuer: None,
                jwt_audience: None,
                jwt_leeway: Duration::from_secs(30),
                jwt_tenant_claim: "tenant_id".into(),
                jwt_scope_claim: "scope".into(),
                jwks_refresh_interval: Duration::from_secs(30),
                jwks_max_age: Duration::from_secs(600),
            },
            idempotency: IdempotencyConfig {
                retention: Duration::from_secs(24 * 3600),
                purge_interval: Duration::from_secs(600),
            },
            webhooks: WebhookConfig {
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
            },
            log: LogConfig {
                level: "info".into(),
                format: LogFormat::Json,
            },
            shutdown: ShutdownConfig {
                grace_period: Duration::from_secs(5),
                drain_timeout: Duration::from_secs(20),
            },
        }
    }
}

impl Config {
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.server.host, self.server.port)
    }

    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::new(self.admin.host, self.admin.port)
    }

    pub fn backend(&self) -> Backend {
        // `load` has already rejected any other scheme.
        Backend::from_url(self.database.url.expose_secret()).unwrap_or(Backend::Sqlite)
    }

    /// Loads and validates the configuration, reporting every problem.
    pub fn load(sources: &Sources) -> Result<Loaded, ConfigError> {
        let mut layers = Layers::build(sources);
        let d = Config::default();

        let server = ServerConfig {
            host: layers.get("server.host", d.server.host),
            port: layers.get("server.port", d.server.port),
            request_timeout: layers.get("server.request_timeout", d.server.request_timeout),
            body_limit: layers.get("server.body_limit", d.server.body_limit),
            concurrency_limit: layers.get("server.concurrency_limit", d.server.concurrency_limit),
            compression: layers.get("server.compression", d.server.compression),
            cors_allowed_origins: layers.get("server.cors_allowed_origins", d.server.cors_allowed_origins),
            sensitive_headers: layers.get("server.sensitive_headers", d.server.sensitive_headers),
            trusted_proxies: layers.get("server.trusted_proxies", d.server.trusted_proxies),
        };
        let admin = AdminConfig {
            host: layers.get("admin.host", d.admin.host),
            port: layers.get("admin.port", d.admin.port),
        };
        let credentials_dir = sources.env_var("CREDENTIALS_DIRECTORY");
        let url = layers.secret("database.url", credentials_dir).unwrap_or(d.database.url);
        let backend = Backend::from_url(url.expose_secret());
        let database = DatabaseConfig {
            max_connections: layers.get("database.max_connections", d.database.max_connections),
            min_connections: layers.get("database.min_connections", d.database.min_connections),
            acquire_timeout: layers.get("database.acquire_timeout", d.database.acquire_timeout),
            idle_timeout: layers.get("database.idle_timeout", d.database.idle_timeout),
            max_lifetime: layers.get("database.max_lifetime", d.database.max_lifetime),
            statement_timeout: layers.get("database.statement_timeout", d.database.statement_timeout),
            busy_timeout: layers.get("database.busy_timeout", d.database.busy_timeout),
            health_timeout: layers.get("database.health_timeout", d.database.health_timeout),
            // Replicas of a PostgreSQL deployment migrate in a release step, not at start-up.
            migrate_on_start: layers
                .get_opt("database.migrate_on_start")
                .unwrap_or(backend != Some(Backend::Postgres)),
            url,
        };
        let auth = AuthConfig {
            jwt_algorithms: layers.get("auth.jwt_algorithms", d.auth.jwt_algorithms),
            jwt_public_key_file: layers.get_opt("auth.jwt_public_key_file"),
            jwt_hmac_secret: layers.secret("auth.jwt_hmac_secret", credentials_dir),
            jwt_jwks_url: layers.get_opt("auth.jwt_jwks_url"),
            jwt_issuer: layers.get_opt("auth.jwt_issuer"),
            jwt_audience: layers.get_opt("auth.jwt_audience"),
            jwt_leeway: layers.get("auth.jwt_leeway", d.auth.jwt_leeway),
            jwt_tenant_claim: layers.get("auth.jwt_tenant_claim", d.auth.jwt_tenant_claim),
            jwt_scope_claim: layers.get("auth.jwt_scope_claim", d.auth.jwt_scope_claim),
            jwks_refresh_interval: layers.get("auth.jwks_refresh_interval", d.auth.jwks_refresh_interval),
            jwks_max_age: layers.get("auth.jwks_max_age", d.auth.jwks_max_age),
        };
        let idempotency = IdempotencyConfig {
            retention: layers.get("idempotency.retention", d.idempotency.retention),
            purge_interval: layers.get("idempotency.purge_interval", d.idempotency.purge_interval),
        };
        let w = d.webhooks;
        let webhooks = WebhookConfig {
            // An empty value means "not set", so a template can leave the key blank.
            encryption_key: layers
                .secret("webhooks.encryption_key", credentials_dir)
                .filter(|k| !k.expose_secret().is_empty()),
            previous_encryption_key: layers
                .secret("webhooks.previous_encryption_key", credentials_dir)
                .filter(|k| !k.expose_secret().is_empty()),
            allow_http: layers.get("webhooks.allow_http", w.allow_http),
            allowed_networks: layers.get("webhooks.allowed_networks", w.allowed_networks),
            connect_timeout: layers.get("webhooks.connect_timeout", w.connect_timeout),
            timeout: layers.get("webhooks.timeout", w.timeout),
            retry_schedule: layers.get("webhooks.retry_schedule", w.retry_schedule),
            breaker_threshold: layers.get("webhooks.breaker_threshold", w.breaker_threshold),
            breaker_cooldown: layers.get("webhooks.breaker_cooldown", w.breaker_cooldown),
            disable_after: layers.get("webhooks.disable_after", w.disable_after),
            secret_overlap: layers.get("webhooks.secret_overlap", w.secret_overlap),
            dispatcher: layers.get("webhooks.dispatcher", w.dispatcher),
            poll_interval: layers.get("webhooks.poll_interval", w.poll_interval),
            batch_size: layers.get("webhooks.batch_size", w.batch_size),
            concurrency: layers.get("webhooks.concurrency", w.concurrency),
            lease: layers.get("webhooks.lease", w.lease),
        };
        let log = LogConfig {
            level: layers.get("log.level", d.log.level),
            format: match layers.get_opt::<String>("log.format").as_deref() {
                None | Some("json") => LogFormat::Json,
                Some("pretty") => LogFormat::Pretty,
                Some(other) => {
                    let origin = Some(layers.origin_of("log.format"));
                    layers.problem(
                        "log.format",
                        origin,
                        format!("invalid value {other:?}: expected \"json\" or \"pretty\""),
                    );
                    LogFormat::Json
                }
            },
        };
        let shutdown = ShutdownConfig {
            grace_period: layers.get("shutdown.grace_period", d.shutdown.grace_period),
            drain_timeout: layers.get("shutdown.drain_timeout", d.shutdown.drain_timeout),
        };
        layers.report_unknown_keys();

        let config = Config {
            server,
            admin,
            database,
            auth,
            idempotency,
            webhooks,
            log,
            shutdown,
        };
        config.validate(&mut layers, backend);
        if !layers.problems.is_empty() {
            return Err(ConfigError {
                problems: layers.problems,
            });
        }
        let origins = layers
            .known_keys()
            .iter()
            .map(|k| (k.clone(), layers.secret_origin(k)))
            .collect();
        Ok(Loaded { config, origins })
    }

    /// Rules that involve more than one value, or values that parse but make no sense.
    fn validate(&self, layers: &mut Layers, backend: Option<Backend>) {
        let mut check = |ok: bool, key: &str, message: String| {
            if !ok {
                let origin = Some(layers.secret_origin(key));
                layers.problem(key, origin, message);
            }
        };
        let (s, db) = (&self.server, &self.database);
        check(
            !s.request_timeout.is_zero(),
            "server.request_timeout",
            "must be greater than zero".into(),
        );
        check(
            s.body_limit > 0,
            "server.body_limit",
            "must be greater than zero".into(),
        );
        check(
            s.concurrency_limit > 0,
            "server.concurrency_limit",
            "must be greater than zero".into(),
        );
        for origin in &s.cors_allowed_origins {
            check(
                origin == "*" || http::HeaderValue::from_str(origin).is_ok() && is_origin(origin),
                "server.cors_allowed_origins",
                format!("{origin:?} is not an origin such as https://app.example.com (or \"*\")"),
            );
        }
        check(
            !(s.cors_allowed_origins.len() > 1 && s.cors_allowed_origins.iter().any(|o| o == "*")),
            "server.cors_allowed_origins",
            "\"*\" allows every origin and cannot be combined with others".into(),
        );
        for name in &s.sensitive_headers {
            check(
                http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                "server.sensitive_headers",
                format!("{name:?} is not a valid header name"),
            );
        }
        for proxy in &s.trusted_proxies {
            check(
                crate::http::client_ip::parse_network(proxy).is_some(),
                "server.trusted_proxies",
                format!("{proxy:?} is not an IP address or network such as 10.0.0.0/8"),
            );
        }
        check(
            self.admin.port == 0 || self.admin_addr() != self.listen_addr(),
            "admin.port",
            format!(
                "{} is also the API's address (server.host, server.port)",
                self.admin_addr()
            ),
        );
        check(
            backend.is_some(),
            "database.url",
            "must start with sqlite:, postgres:// or postgresql://".into(),
        );
        check(
            db.max_connections >= 1,
            "database.max_connections",
            "must be at least 1".into(),
        );
        check(
            db.min_connections <= db.max_connections,
            "database.min_connections",
            format!(
                "is {} but database.max_connections is {}",
                db.min_connections, db.max_connections
            ),
        );
        check(
            !db.acquire_timeout.is_zero(),
            "database.acquire_timeout",
            "must be greater than zero".into(),
        );
        check(
            !db.health_timeout.is_zero(),
            "database.health_timeout",
            "must be greater than zero".into(),
        );
        if backend == Some(Backend::Sqlite) {
            let in_memory = crate::store::sqlite_is_in_memory(db.url.expose_secret());
            check(
                !(in_memory && db.max_connections > 1),
                "database.max_connections",
                "an in-memory SQLite database exists once per connection: set it to 1".into(),
            );
        }
        check(
            !self.idempotency.retention.is_zero(),
            "idempotency.retention",
            "must be greater than zero".into(),
        );
        check(
            !self.idempotency.purge_interval.is_zero(),
            "idempotency.purge_interval",
            "must be greater than zero".into(),
        );
        let w = &self.webhooks;
        for (key, value) in [
            ("webhooks.encryption_key", &w.encryption_key),
            ("webhooks.previous_encryption_key", &w.previous_encryption_key),
        ] {
            if let Some(value) = value {
                check(
                    crate::webhooks::secrets::parse_key(value.expose_secret()).is_some(),
                    key,
                    "must be 32 random bytes in base64 (e.g. `openssl rand -base64 32`)".into(),
                );
            }
        }
        for network in &w.allowed_networks {
            check(
                crate::http::client_ip::parse_network(network).is_some(),
                "webhooks.allowed_networks",
                format!("{network:?} is not an IP address or network such as 127.0.0.1/32"),
            );
        }
        check(
            !w.retry_schedule.is_empty(),
            "webhooks.retry_schedule",
            "needs at least one delay".into(),
        );
        check(
            w.breaker_threshold >= 1,
            "webhooks.breaker_threshold",
            "must be at least 1".into(),
        );
        for (key, ok) in [
            ("webhooks.timeout", !w.timeout.is_zero()),
            ("webhooks.connect_timeout", !w.connect_timeout.is_zero()),
            ("webhooks.poll_interval", !w.poll_interval.is_zero()),
            ("webhooks.batch_size", w.batch_size > 0),
            ("webhooks.concurrency", w.concurrency > 0),
        ] {
            check(ok, key, "must be greater than zero".into());
        }
        check(
            w.lease > w.timeout,
            "webhooks.lease",
            format!(
                "must be longer than webhooks.timeout ({}), or a slow attempt could be sent twice",
                humantime::format_duration(w.timeout)
            ),
        );
        if let Err(problems) = crate::auth::jwt::Settings::from_config(&self.auth) {
            for (key, message) in problems {
                check(false, key, message);
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            check(false, "log.level", format!("invalid filter {:?}: {e}", self.log.level));
        }
    }

    /// The effective configuration as TOML, secrets redacted, each value annotated with its origin.
    pub fn render(&self, origins: &BTreeMap<String, Origin>) -> String {
        let value = toml::Value::try_from(self).unwrap_or(toml::Value::Table(Default::default()));
        let mut out = String::new();
        if let toml::Value::Table(sections) = value {
            for (section, values) in sections {
                out.push_str(&format!("[{section}]\n"));
                if let toml::Value::Table(values) = values {
                    for (key, value) in values {
                        let full = format!("{section}.{key}");
                        let origin = origins.get(&full).cloned().unwrap_or(Origin::Default);
                        out.push_str(&format!("{key} = {value}  # {origin}\n"));
                    }
                }
                out.push('\n');
            }
        }
        out
    }
}

fn is_origin(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|host| !host.is_empty() && !host.contains('/'))
}

/// A loaded configuration together with where each setting came from.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub origins: BTreeMap<String, Origin>,
}

#[derive(Debug)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

fn as_humantime<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

fn as_humantime_list<S: Serializer>(ds: &[Duration], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ds.iter().map(|d| humantime::format_duration(*d).to_string()))
}

fn redacted<S: Serializer>(_: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str("[redacted]")
}

fn redacted_opt<S: Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_str("[redacted]"),
        None => s.serialize_none(),
    }
}
