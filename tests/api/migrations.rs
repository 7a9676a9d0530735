//! Migrations: applied, listed and reverted through the one data-access layer, on both backends.
use billing_api::store::migrate::{MigrateError, State, embedded};
use billing_api::store::{Backend, Store};

use crate::backend_tests;
use crate::helpers::{TestDb, config_for};

backend_tests!(
    run_status_and_revert,
    a_newer_release_schema_is_accepted_but_not_reverted,
    reverting_the_rollup_deltas_folds_them_into_the_rollups
);

async fn store_for(db: &TestDb) -> Store {
    Store::connect_lazy(&config_for(&db.url, &[]).database).unwrap()
}

async fn tenants_table_exists(store: &Store) -> bool {
    sqlx::query("SELECT COUNT(*) FROM tenants")
        .fetch_one(store.pool())
        .await
        .is_ok()
}

async fn run_status_and_revert(backend: Backend) {
    let Some(db) = TestDb::empty(backend).await else {
        return;
    };
    let store = store_for(&db).await;
    let total = embedded(backend).len();
    assert!(total >= 1);

    assert_eq!(store.pending_migrations().await.unwrap(), total);
    assert!(!tenants_table_exists(&store).await);
    assert_eq!(store.migrate_run().await.unwrap(), total);
    assert_eq!(store.pending_migrations().await.unwrap(), 0);
    assert!(tenants_table_exists(&store).await);
    assert_eq!(store.migrate_run().await.unwrap(), 0, "a second run has nothing to do");

    let status = store.migration_status().await.unwrap();
    assert!(status.iter().all(|r| r.state == State::Applied), "{status:?}");

    let last = embedded(backend).last().unwrap().version;
    assert_eq!(store.migrate_revert().await.unwrap(), last);
    assert_eq!(
        store.pending_migrations().await.unwrap(),
        1,
        "only the last one was reverted"
    );
    if total == 1 {
        assert!(!tenants_table_exists(&store).await, "the down migration ran");
        assert!(matches!(
            store.migrate_revert().await,
            Err(MigrateError::NothingToRevert)
        ));
    }
    store.migrate_run().await.unwrap();
    assert_eq!(store.pending_migrations().await.unwrap(), 0);
    store.close().await;
}

/// Migration 0019 (rollup deltas) folds the deltas left into the rollups before it drops their
/// table: reverting it loses no usage.
async fn reverting_the_rollup_deltas_folds_them_into_the_rollups(backend: Backend) {
    let Some(db) = TestDb::empty(backend).await else {
        return;
    };
    let store = store_for(&db).await;
    store.migrate_run().await.unwrap();
    let row = "'t', 'mtr_1', 'cus_1', 60, '[]'";
    for sql in [
        format!("INSERT INTO meter_rollups VALUES ({row}, 2, 20, 15, 61, 'a', 5)"),
        format!("INSERT INTO meter_rollup_deltas VALUES ({row}, 1, 7, 7, 65, 'b', 7, 1000)"),
        format!("INSERT INTO meter_rollup_deltas VALUES ({row}, 3, 30, 12, 62, 'c', 9, 1000)"),
        "INSERT INTO meter_rollup_deltas VALUES ('t', 'mtr_1', 'cus_1', 120, '[]', 1, 4, 4, 121, 'd', 4, 1000)"
            .to_owned(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(store.pool())
            .await
            .unwrap();
    }
    while store.migrate_revert().await.unwrap() != 19 {}
    let rollups: Vec<(i64, i64, i64, i64, i64, String, i64)> = sqlx::query_as(
        "SELECT minute, events, value_sum, value_max, latest_at, latest_id, latest_value FROM meter_rollups ORDER BY minute",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        rollups,
        [
            (60, 6, 57, 15, 65, "b".to_owned(), 7),
            (120, 1, 4, 4, 121, "d".to_owned(), 4)
        ]
    );
    store.migrate_run().await.unwrap();
    store.close().await;
}

async fn a_newer_release_schema_is_accepted_but_not_reverted(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let store = store_for(&db).await;
    // What a newer release's migration leaves behind.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (99999999, 'from the future', TRUE, $1, 1)",
    )
    .bind(vec![0u8; 48])
    .execute(store.pool())
    .await
    .unwrap();

    assert_eq!(store.pending_migrations().await.unwrap(), 0);
    let status = store.migration_status().await.unwrap();
    assert_eq!(status.last().unwrap().state, State::Unknown);
    store
        .migrate_run()
        .await
        .expect("an older binary still migrates (nothing to do)");
    assert!(matches!(
        store.migrate_revert().await,
        Err(MigrateError::RevertUnknown(99999999))
    ));
    store.close().await;
}

backend_tests!(connections_get_the_durability_and_timeout_settings);

async fn connections_get_the_durability_and_timeout_settings(backend: Backend) {
    let Some(db) = TestDb::migrated(backend).await else {
        return;
    };
    let store = store_for(&db).await;
    let mut conn = store.pool().acquire().await.unwrap();
    match backend {
        Backend::Sqlite => {
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(sync, 2, "synchronous = FULL");
            let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(fk, 1);
            let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(busy, 5000);
        }
        Backend::Postgres => {
            let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(timeout, "30s");
            // The pool that writes batches of meter events gets the same session settings.
            let mut copying = store.begin_copy().await.expect("a copy pool").unwrap();
            let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
                .fetch_one(&mut *copying)
                .await
                .unwrap();
            assert_eq!(timeout, "30s");
        }
    }
}

/// Migrations wait for the lock sqlx's migrator takes (so binaries of earlier releases and this
/// one exclude each other), and take it by polling, never waiting inside a statement (a waiting
/// statement holds a snapshot that a `CREATE INDEX CONCURRENTLY` would wait for: a deadlock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_wait_for_the_lock_an_earlier_release_takes() {
    use sqlx::Connection;
    use sqlx::migrate::Migrate;
    let Some(db) = TestDb::empty(Backend::Postgres).await else {
        return;
    };
    let mut earlier = sqlx::PgConnection::connect(&db.url).await.unwrap();
    earlier.lock().await.unwrap();
    let store = store_for(&db).await;
    let run = tokio::spawn(async move { store.migrate_run().await.map_err(|e| e.to_string()) });
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(!run.is_finished(), "it waits while the lock is held");
    earlier.unlock().await.unwrap();
    let applied = tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("it goes on once the lock is free")
        .unwrap()
        .unwrap();
    assert_eq!(applied, embedded(Backend::Postgres).len());
}

/// An index left invalid by an interrupted concurrent build stops `migrate run` with its name,
/// instead of being taken for a built one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_index_stops_migrations_and_is_named() {
    let Some(db) = TestDb::empty(Backend::Postgres).await else {
        return;
    };
    let store = store_for(&db).await;
    for sql in [
        "CREATE TABLE leftovers (x BIGINT)",
        "INSERT INTO leftovers VALUES (1), (1)",
    ] {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    // A unique index over duplicates fails to build and stays behind, invalid.
    sqlx::query("CREATE UNIQUE INDEX CONCURRENTLY leftovers_x ON leftovers (x)")
        .execute(store.pool())
        .await
        .unwrap_err();
    let refused = store.migrate_run().await.unwrap_err();
    assert!(
        matches!(refused, MigrateError::InvalidIndex(ref name) if name == "leftovers_x"),
        "{refused}"
    );
    sqlx::query("DROP INDEX CONCURRENTLY leftovers_x")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.migrate_run().await.unwrap(), embedded(Backend::Postgres).len());
}
