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
    /// Webhook delivery and maintenance.
    Webhooks {
        #[command(subcommand)]
        action: WebhooksAction,
    },
    /// The billing cycle: bill the subscription periods that are due.
    Cycles {
        #[command(subcommand)]
        action: CyclesAction,
    },
    /// Idempotency-key maintenance.
    Idempotency {
        #[command(subcommand)]
        action: IdempotencyAction,
    },
    /// Check a running deployment against the launch checklist: probes, migrations, pool size,
    /// metrics, TLS and proxy headers, clocks, versions. Exits 1 and lists what fails.
    Doctor(DoctorArgs),
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
    /// Write every migration as the backend runs it (for review and linting).
    Sql {
        /// `sqlite` or `postgres`.
        #[arg(long)]
        backend: String,
        /// The folder to write `<version>_<name>.{up,down}.sql` into.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The API as clients reach it, e.g. https://billing.example.com (through the proxy).
    #[arg(long)]
    pub url: String,
    /// The admin listener of a replica (`/metrics`); repeat it for every replica.
    #[arg(long = "admin-url")]
    pub admin_urls: Vec<String>,
    /// How many replicas share the database (the pool check); by default, the admin URLs given.
    #[arg(long)]
    pub replicas: Option<u32>,
    /// Requests sent to `--url` to find the versions served behind it.
    #[arg(long, default_value_t = 10)]
    pub samples: u32,
    /// Give up on a request after this many seconds.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
    /// A PEM certificate to trust besides the system's (a private CA).
    #[arg(long, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
    /// Accept an API served over plain HTTP (a warning instead of a failure).
    #[arg(long)]
    pub allow_http: bool,
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
    /// Deliver webhooks: as a worker of its own until SIGTERM, or with --until-idle what is due
    /// and exit (a cron job, or a serverless deployment's scheduled job).
    Dispatch {
        /// Exit once nothing is due any more, instead of waiting for more.
        #[arg(long)]
        until_idle: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CyclesAction {
    /// Bill every subscription period that started by --until (default: now), then exit: for a
    /// cron job or a serverless deployment's scheduled job, or where `billing.scheduler` is off.
    /// Safe beside the service's scheduler and other runs: a period is billed once.
    Run {
        /// Unix seconds or RFC 3339; at most a minute ahead of now (billing ahead of time would
        /// issue invoices for periods that have not started).
        #[arg(long)]
        until: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdempotencyAction {
    /// Delete expired idempotency keys once and exit (where no process purges them).
    Purge,
}

#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Set a tenant's settings (those given; at least one).
    Configure {
        #[arg(long)]
        tenant: String,
        /// Invoice numbers are this prefix and a six-digit sequence, e.g. INV-000123.
        #[arg(long)]
        invoice_prefix: Option<String>,
        /// The IANA time zone of the period boundaries of subscriptions created without one
        /// (UTC until set), e.g. Europe/Paris.
        #[arg(long)]
        time_zone: Option<String>,
    },
}
