//! The command line: one binary that serves, migrates and checks itself.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "billing-api", version = crate::build_info::VERSION, long_version = long_version(), about)]
pub struct Cli {
    /// TOML configuration file (otherwise $BILLING_CONFIG, otherwise none).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

fn long_version() -> &'static str {
    // clap wants a 'static str; this is built once per process.
    Box::leak(crate::build_info::long_version().into_boxed_str())
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply, list or revert database migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
    /// Validate or print the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Create, list or revoke API keys.
    Apikey {
        #[command(subcommand)]
        action: ApikeyAction,
    },
    /// Configure a tenant.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Webhook maintenance.
    Webhooks {
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// Print the OpenAPI 3.1 document of the API.
    Openapi,
    /// Exit 0 if the running service reports ready (for container health checks).
    Healthcheck {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Print version and build information.
    Version {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration (safe to run from several processes at once).
    Run,
    /// List applied and pending migrations.
    Status,
    /// Undo the most recently applied migration.
    Revert,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Load and validate the configuration as `serve` would; exit 78 if it is invalid.
    Check,
    /// Print the effective configuration (secrets redacted) and where each value came from.
    Show,
    /// Print the configuration reference as a Markdown table.
    Reference,
}

#[derive(Debug, Subcommand)]
pub enum ApikeyAction {
    /// Create a key and print it (once: only its hash is stored).
    Create {
        /// The tenant the key acts for (created if new).
        #[arg(long)]
        tenant: String,
        /// A scope such as invoices:write, or * for all; repeat for several.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a key: it stops working at once.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksAction {
    /// Re-encrypt every endpoint's signing secrets under webhooks.encryption_key (after a key
    /// rotation, with the old key as webhooks.previous_encryption_key).
    Reencrypt,
}

#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Set a tenant's settings.
    Configure {
        #[arg(long)]
        tenant: String,
        /// Invoice numbers are this prefix and a six-digit sequence, e.g. INV-000123.
        #[arg(long)]
        invoice_prefix: String,
    },
}
