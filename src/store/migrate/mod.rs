//! Schema migrations, embedded in the binary from `migrations/`: one source per migration,
//! rendered for each backend by [`source`].
//!
//! Every migration is reversible, and a released migration is never edited: sqlx records the
//! checksum of each one it applies and refuses a database whose applied migration changed
//! (the test below pins them). Running is safe from several processes at once on PostgreSQL
//! (sqlx holds an advisory lock while it applies), and a database migrated by a newer release is
//! accepted, so an older binary can still run against it during a rollback (expand/contract).
use std::collections::BTreeMap;
use std::sync::OnceLock;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Row, SqlStr};

use super::{Backend, Store};

pub mod source;

/// One migration as compiled in by `build.rs`.
#[derive(Debug)]
pub struct EmbeddedMigration {
    pub version: i64,
    /// The file name without its `.up.sql`: `0002_billing`.
    pub name: &'static str,
    pub description: &'static str,
    /// Runs outside a transaction (its first line is `-- no-transaction`), as `CREATE INDEX
    /// CONCURRENTLY` must; such a migration holds a single statement.
    pub no_tx: bool,
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
                m.no_tx,
            ));
            migrations.push(Migration::new(
                m.version,
                description,
                MigrationType::ReversibleDown,
                down,
                m.no_tx,
            ));
        }
        let mut migrator = Migrator::with_migrations(migrations);
        // Migrations applied by a newer release are not an error: see the module comment.
        migrator.set_ignore_missing(true);
        // The lock is taken around the migrator, without waiting in a statement (see
        // `lock_migrations`).
        migrator.set_locking(false);
        migrator
    })
}

/// How long a migrator waits between two tries of a taken migration lock.
const LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(200);

/// Takes the migration lock on PostgreSQL, trying until it is free; returns what releases it.
/// It is the lock sqlx's migrator takes (same key: from the database's name), so the
/// binaries of earlier releases wait for this one and this one for them.
async fn lock_migrations(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    backend: Backend,
) -> Result<Option<(&'static str, i64)>, sqlx::Error> {
    let Some(sql) = backend.migration_lock_sql() else {
        return Ok(None);
    };
    sqlx::query(sql.no_timeout).execute(&mut **conn).await?;
    let name: String = sqlx::query_scalar(sql.database).fetch_one(&mut **conn).await?;
    let key = 0x3d32_ad9e_i64 * i64::from(crc32fast::hash(name.as_bytes()));
    loop {
        let taken: bool = sqlx::query_scalar(sql.try_lock)
            .bind(key)
            .fetch_one(&mut **conn)
            .await?;
        if taken {
            return Ok(Some((sql.unlock, key)));
        }
        tokio::time::sleep(LOCK_RETRY).await;
    }
}

/// Refuses to migrate over an index left invalid by an interrupted concurrent build: the
/// migration that built it is not recorded, and would otherwise fail on it with a vaguer error.
async fn check_indexes(conn: &mut sqlx::pool::PoolConnection<sqlx::Any>, backend: Backend) -> Result<(), MigrateError> {
    let Some(sql) = backend.migration_lock_sql() else {
        return Ok(());
    };
    let invalid: Vec<String> = sqlx::query_scalar(sql.invalid_indexes).fetch_all(&mut **conn).await?;
    match invalid.into_iter().next() {
        Some(index) => Err(MigrateError::InvalidIndex(index)),
        None => Ok(()),
    }
}

async fn unlock_migrations(
    conn: &mut sqlx::pool::PoolConnection<sqlx::Any>,
    unlock: Option<(&'static str, i64)>,
) -> Result<(), sqlx::Error> {
    if let Some((sql, key)) = unlock {
        sqlx::query_scalar::<_, bool>(sql)
            .bind(key)
            .fetch_one(&mut **conn)
            .await?;
    }
    Ok(())
}

/// Writes every migration as `backend` runs it into `out`; returns how many.
pub fn write_all(backend: Backend, out: &std::path::Path) -> Result<usize, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for m in embedded(backend) {
        for (suffix, sql) in [("up", m.up), ("down", m.down)] {
            let path = out.join(format!("{}.{suffix}.sql", m.name));
            std::fs::write(&path, sql).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
    }
    Ok(embedded(backend).len())
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
    #[error(
        "index {0} was left invalid by an interrupted concurrent build: drop it (DROP INDEX CONCURRENTLY {0}) and run the migrations again"
    )]
    InvalidIndex(String),
}

impl Store {
    /// Applies every pending migration, waiting for any other migrating process to finish first.
    pub async fn migrate_run(&self) -> Result<usize, MigrateError> {
        let before = self.pending_migrations().await?;
        let mut conn = self.pool().acquire().await?;
        let unlock = lock_migrations(&mut conn, self.backend()).await?;
        let result = async {
            check_indexes(&mut conn, self.backend()).await?;
            migrator(self.backend()).run_direct(None, &mut *conn, false).await?;
            unlock_migrations(&mut conn, unlock).await?;
            Ok::<_, MigrateError>(())
        }
        .await;
        // Not returned to the pool: it may still hold the lock, and it has no statement timeout.
        let _ = conn.close().await;
        result.map(|()| before)
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
        let unlock = lock_migrations(&mut conn, self.backend()).await?;
        let result = async {
            migrator(self.backend()).undo(&mut *conn, target).await?;
            unlock_migrations(&mut conn, unlock).await?;
            Ok::<_, MigrateError>(())
        }
        .await;
        let _ = conn.close().await;
        result.map(|()| last.version)
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
        let mut conn = self.pool().acquire().await?;
        let exists: i64 = sqlx::query_scalar(self.backend().table_exists_sql())
            .bind("_sqlx_migrations")
            .fetch_one(&mut *conn)
            .await?;
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

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha384};

    use super::*;

    /// SHA-384 (what sqlx stores) of every released migration, as each backend runs it.
    const RELEASED: &[(Backend, i64, &str, &str)] = &[
        (
            Backend::Sqlite,
            1,
            "58828ef542c069d4b7910533319324e9067becd6537ed062b638d84af7b5890296ac0460db474e566f07a611041794b1",
            "c5263a07e06d1430219b2c1863d774f1a9af2154a5b6cb443507f6526fae9e20ee524e5a2622c1c487842de53b78a28d",
        ),
        (
            Backend::Sqlite,
            2,
            "d79b47e9a6ba5202ddae8bca80a044e7a961bfe3c6f6112b05fdaf2ff1ac7a084959a2ffa0f98c77bb5573cddaa19ea4",
            "44d6d165f91bb4f57f9a87414724d26a30811e230559934527fad2e3d15290496537098446f0f18294ecffff42229be1",
        ),
        (
            Backend::Sqlite,
            3,
            "8b28557f1a337eb97908bb32ad8ceb26e04b07ca0a78565772fbb96f4c8d19095348b520031faa610fcc16e3e5705738",
            "33b9ac33fc687a807b2dc60a4480492257b1302713d19ecf6133b5e697db890e5c1829d22393101ac9bee94d74c8d17f",
        ),
        (
            Backend::Postgres,
            1,
            "58828ef542c069d4b7910533319324e9067becd6537ed062b638d84af7b5890296ac0460db474e566f07a611041794b1",
            "c5263a07e06d1430219b2c1863d774f1a9af2154a5b6cb443507f6526fae9e20ee524e5a2622c1c487842de53b78a28d",
        ),
        (
            Backend::Postgres,
            2,
            "ec7b5cfe24fcb7dfe209db0b92c0e1ebcef580c37993727812b06c38ea9de8877b29b28ce1d755cf6a5c2da2a0f156d6",
            "9b48a1dd48c1714540b61cb093951e1b20ab1eabdcb915d7b9fa0958c74d6a98be47bff4cd95750b6c43e0e496500baf",
        ),
        (
            Backend::Postgres,
            3,
            "8b28557f1a337eb97908bb32ad8ceb26e04b07ca0a78565772fbb96f4c8d19095348b520031faa610fcc16e3e5705738",
            "33b9ac33fc687a807b2dc60a4480492257b1302713d19ecf6133b5e697db890e5c1829d22393101ac9bee94d74c8d17f",
        ),
    ];

    #[test]
    fn released_migrations_are_never_edited() {
        let hash = |sql: &str| hex::encode(Sha384::digest(sql.as_bytes()));
        for (backend, version, up, down) in RELEASED {
            let m = embedded(*backend)
                .iter()
                .find(|m| m.version == *version)
                .unwrap_or_else(|| panic!("migration {version} is gone"));
            assert_eq!(
                hash(m.up),
                *up,
                "{} migration {version} (up) was edited",
                backend.name()
            );
            assert_eq!(
                hash(m.down),
                *down,
                "{} migration {version} (down) was edited",
                backend.name()
            );
        }
    }

    #[test]
    fn the_rendered_sql_has_no_dialect_markers() {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            for m in embedded(backend) {
                assert!(!m.up.contains("-- dialect") && !m.down.contains("-- dialect"));
            }
        }
    }
}
