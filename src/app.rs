//! Builds the service from its configuration and runs it until shutdown.
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::idempotency::{self, Registry};
use crate::api::{AppState, Shared};
use crate::auth::Authenticator;
use crate::billing::group_commit::GroupCommit;
use crate::build_info;
use crate::config::Config;
use crate::http;
use crate::http::listener::SocketOwner;
use crate::shutdown::Shutdown;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("migrations failed: {0}")]
    Migrate(#[from] crate::store::migrate::MigrateError),
    #[error("authentication setup failed: {0}")]
    Auth(String),
    #[error("rate limit setup failed: {0}")]
    RateLimit(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// The API's socket: the one systemd (or another supervisor) passes in by socket activation
/// (`LISTEN_FDS`), which outlives restarts so that connections wait in its backlog instead of
/// being refused; otherwise one bound to `server.host:server.port`.
async fn api_listener(config: &Config) -> Result<(TcpListener, SocketOwner), StartError> {
    let addr = config.listen_addr();
    let bind_error = |source| StartError::Bind { addr, source };
    let mut inherited = listenfd::ListenFd::from_env();
    if let Some(socket) = inherited.take_tcp_listener(0).map_err(bind_error)? {
        socket.set_nonblocking(true).map_err(bind_error)?;
        let listener = TcpListener::from_std(socket).map_err(bind_error)?;
        tracing::info!(listen = ?listener.local_addr().ok(), "serving on the socket passed in (socket activation)");
        return Ok((listener, SocketOwner::Supervisor));
    }
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    Ok((listener, SocketOwner::ThisProcess))
}

/// Options that are not configuration: how the process was started.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuildOptions {
    /// Serve the debug-only `/__test/*` routes (ignored in release builds).
    pub test_routes: bool,
}

pub struct Application {
    config: Config,
    listener: TcpListener,
    listener_owner: SocketOwner,
    admin_listener: TcpListener,
    state: AppState,
    router: http::Service,
}

impl Application {
    /// Connects the database (migrating it if configured to) and binds the listener; the
    /// service does not serve until [`Application::run`].
    pub async fn build(config: Config, options: BuildOptions) -> Result<Self, StartError> {
        let store = Store::connect_lazy(&config.database)?;
        if config.database.migrate_on_start {
            let applied = store.migrate_run().await?;
            if applied > 0 {
                tracing::info!(applied, "migrations applied");
            }
        }
        let (listener, listener_owner) = api_listener(&config).await?;
        let addr = config.admin_addr();
        let admin_listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        crate::telemetry::metrics::install();
        // Loading the configuration checked the JWT settings and read their keys.
        let jwt = match config.auth.jwt.clone() {
            Some(settings) => Some(crate::auth::jwt::Verifier::new(settings).map_err(StartError::Auth)?),
            None => None,
        };
        let rate_limit = crate::ratelimit::Limiter::new(&config.rate_limit)
            .map_err(|e| StartError::RateLimit(e.to_string()))?
            .map(std::sync::Arc::new);
        let state = AppState::new(Shared {
            rate_limit,
            auth: Authenticator::new(store.clone(), jwt),
            idempotency: Registry::new(config.idempotency.retention),
            webhooks: crate::webhooks::Webhooks::new(&config.webhooks),
            meter_writers: store
                .copies()
                .then(|| GroupCommit::start(&store, config.database.copy_connections)),
            store,
            shutdown: Shutdown::new(),
            health_timeout: config.database.health_timeout,
            past_due_after: config.billing.past_due_after_seconds(),
            meter_event_grace: config.billing.meter_event_grace_seconds(),
        });
        let router = http::router(state.clone(), &config.server, options.test_routes);
        Ok(Application {
            config,
            listener,
            listener_owner,
            admin_listener,
            state,
            router,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| self.config.listen_addr())
    }

    /// Where `/metrics` is served.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or_else(|_| self.config.admin_addr())
    }

    pub fn shutdown(&self) -> Shutdown {
        self.state.shutdown.clone()
    }

    pub fn store(&self) -> Store {
        self.state.store.clone()
    }

    /// Serves until shutdown is requested, then drains as configured.
    pub async fn run(self) -> std::io::Result<()> {
        let Application {
            config,
            listener,
            listener_owner,
            admin_listener,
            state,
            router,
        } = self;
        let shutdown = state.shutdown.clone();
        let store = state.store.clone();
        let addr = listener.local_addr()?;
        let admin = admin_listener.local_addr()?;

        let migrations = match store.pending_migrations().await {
            Ok(0) => "up to date".to_owned(),
            Ok(n) => format!("{n} pending"),
            Err(e) => format!("unknown ({e})"),
        };
        tracing::info!(
            commit = build_info::GIT_COMMIT,
            listen = %addr,
            admin = %admin,
            traces = crate::telemetry::traces_enabled(),
            database = store.backend().name(),
            migrations,
            "billing-api started"
        );

        crate::systemd::ready(&format!("serving on {addr}"));
        let (grace, drain) = (config.shutdown.grace_period, config.shutdown.drain_timeout);
        let stop = shutdown.stop_token();
        let trigger = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.requested().await;
                crate::systemd::stopping();
                tracing::info!(
                    grace_period = %humantime::format_duration(grace),
                    "shutdown started: readiness reports 503; still serving during the grace period"
                );
                tokio::time::sleep(grace).await;
                tracing::info!(drain_timeout = %humantime::format_duration(drain), "no longer accepting connections; draining");
                shutdown.stop_now();
            }
        };
        tokio::spawn(trigger);
        crate::systemd::spawn_watchdog(stop.clone());
        let dispatcher = if config.webhooks.dispatcher {
            match crate::webhooks::dispatcher::Dispatcher::new(store.clone(), state.webhooks.clone()) {
                Ok(d) => Some(tokio::spawn(d.run(stop.clone(), drain))),
                Err(e) => {
                    tracing::error!(error = %e, "the webhook dispatcher cannot start");
                    None
                }
            }
        } else {
            None
        };
        // Stops between two subscriptions once `stop` fires; a transaction cut short rolls back
        // and leaves its subscription due for the next run.
        let scheduler = config.billing.scheduler.then(|| {
            tokio::spawn(crate::billing::cycles::run(
                store.clone(),
                config.billing.poll_interval,
                config.billing.past_due_after_seconds(),
                stop.clone(),
            ))
        });
        tokio::spawn(crate::billing::metering::maintain_partitions(
            store.clone(),
            config.billing.meter_event_grace_seconds(),
            stop.clone(),
        ));
        let folder = tokio::spawn(crate::billing::rollups::run(store.clone(), stop.clone()));
        if config.idempotency.purger {
            tokio::spawn(idempotency::purge_expired(
                store.clone(),
                config.idempotency.retention,
                config.idempotency.purge_interval,
                stop.clone(),
            ));
        }

        // The admin listener answers until the API has drained, so the last scrape sees it all.
        let admin_server = axum::serve(admin_listener, http::admin::router(state.clone()))
            .with_graceful_shutdown(stop.clone().cancelled_owned());
        tokio::spawn(async move {
            if let Err(e) = admin_server.await {
                tracing::error!(error = %e, "admin listener failed");
            }
        });

        let listener = http::listener::StopAccepting::new(listener, listener_owner, stop.clone())?;
        let server = http::serve::serve(listener, router, stop.clone(), config.server.request_timeout);
        let mut server = std::pin::pin!(server);
        let drained = tokio::select! {
            result = &mut server => { result?; true }
            _ = async { stop.cancelled().await; tokio::time::sleep(drain).await } => false,
        };
        if let Some(dispatcher) = dispatcher {
            // It stopped claiming when `stop` fired and has had the same drain time.
            let _ = tokio::time::timeout(drain + Duration::from_secs(1), dispatcher).await;
        }
        if let Some(scheduler) = scheduler {
            let _ = tokio::time::timeout(drain + Duration::from_secs(1), scheduler).await;
        }
        // The deltas the last requests appended are folded before the pool closes: the last
        // instance to stop leaves none waiting (a build before the folder would not count them).
        let _ = folder.await;
        if drained {
            match tokio::time::timeout(drain, crate::billing::rollups::fold_all(&store)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %crate::store::describe_error(&e), "the last fold of meter rollups failed")
                }
                Err(_) => tracing::warn!("the last fold of meter rollups did not finish in time"),
            }
            store.close().await;
            tracing::info!("shutdown complete");
        } else {
            // Abandoned requests may still hold connections; do not wait for them.
            let _ = tokio::time::timeout(Duration::from_secs(1), store.close()).await;
            tracing::warn!("drain timeout reached: in-flight requests were abandoned");
        }
        Ok(())
    }
}
