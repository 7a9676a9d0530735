//! Typed, layered configuration: built-in defaults < TOML file < `BILLING_<SECTION>__<KEY>`
//! environment variables. Loading reports every problem at once and never panics.
//!
//! Each section is a file of its own (its struct, defaults, documented keys, loading and
//! checks); this file puts them together and checks what involves more than one section.
mod admin;
mod auth;
pub mod billing;
mod database;
mod idempotency;
mod layers;
mod log;
pub mod net;
mod rate_limit;
mod reference;
mod section;
mod server;
mod shutdown;
#[cfg(test)]
mod tests;
mod value;
mod webhooks;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::Serialize;

pub use admin::AdminConfig;
pub use auth::{AuthConfig, JwtKeys, JwtSettings};
pub use billing::BillingConfig;
pub use database::{Backend, DEFAULT_URL as DEFAULT_DATABASE_URL, DatabaseConfig, sqlite_is_in_memory};
pub use idempotency::IdempotencyConfig;
pub use layers::{CONFIG_FILE_ENV, ENV_PREFIX, Origin, Problem, Sources, TEST_ROUTES_ENV};
pub use log::{LogConfig, LogFormat};
pub use rate_limit::{Budget, RateLimitConfig};
pub use reference::{keys, reference_markdown};
pub use section::KeyDoc;
pub use server::ServerConfig;
pub use shutdown::ShutdownConfig;
pub use webhooks::{WebhookConfig, parse_key};

use layers::Layers;
use section::{Checks, Reader};

/// Exit status for an invalid configuration (sysexits.h EX_CONFIG).
pub const EX_CONFIG: u8 = 78;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Config {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub idempotency: IdempotencyConfig,
    pub webhooks: WebhookConfig,
    pub billing: BillingConfig,
    pub rate_limit: RateLimitConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
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
        self.database.backend().unwrap_or(Backend::Sqlite)
    }

    /// Loads and validates the configuration, reporting every problem.
    pub fn load(sources: &Sources) -> Result<Loaded, ConfigError> {
        let mut layers = Layers::build(sources);
        let credentials_dir = sources.env_var("CREDENTIALS_DIRECTORY");
        let l = &mut layers;
        let mut config = Config {
            server: ServerConfig::load(&mut Reader::new(l, "server", credentials_dir)),
            admin: AdminConfig::load(&mut Reader::new(l, "admin", credentials_dir)),
            database: DatabaseConfig::load(&mut Reader::new(l, "database", credentials_dir)),
            auth: AuthConfig::load(&mut Reader::new(l, "auth", credentials_dir)),
            idempotency: IdempotencyConfig::load(&mut Reader::new(l, "idempotency", credentials_dir)),
            billing: BillingConfig::load(&mut Reader::new(l, "billing", credentials_dir)),
            webhooks: WebhookConfig::load(&mut Reader::new(l, "webhooks", credentials_dir)),
            rate_limit: RateLimitConfig::load(&mut Reader::new(l, "rate_limit", credentials_dir)),
            log: LogConfig::load(&mut Reader::new(l, "log", credentials_dir)),
            shutdown: ShutdownConfig::load(&mut Reader::new(l, "shutdown", credentials_dir)),
        };
        layers.report_unknown_keys();

        config.validate(&mut layers);
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

    /// Each section checks itself; then the rules that span sections.
    fn validate(&mut self, layers: &mut Layers) {
        self.server.validate(&mut Checks::new(layers, "server"));
        self.database.validate(&mut Checks::new(layers, "database"));
        self.auth.validate(&mut Checks::new(layers, "auth"));
        self.idempotency.validate(&mut Checks::new(layers, "idempotency"));
        self.billing.validate(&mut Checks::new(layers, "billing"));
        self.webhooks.validate(&mut Checks::new(layers, "webhooks"));
        self.rate_limit.validate(&mut Checks::new(layers, "rate_limit"));
        self.log.validate(&mut Checks::new(layers, "log"));
        Checks::new(layers, "admin").require(
            self.admin.port == 0 || self.admin_addr() != self.listen_addr(),
            "port",
            format!(
                "{} is also the API's address (server.host, server.port)",
                self.admin_addr()
            ),
        );
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
