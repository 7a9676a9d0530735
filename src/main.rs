#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use billing_api::app::{Application, BuildOptions};
use billing_api::cli::{Cli, Command, ConfigAction, MigrateAction, WebhooksAction};
use billing_api::config::{self, Config, EX_CONFIG, Loaded, Sources};
use billing_api::store::migrate::State;
use billing_api::store::{Backend, Store};
use billing_api::{admin, build_info, doctor, healthcheck, shutdown, telemetry};

/// mimalloc rather than glibc's allocator: a batch of meter events is thousands of small
/// allocations freed together, and glibc's malloc and free were a tenth of all the CPU of
/// `bench/meter_events.sh` (both cores: the service, PostgreSQL and the load generator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `cycles run` is a batch of short transactions, one round trip after another: on one
    // thread each answer wakes the task waiting for it without a hand-over between threads
    // (bench/cycles.sh: about a quarter faster, a third of the context switches). Everything
    // else, the HTTP server first, uses every core.
    let mut builder = match cli.command {
        Some(Command::Cycles { .. }) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Serve);
    match command {
        Command::Version { json } => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&build_info::BUILD_INFO).unwrap_or_default()
                );
            } else {
                println!("billing-api {}", build_info::long_version());
            }
            return ExitCode::SUCCESS;
        }
        Command::Config {
            action: ConfigAction::Reference,
        } => {
            print!("{}", config::reference_markdown());
            return ExitCode::SUCCESS;
        }
        Command::Openapi => {
            println!("{}", billing_api::api::openapi::json());
            return ExitCode::SUCCESS;
        }
        Command::Migrate {
            action: MigrateAction::Sql { backend, out },
        } => return write_migrations(backend, out),
        _ => {}
    }

    // Everything else needs a valid configuration, loaded exactly as `serve` loads it.
    let Loaded { config, origins } = match Config::load(&Sources::from_process(cli.config)) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EX_CONFIG);
        }
    };

    match command {
        Command::Config {
            action: ConfigAction::Check,
        } => {
            println!("configuration is valid ({} backend)", config.backend().name());
            ExitCode::SUCCESS
        }
        Command::Config {
            action: ConfigAction::Show,
        } => {
            print!("{}", config.render(&origins));
            ExitCode::SUCCESS
        }
        Command::Healthcheck { timeout } => {
            match healthcheck::check(config.listen_addr(), Duration::from_secs(timeout)).await {
                Ok(200) => ExitCode::SUCCESS,
                Ok(status) => {
                    eprintln!("not ready: /health/ready answered {status}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("not ready: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Migrate { action } => migrate(&config, action).await,
        Command::Apikey { action } => with_store(&config, async |store| admin::apikey(store, action).await).await,
        Command::Tenant { action } => with_store(&config, async |store| admin::tenant(store, action).await).await,
        Command::Webhooks { action } => {
            // A dispatcher logs like the service does (it may run for as long).
            let _logs = matches!(action, WebhooksAction::Dispatch { .. }).then(|| telemetry::init(&config.log));
            with_store(&config, async |store| admin::webhooks(store, &config, action).await).await
        }
        Command::Cycles { action } => {
            with_store(&config, async |store| admin::cycles(store, &config, action).await).await
        }
        Command::Idempotency { action } => {
            with_store(&config, async |store| {
                admin::idempotency(store, &config.idempotency, action).await
            })
            .await
        }
        Command::Doctor(args) => match doctor::run(&config, &args).await {
            Ok(report) => {
                print!("{}", report.render());
                if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("error: doctor: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve => serve(config).await,
        Command::Version { .. }
        | Command::Openapi
        | Command::Config {
            action: ConfigAction::Reference,
        } => ExitCode::SUCCESS,
    }
}

async fn serve(config: Config) -> ExitCode {
    let _logs = telemetry::init(&config.log);
    let options = BuildOptions {
        test_routes: test_routes_requested(),
    };
    let app = match Application::build(config, options).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(shutdown::watch_signals(app.shutdown()));
    match app.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

fn test_routes_requested() -> bool {
    cfg!(debug_assertions) && std::env::var(billing_api::config::TEST_ROUTES_ENV).is_ok_and(|v| v == "1")
}

async fn migrate(config: &Config, action: MigrateAction) -> ExitCode {
    let store = match Store::connect_lazy(&config.database) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match action {
        MigrateAction::Run => store.migrate_run().await.map(|n| match n {
            0 => println!("database is up to date"),
            n => println!("applied {n} migration(s)"),
        }),
        MigrateAction::Revert => store.migrate_revert().await.map(|v| println!("reverted migration {v}")),
        MigrateAction::Sql { .. } => Ok(()),
        MigrateAction::Status => store.migration_status().await.map(|rows| {
            println!("{:<8} {:<10} DESCRIPTION", "VERSION", "STATE");
            for row in rows {
                let state = match row.state {
                    State::Applied => "applied",
                    State::Pending => "pending",
                    State::Failed => "FAILED",
                    State::Unknown => "newer",
                };
                println!("{:<8} {:<10} {}", row.version, state, row.description);
            }
        }),
    };
    store.close().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: migrate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an operator command against the database, migrating it first when `serve` would.
async fn with_store(config: &Config, f: impl AsyncFnOnce(&Store) -> Result<(), String>) -> ExitCode {
    let store = match Store::connect_lazy(&config.database) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if config.database.migrate_on_start
        && let Err(e) = store.migrate_run().await
    {
        eprintln!("error: migrations failed: {e}");
        return ExitCode::FAILURE;
    }
    let result = f(&store).await;
    store.close().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `migrate sql`: every migration as `backend` runs it, for review and for the migration linter.
fn write_migrations(backend: String, out: std::path::PathBuf) -> ExitCode {
    let Some(backend) = Backend::from_name(&backend) else {
        eprintln!("error: --backend is sqlite or postgres, not {backend:?}");
        return ExitCode::from(2);
    };
    match billing_api::store::migrate::write_all(backend, &out) {
        Ok(n) => {
            println!("wrote {n} migration(s) for {} to {}", backend.name(), out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
