//! `[database]`: which database (the URL's scheme picks the backend), the pool, and the
//! session settings every connection gets.
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::section::{Checks, KeyDoc, Reader, key};
use super::value::{as_humantime, redacted};

pub const DEFAULT_URL: &str = "sqlite://data/billing.db";

/// The two databases the service runs on. What differs between their SQL is named in
/// `store::dialect`; this is only which one a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    /// The backend called `name` (`sqlite`, `postgres`).
    pub fn from_name(name: &str) -> Option<Self> {
        [Backend::Sqlite, Backend::Postgres]
            .into_iter()
            .find(|b| b.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// `sqlite::memory:` and `?mode=memory` databases live inside one connection.
pub fn sqlite_is_in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseConfig {
    #[serde(serialize_with = "redacted")]
    pub url: SecretString,
    pub max_connections: u32,
    /// PostgreSQL: the writers of meter event batches, each writing with `COPY` on a connection
    /// of a pool of its own (`billing::group_commit`); 0 writes them through the main pool.
    pub copy_connections: u32,
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
    /// Ping a pooled connection before handing it out.
    pub test_before_acquire: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: SecretString::from(DEFAULT_URL),
            max_connections: 10,
            copy_connections: 2,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(1800),
            statement_timeout: Duration::from_secs(30),
            busy_timeout: Duration::from_secs(5),
            health_timeout: Duration::from_secs(1),
            migrate_on_start: true,
            test_before_acquire: false,
        }
    }
}

pub const KEYS: &[KeyDoc] = &[
    KeyDoc {
        key: "database.url",
        secret: true,
        default_text: None,
        description: "`sqlite://PATH` (created with its folder if absent) or `postgres://USER:PASSWORD@HOST/DB`.",
    },
    key("database.max_connections", "Most connections the pool opens."),
    key(
        "database.copy_connections",
        "PostgreSQL: writers of meter event batches, each on a connection of a second pool, writing with `COPY` (about half PostgreSQL's CPU per event of the main pool's statements); batches that wait for a writer are written together, in one transaction. Opened only while batches arrive, so count them with `max_connections`. `0`: batches go through the main pool.",
    ),
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
        "database.test_before_acquire",
        "Ping each pooled connection before use (one more round trip per request). Turn it on where connections can die unseen, as while a serverless instance is frozen between requests.",
    ),
];

impl DatabaseConfig {
    /// The backend the URL names (`None`: a scheme this service does not run on).
    pub fn backend(&self) -> Option<Backend> {
        Backend::from_url(self.url.expose_secret())
    }

    pub(super) fn load(r: &mut Reader<'_>) -> Self {
        let d = Self::default();
        let url = r.secret("url").unwrap_or(d.url);
        let postgres = Backend::from_url(url.expose_secret()) == Some(Backend::Postgres);
        DatabaseConfig {
            max_connections: r.get("max_connections", d.max_connections),
            copy_connections: r.get("copy_connections", d.copy_connections),
            min_connections: r.get("min_connections", d.min_connections),
            acquire_timeout: r.get("acquire_timeout", d.acquire_timeout),
            idle_timeout: r.get("idle_timeout", d.idle_timeout),
            max_lifetime: r.get("max_lifetime", d.max_lifetime),
            statement_timeout: r.get("statement_timeout", d.statement_timeout),
            busy_timeout: r.get("busy_timeout", d.busy_timeout),
            health_timeout: r.get("health_timeout", d.health_timeout),
            // Replicas of a PostgreSQL deployment migrate in a release step, not at start-up.
            migrate_on_start: r.get_opt("migrate_on_start").unwrap_or(!postgres),
            test_before_acquire: r.get("test_before_acquire", d.test_before_acquire),
            url,
        }
    }

    pub(super) fn validate(&self, c: &mut Checks<'_>) {
        let backend = self.backend();
        c.require(
            backend.is_some(),
            "url",
            "must start with sqlite:, postgres:// or postgresql://",
        );
        c.require(self.max_connections >= 1, "max_connections", "must be at least 1");
        c.require(
            self.min_connections <= self.max_connections,
            "min_connections",
            format!(
                "is {} but database.max_connections is {}",
                self.min_connections, self.max_connections
            ),
        );
        c.positive("acquire_timeout", !self.acquire_timeout.is_zero());
        c.positive("health_timeout", !self.health_timeout.is_zero());
        if backend == Some(Backend::Sqlite) {
            c.require(
                !(sqlite_is_in_memory(self.url.expose_secret()) && self.max_connections > 1),
                "max_connections",
                "an in-memory SQLite database exists once per connection: set it to 1",
            );
        }
    }
}
