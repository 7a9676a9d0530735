//! Every place where SQLite and PostgreSQL need different SQL, named once. Everything else in the
//! store is portable SQL run through sqlx's `Any` driver, and the migrations name their dialect
//! blocks in `migrations/` (see `migrate::source`).
use crate::config::{Backend, DatabaseConfig};

/// The statements around migrating: the database's name (the lock's key is made from it), take
/// the lock if free, release it, lift the statement timeout, and name the indexes an interrupted
/// concurrent build left invalid.
pub(super) struct MigrationLockSql {
    pub database: &'static str,
    pub try_lock: &'static str,
    pub unlock: &'static str,
    pub no_timeout: &'static str,
    pub invalid_indexes: &'static str,
}

impl Backend {
    /// Opens a transaction that will write. SQLite takes its write lock up front so that two
    /// writers never deadlock upgrading read locks; PostgreSQL locks rows as it goes.
    pub fn begin_write_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// Opens a transaction that will write what it read, every statement seeing the same
    /// snapshot: SQLite's write transaction (no other writer until it ends), PostgreSQL's
    /// `REPEATABLE READ` (what commits meanwhile stays out of it).
    pub fn begin_snapshot_write_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ",
        }
    }

    /// Appended to a `SELECT` that reads rows to change them: PostgreSQL holds them until the
    /// transaction ends; on SQLite the write transaction already excludes every other writer.
    pub fn for_update(self) -> &'static str {
        match self {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// Appended to a `SELECT` that reads rows of `alias` an operation depends on without
    /// changing them: PostgreSQL keeps them from changing until the transaction ends (a writer
    /// waits for it); on SQLite the write transaction already excludes every other writer.
    pub fn for_share_of(self, alias: &str) -> String {
        match self {
            Backend::Postgres => format!(" FOR SHARE OF {alias}"),
            Backend::Sqlite => String::new(),
        }
    }

    /// Takes the migration lock if it is free, answering whether it did (`$1`: the lock's key),
    /// and releases it. Only PostgreSQL has one (SQLite's write lock serialises its migrators).
    /// Taken by polling rather than by a waiting `pg_advisory_lock`: a statement that waits holds
    /// a snapshot, and a `CREATE INDEX CONCURRENTLY` run by the lock's holder waits for every
    /// snapshot to go, which would be a deadlock.
    pub(super) fn migration_lock_sql(self) -> Option<MigrationLockSql> {
        match self {
            Backend::Postgres => Some(MigrationLockSql {
                database: "SELECT current_database()::text",
                try_lock: "SELECT pg_try_advisory_lock($1)",
                unlock: "SELECT pg_advisory_unlock($1)",
                // An index built concurrently on a large table takes longer than any request
                // may: the migrating connection has no statement timeout (it is closed after).
                no_timeout: "SET statement_timeout = 0",
                invalid_indexes: "SELECT c.relname::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                    JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT i.indisvalid AND n.nspname = current_schema() \
                    ORDER BY 1",
            }),
            Backend::Sqlite => None,
        }
    }

    /// Appended to a `SELECT` that claims queued rows of `alias`: on PostgreSQL each claimer
    /// skips the rows others hold, so any number of replicas claim without waiting on each other.
    pub fn claim_rows_of(self, alias: &str) -> String {
        match self {
            Backend::Postgres => format!(" FOR UPDATE OF {alias} SKIP LOCKED"),
            Backend::Sqlite => String::new(),
        }
    }

    /// A query that takes a transaction-scoped advisory lock on the text `$1:$2` without
    /// waiting, answering 1 when it got it. Only PostgreSQL has them; SQLite runs in one process,
    /// whose in-memory registry covers what they are for.
    pub(super) fn try_advisory_lock_sql(self) -> Option<&'static str> {
        match self {
            Backend::Postgres => Some(
                "SELECT CASE WHEN pg_try_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0)) THEN 1 ELSE 0 END",
            ),
            Backend::Sqlite => None,
        }
    }

    /// Per-connection settings. SQLite: write-ahead log, fsync on every commit (an acknowledged
    /// write survives power loss), foreign keys, and a lock wait. PostgreSQL: a statement timeout.
    pub(super) fn session_setup_sql(self, config: &DatabaseConfig) -> String {
        match self {
            Backend::Sqlite => format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = {};",
                config.busy_timeout.as_millis()
            ),
            Backend::Postgres => format!("SET statement_timeout = {}", config.statement_timeout.as_millis()),
        }
    }

    /// Counts the tables named `$1` in the current schema.
    pub(super) fn table_exists_sql(self) -> &'static str {
        match self {
            Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1",
            Backend::Postgres => {
                "SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE tablename = $1 AND schemaname = current_schema()"
            }
        }
    }
}

impl Backend {
    /// A table (`alias`) of the objects of the JSON array bound at `param`, one row each, with
    /// `columns` (name, `text`, `bigint` or `json`) read from their members: how a batch of rows goes to
    /// the database as one parameter, in one statement whatever its size.
    pub fn json_records(self, param: &str, alias: &str, columns: &[(&str, &str)]) -> String {
        match self {
            Backend::Postgres => {
                let typed: Vec<String> = columns.iter().map(|(name, ty)| format!("{name} {ty}")).collect();
                format!("json_to_recordset({param}::json) AS {alias}({})", typed.join(", "))
            }
            Backend::Sqlite => {
                let read: Vec<String> = columns
                    .iter()
                    .map(|(name, _)| format!("json_extract(value, '$.{name}') AS {name}"))
                    .collect();
                format!("(SELECT {} FROM json_each({param})) AS {alias}", read.join(", "))
            }
        }
    }

    /// A row's identity within a transaction that alone deletes from its table (PostgreSQL's
    /// `ctid`, SQLite's `rowid`), as text: how rows read can be deleted exactly, and no others.
    pub fn row_id_sql(self) -> &'static str {
        match self {
            Backend::Postgres => "CAST(ctid AS TEXT)",
            Backend::Sqlite => "CAST(rowid AS TEXT)",
        }
    }

    /// Deletes from `table` the rows whose identities ([`Backend::row_id_sql`]) are in the JSON
    /// array of strings bound as `$1` (on PostgreSQL, found by a TID scan).
    pub fn delete_rows_sql(self, table: &str) -> String {
        match self {
            Backend::Postgres => format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT CAST(value AS tid) FROM json_array_elements_text($1::json)))"
            ),
            Backend::Sqlite => {
                format!("DELETE FROM {table} WHERE rowid IN (SELECT CAST(value AS INTEGER) FROM json_each($1))")
            }
        }
    }

    /// A table (`alias`) with one column, `value`, of the strings of the JSON array at `param`.
    pub fn json_texts(self, param: &str, alias: &str) -> String {
        match self {
            Backend::Postgres => format!("json_array_elements_text({param}::json) AS {alias}(value)"),
            Backend::Sqlite => format!("json_each({param}) AS {alias}"),
        }
    }
}

impl Backend {
    /// The statement that creates the partition of `meter_events` for `[from, to)` (Unix seconds)
    /// named `name`, if the backend partitions it (PostgreSQL only; on SQLite the table is one).
    /// Run in a transaction of its own with a short lock wait: creating a partition locks the
    /// parent table, and ingestion must never queue behind it for long.
    pub fn meter_event_partition_sql(self, name: &str, from: i64, to: i64) -> Option<[String; 2]> {
        match self {
            Backend::Postgres => Some([
                "SET LOCAL lock_timeout = '2s'".to_owned(),
                format!(
                    "CREATE TABLE IF NOT EXISTS {name} PARTITION OF meter_events FOR VALUES FROM ({from}) TO ({to})"
                ),
            ]),
            Backend::Sqlite => None,
        }
    }
}
