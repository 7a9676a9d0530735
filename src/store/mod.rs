//! The one data-access layer: a pool over SQLite or PostgreSQL, chosen from the URL scheme.
//!
//! Queries are written once in portable SQL and run through sqlx's `Any` driver; the few places
//! where the backends' SQL differs (transaction start, row locks, session settings) are named in
//! [`dialect`]. Each module owns its tables: its column lists, its row mapping, its filters.
pub mod audit;
pub mod catalog;
pub mod charges;
pub mod credit_notes;
pub mod credits;
pub mod customers;
mod dialect;
pub mod events;
pub mod idempotency;
pub mod invoices;
pub mod ledger;
pub mod meter_events;
pub mod meter_rollups;
pub mod meters;
pub mod migrate;
pub mod page;
pub mod partitions;
pub mod payments;
mod rows;
pub mod subscriptions;
pub mod tenants;
pub mod test_clocks;
pub mod usage_charges;
pub mod webhooks;

use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sqlx::pool::{PoolConnection, PoolOptions};
use sqlx::postgres::PgPool;
use sqlx::{Any, Postgres, Transaction};
use sqlx::{AnyPool, AssertSqlSafe, Executor};

use crate::config::DatabaseConfig;
pub use crate::config::{Backend, sqlite_is_in_memory};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the SQLite database folder {path}: {source}")]
    CreateDir { path: String, source: std::io::Error },
    #[error("invalid database URL: {0}")]
    Url(#[source] sqlx::Error),
}

/// The shared handle to the database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL's own driver, beside the `Any` pool, for what `Any` cannot say: `COPY`
    /// (meter event batches, see [`meter_events::Writer`]). Lazy: it opens no connection until
    /// a batch is written.
    copy: Option<PgPool>,
}

/// How many connections a pool holds, how many of them wait idle, and its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolOccupancy {
    /// `main` or `copy`.
    pub pool: &'static str,
    pub size: u32,
    pub idle: usize,
    pub max: u32,
}

/// What both pools share: timeouts, lifetimes, and the session settings run on every new
/// connection.
fn pool_options<DB: sqlx::Database>(config: &DatabaseConfig, session_sql: String) -> PoolOptions<DB>
where
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    PoolOptions::<DB>::new()
        .acquire_timeout(config.acquire_timeout)
        .idle_timeout(config.idle_timeout)
        .max_lifetime(config.max_lifetime)
        .after_connect(move |conn, _| {
            let sql = session_sql.clone();
            Box::pin(async move {
                conn.execute(sqlx::raw_sql(AssertSqlSafe(sql))).await?;
                Ok(())
            })
        })
}

impl Store {
    /// Builds the pool without connecting, so the API can start (and report itself unready)
    /// while the database is still coming up.
    pub fn connect_lazy(config: &DatabaseConfig) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let raw_url = config.url.expose_secret();
        let backend = Backend::from_url(raw_url)
            .ok_or_else(|| StoreError::Url(sqlx::Error::Configuration("unsupported URL scheme".into())))?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite_url(raw_url)?,
            Backend::Postgres => raw_url.to_owned(),
        };
        let session_sql = backend.session_setup_sql(config);
        let copy = match backend {
            Backend::Postgres if config.copy_connections > 0 => Some(
                pool_options::<Postgres>(config, session_sql.clone())
                    .max_connections(config.copy_connections)
                    .min_connections(0)
                    .connect_lazy(&url)
                    .map_err(StoreError::Url)?,
            ),
            _ => None,
        };
        let pool = pool_options::<Any>(config, session_sql)
            .max_connections(config.max_connections)
            .min_connections(config.min_connections)
            // Off by default: a ping before every checkout doubles the round trips of short
            // requests; a dead connection fails its query instead and the pool replaces it.
            .test_before_acquire(config.test_before_acquire)
            .connect_lazy(&url)
            .map_err(StoreError::Url)?;
        Ok(Store { pool, backend, copy })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Each pool's occupancy, for the scrape: `main`, and `copy` when batches of meter events
    /// have one ([`Store::copies`]).
    pub fn pool_occupancy(&self) -> impl Iterator<Item = PoolOccupancy> + use<> {
        let main = PoolOccupancy {
            pool: "main",
            size: self.pool.size(),
            idle: self.pool.num_idle(),
            max: self.pool.options().get_max_connections(),
        };
        let copy = self.copy.as_ref().map(|copy| PoolOccupancy {
            pool: "copy",
            size: copy.size(),
            idle: copy.num_idle(),
            max: copy.options().get_max_connections(),
        });
        std::iter::once(main).chain(copy)
    }

    /// A pooled connection; the wait is measured and a timeout counted, because pool starvation
    /// is the first sign of an undersized pool or a slow database.
    #[tracing::instrument(target = "otel", level = "debug", name = "db pool.acquire", skip_all)]
    pub async fn acquire(&self) -> Result<PoolConnection<Any>, sqlx::Error> {
        let started = Instant::now();
        let result = self.pool.acquire().await;
        observe_acquire(started, &result);
        result
    }

    /// A transaction that will write (see [`Backend::begin_write_sql`]), measured like
    /// [`Store::acquire`].
    pub async fn begin_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        self.begin_with(self.backend.begin_write_sql()).await
    }

    /// A transaction whose statements see one snapshot (see
    /// [`Backend::begin_snapshot_write_sql`]), measured like [`Store::acquire`].
    pub async fn begin_snapshot_write(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        self.begin_with(self.backend.begin_snapshot_write_sql()).await
    }

    async fn begin_with(&self, begin: &'static str) -> Result<Transaction<'static, Any>, sqlx::Error> {
        let conn = self.acquire().await?;
        Transaction::begin(conn, Some(sqlx::SqlSafeStr::into_sql_str(begin))).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether [`Store::begin_copy`] can: on PostgreSQL, unless `database.copy_connections` is 0.
    pub fn copies(&self) -> bool {
        self.copy.is_some()
    }

    /// A write transaction on PostgreSQL's own driver (which can `COPY`), measured like
    /// [`Store::acquire`]; `None` on SQLite.
    pub async fn begin_copy(&self) -> Option<Result<Transaction<'static, Postgres>, sqlx::Error>> {
        let pool = self.copy.as_ref()?;
        let started = Instant::now();
        let conn = pool.acquire().await;
        observe_acquire(started, &conn);
        Some(match conn {
            Ok(conn) => Transaction::begin(conn, None).await,
            Err(e) => Err(e),
        })
    }

    /// Runs a trivial query and reports how long it took.
    pub async fn ping(&self, timeout: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let query = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&self.pool);
        match tokio::time::timeout(timeout, query).await {
            Ok(Ok(_)) => Ok(started.elapsed()),
            Ok(Err(e)) => Err(describe_error(&e)),
            Err(_) => Err(format!("no answer within {}", humantime::format_duration(timeout))),
        }
    }

    pub async fn close(&self) {
        if let Some(copy) = &self.copy {
            copy.close().await;
        }
        self.pool.close().await;
    }
}

fn observe_acquire<T>(started: Instant, result: &Result<T, sqlx::Error>) {
    match result {
        Ok(_) => crate::telemetry::metrics::acquired(started.elapsed().as_secs_f64()),
        Err(sqlx::Error::PoolTimedOut) => crate::telemetry::metrics::acquire_timed_out(),
        Err(_) => {}
    }
}

/// Creates the folder of a file database and asks SQLite to create the file if it is missing.
fn prepare_sqlite_url(url: &str) -> Result<String, StoreError> {
    if sqlite_is_in_memory(url) {
        return Ok(url.to_owned());
    }
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
            path: parent.display().to_string(),
            source,
        })?;
    }
    let query = if query.split('&').any(|p| p.starts_with("mode=")) {
        query.to_owned()
    } else if query.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{query}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{query}"))
}

/// A database error in words that never include the connection URL (which may hold a password).
pub fn describe_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".into(),
        sqlx::Error::PoolClosed => "the connection pool is closed".into(),
        sqlx::Error::Io(io) => format!("cannot reach the database: {io}"),
        sqlx::Error::Tls(_) => "TLS handshake with the database failed".into(),
        sqlx::Error::Database(db) => format!("database error: {}", db.message()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode_and_keep_their_options() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/nested/db.sqlite", dir.path().display());
        let prepared = prepare_sqlite_url(&url).unwrap();
        assert!(prepared.ends_with("/nested/db.sqlite?mode=rwc"), "{prepared}");
        assert!(dir.path().join("nested").is_dir());

        let ro = format!("sqlite://{}/db.sqlite?mode=ro", dir.path().display());
        assert!(prepare_sqlite_url(&ro).unwrap().ends_with("?mode=ro"));
        assert_eq!(prepare_sqlite_url("sqlite::memory:").unwrap(), "sqlite::memory:");
    }

    #[test]
    fn backend_comes_from_the_scheme() {
        assert_eq!(Backend::from_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("postgres://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("postgresql://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::from_url("mysql://u@h/db"), None);
        assert_eq!(Backend::Postgres.for_update(), " FOR UPDATE");
        assert_eq!(
            Backend::Sqlite.for_update(),
            "",
            "SQLite's write transaction is the lock"
        );
    }
}
