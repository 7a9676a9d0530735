//! Schema migrations, embedded in the binary from `migrations/<backend>/`.
//!
//! Every migration is reversible. Running is safe from several processes at once on PostgreSQL
//! (sqlx holds an advisory lock while it applies), and a database migrated by a newer release is
//! accepted, so an older binary can still run against it during a rollback (expand/contract).
use std::collections::BTreeMap;
use std::sync::OnceLock;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Row, SqlStr};

use super::{Backend, Store};

/// One migration as compiled in by `build.rs`.
#[derive(Debug)]
pub struct EmbeddedMigration {
    pub version: i64,
    pub description: &'static str,
    pub up: &'static str,
    pub down: &'static str,
}

mod embedded {
    use super::EmbeddedMigration;
    include!(concat!(env!("OUT_DIR"), "/migrations.rs"));
}

pub fn embedded(backend: Backend) -> &'static [EmbeddedMigration] {
    match backend {
        Backend::Sqlite => embedded::SQLITE,
        Backend::Postgres => embedded::POSTGRES,
    }
}

fn migrator(backend: Backend) -> &'static Migrator {
    static SQLITE: OnceLock<Migrator> = OnceLock::new();
    static POSTGRES: OnceLock<Migrator> = OnceLock::new();
    let cell = match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres => &POSTGRES,
    };
    cell.get_or_init(|| {
        let mut migrations = Vec::new();
        for m in embedded(backend) {
            let description = std::borrow::Cow::Borrowed(m.description);
            let (up, down) = (SqlStr::from_static(m.up), SqlStr::from_static(m.down));
            migrations.push(Migration::new(
                m.version,
                description.clone(),
                MigrationType::ReversibleUp,
                up,
                false,
            ));
            migrations.push(Migration::new(
                m.version,
                description,
                MigrationType::ReversibleDown,
                down,
                false,
            ));
        }
        let mut migrator = Migrator::with_migrations(migrations);
        // Migrations applied by a newer release are not an error: see the module comment.
        migrator.set_ignore_missing(true);
        migrator
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
    /// Started but did not finish; needs an operator.
    Failed,
    /// Applied by a newer release than this binary.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct MigrationRow {
    pub version: i64,
    pub description: String,
    pub state: State,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{}", super::describe_error(.0))]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("nothing to revert: no migration is applied")]
    NothingToRevert,
    #[error("the last applied migration ({0}) was added by a newer release; revert it with that release's binary")]
    RevertUnknown(i64),
}

impl Store {
    /// Applies every pending migration, waiting for any other migrating process to finish first.
    pub async fn migrate_run(&self) -> Result<usize, MigrateError> {
        let before = self.pending_migrations().await?;
        let mut conn = self.pool().acquire().await?;
        if let Err(e) = migrator(self.backend()).run_direct(None, &mut *conn, false).await {
            // The connection may still hold the migration lock: do not return it to the pool.
            let _ = conn.close().await;
            return Err(e.into());
        }
        Ok(before)
    }

    /// Reverts the most recently applied migration; returns its version.
    pub async fn migrate_revert(&self) -> Result<i64, MigrateError> {
        let rows = self.migration_status().await?;
        let applied: Vec<&MigrationRow> = rows
            .iter()
            .filter(|r| matches!(r.state, State::Applied | State::Unknown))
            .collect();
        let last = applied.last().ok_or(MigrateError::NothingToRevert)?;
        if last.state == State::Unknown {
            return Err(MigrateError::RevertUnknown(last.version));
        }
        let target = applied.iter().rev().nth(1).map_or(0, |r| r.version);
        let mut conn = self.pool().acquire().await?;
        if let Err(e) = migrator(self.backend()).undo(&mut *conn, target).await {
            let _ = conn.close().await;
            return Err(e.into());
        }
        Ok(last.version)
    }

    /// Every migration this binary knows and every one the database records, in version order.
    pub async fn migration_status(&self) -> Result<Vec<MigrationRow>, MigrateError> {
        let recorded = self.recorded_migrations().await?;
        let mut rows: BTreeMap<i64, MigrationRow> = BTreeMap::new();
        for m in embedded(self.backend()) {
            let state = match recorded.get(&m.version) {
                Some((_, true)) => State::Applied,
                Some((_, false)) => State::Failed,
                None => State::Pending,
            };
            let row = MigrationRow {
                version: m.version,
                description: m.description.into(),
                state,
            };
            rows.insert(m.version, row);
        }
        for (version, (description, success)) in recorded {
            rows.entry(version).or_insert(MigrationRow {
                version,
                description,
                state: if success { State::Unknown } else { State::Failed },
            });
        }
        Ok(rows.into_values().collect())
    }

    /// How many of this binary's migrations are not applied (failed ones count).
    pub async fn pending_migrations(&self) -> Result<usize, MigrateError> {
        let status = self.migration_status().await?;
        Ok(status
            .iter()
            .filter(|r| matches!(r.state, State::Pending | State::Failed))
            .count())
    }

    async fn recorded_migrations(&self) -> Result<BTreeMap<i64, (String, bool)>, sqlx::Error> {
        let exists_sql = match self.backend() {
            Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
            Backend::Postgres => {
                "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE tablename = '_sqlx_migrations' AND schemaname = current_schema()"
            }
        };
        let mut conn = self.pool().acquire().await?;
        let exists: i64 = sqlx::query_scalar(exists_sql).fetch_one(&mut *conn).await?;
        if exists == 0 {
            return Ok(BTreeMap::new());
        }
        let rows =
            sqlx::query("SELECT version, description, CASE WHEN success THEN 1 ELSE 0 END AS ok FROM _sqlx_migrations")
                .fetch_all(&mut *conn)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("version")?,
                    (r.try_get("description")?, r.try_get::<i64, _>("ok")? == 1),
                ))
            })
            .collect()
    }
}
