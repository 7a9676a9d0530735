//! Test harness: the app in-process on 127.0.0.1:0 with a fresh database per test, on SQLite
//! or PostgreSQL; and the real binary for process-level tests.
pub mod api;
pub mod jwt;
pub mod postgres;
pub mod process;
pub mod receiver;
pub mod redis;

use std::net::SocketAddr;

use billing_api::app::{Application, BuildOptions};
use billing_api::config::{Config, Sources};
use billing_api::shutdown::Shutdown;
use billing_api::store::{Backend, Store};

/// Runs a test body once per backend: `backend_tests!(name, name2)` expects `async fn name(Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(billing_api::store::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(billing_api::store::Backend::Postgres).await
            }
        }
    )*};
}

/// A database for one test. SQLite lives in a temporary folder that is removed with it.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// A migrated database, or `None` (test skipped) when PostgreSQL is not available here.
    pub async fn migrated(backend: Backend) -> Option<TestDb> {
        Self::create(backend, true).await
    }

    /// The database of a running app, for a second app (a replica) on it.
    pub fn shared(app: &TestApp) -> TestDb {
        TestDb {
            url: app._db.url.clone(),
            _dir: None,
        }
    }

    /// A database with no tables at all.
    pub async fn empty(backend: Backend) -> Option<TestDb> {
        Self::create(backend, false).await
    }

    async fn create(backend: Backend, migrated: bool) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/billing.db", dir.path().display());
                if migrated {
                    let store = Store::connect_lazy(&config_for(&url, &[]).database).expect("store");
                    store.migrate_run().await.expect("migrate sqlite");
                    store.close().await;
                }
                Some(TestDb { url, _dir: Some(dir) })
            }
            Backend::Postgres => match postgres::availability() {
                postgres::Availability::Ready(admin) => {
                    let url = postgres::create_database(&admin, migrated)
                        .await
                        .expect("create test database");
                    Some(TestDb { url, _dir: None })
                }
                postgres::Availability::Unavailable(why) => {
                    if std::env::var("CI").is_ok_and(|v| v == "true") {
                        panic!("PostgreSQL tests cannot be skipped under CI=true: {why}");
                    }
                    eprintln!("SKIPPED (PostgreSQL): {why}; set TEST_DATABASE_URL to run these tests");
                    None
                }
            },
        }
    }
}

/// 32 bytes of 0x2a in base64: a key for tests only.
pub const TEST_ENCRYPTION_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// The configuration a test app runs with: the real loader, fed a test environment.
pub fn config_for(url: &str, extra_env: &[(&str, &str)]) -> Config {
    let mut env = vec![
        ("BILLING_SERVER__PORT".to_owned(), "0".to_owned()),
        ("BILLING_ADMIN__PORT".to_owned(), "0".to_owned()),
        ("BILLING_DATABASE__URL".to_owned(), url.to_owned()),
        ("BILLING_DATABASE__MIGRATE_ON_START".to_owned(), "true".to_owned()),
        ("BILLING_SHUTDOWN__GRACE_PERIOD".to_owned(), "0s".to_owned()),
        // Webhooks on, to receivers the tests run on loopback.
        (
            "BILLING_WEBHOOKS__ENCRYPTION_KEY".to_owned(),
            TEST_ENCRYPTION_KEY.to_owned(),
        ),
        ("BILLING_WEBHOOKS__ALLOW_HTTP".to_owned(), "true".to_owned()),
        // Rate limits on (every request passes through them) but out of reach; the rate limit
        // tests set small budgets.
        ("BILLING_RATE_LIMIT__READ_PER_SECOND".to_owned(), "100000".to_owned()),
        ("BILLING_RATE_LIMIT__READ_BURST".to_owned(), "100000".to_owned()),
        ("BILLING_RATE_LIMIT__WRITE_PER_SECOND".to_owned(), "100000".to_owned()),
        ("BILLING_RATE_LIMIT__WRITE_BURST".to_owned(), "100000".to_owned()),
        (
            "BILLING_RATE_LIMIT__UNAUTHENTICATED_PER_SECOND".to_owned(),
            "100000".to_owned(),
        ),
        (
            "BILLING_RATE_LIMIT__UNAUTHENTICATED_BURST".to_owned(),
            "100000".to_owned(),
        ),
        (
            "BILLING_WEBHOOKS__ALLOWED_NETWORKS".to_owned(),
            "127.0.0.0/8".to_owned(),
        ),
    ];
    env.extend(extra_env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    match Config::load(&Sources { file: None, env }) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("test configuration is invalid: {e}"),
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub client: reqwest::Client,
    pub shutdown: Shutdown,
    pub store: Store,
    /// Kept so the database outlives the app.
    pub _db: TestDb,
    pub _server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }
}

/// The app on a fresh migrated database; `None` when the backend is unavailable (skipped).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, &[]).await
}

pub async fn spawn_app_with(backend: Backend, env: &[(&str, &str)]) -> Option<TestApp> {
    let db = TestDb::migrated(backend).await?;
    Some(spawn_on(db, env).await)
}

pub async fn spawn_on(db: TestDb, env: &[(&str, &str)]) -> TestApp {
    let config = config_for(&db.url, env);
    let app = Application::build(config, BuildOptions { test_routes: true })
        .await
        .expect("build app");
    let addr = app.local_addr();
    let admin = app.admin_addr();
    let shutdown = app.shutdown();
    let store = app.store();
    let server = tokio::spawn(app.run());
    let client = client();
    TestApp {
        addr,
        admin,
        client,
        shutdown,
        store,
        _db: db,
        _server: server,
    }
}

/// Asserts a problem+json response and returns its body.
pub async fn assert_problem(response: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: serde_json::Value = response.json().await.expect("problem body is JSON");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["status"], status, "{body}");
    for member in ["type", "title", "detail"] {
        assert!(
            body[member].as_str().is_some_and(|s| !s.is_empty()),
            "missing {member}: {body}"
        );
    }
    assert_eq!(
        body["request_id"].as_str(),
        request_id.as_deref(),
        "request_id matches the header"
    );
    body
}

/// An HTTP client for tests (reqwest's TLS needs the process-wide crypto provider).
pub fn client() -> reqwest::Client {
    billing_api::outbound::install_crypto_provider();
    reqwest::Client::new()
}

pub fn blocking_client() -> reqwest::blocking::Client {
    billing_api::outbound::install_crypto_provider();
    reqwest::blocking::Client::new()
}

/// The (field, code) pairs of a 422 problem's `errors`.
pub fn field_errors(problem: &serde_json::Value) -> std::collections::BTreeSet<(String, String)> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or_default().to_owned(),
                        e["code"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Writes batches together, in one transaction, as the group commit does with batches of one
/// tenant that wait for a writer (`metering::write_group`): with `COPY` on PostgreSQL, in one
/// `Any` transaction on SQLite. Each is checked first, as each request does. Errors as text.
pub async fn ingest_group(
    store: &Store,
    ctx: &billing_api::operation::Ctx,
    batches: Vec<Vec<billing_api::billing::metering::NewEvent>>,
) -> Result<Vec<billing_api::objects::MeterEventBatch>, String> {
    use billing_api::billing::metering;
    use billing_api::store::meter_events::Writer;
    let text = |e: &dyn std::fmt::Display| e.to_string();
    let mut prepared = Vec::new();
    for events in batches {
        let mut conn = store.acquire().await.map_err(|e| text(&e))?;
        prepared.push(
            metering::prepare(&mut conn, ctx, events, false)
                .await
                .map_err(|e| text(&e))?,
        );
    }
    let batches: Vec<&metering::Prepared> = prepared.iter().collect();
    if let Some(tx) = store.begin_copy().await {
        let mut tx = tx.map_err(|e| text(&e))?;
        let written = metering::write_group(Writer::Postgres(&mut tx), &ctx.tenant, ctx.now, &batches)
            .await
            .map_err(|e| text(&e))?;
        tx.commit().await.map_err(|e| text(&e))?;
        return Ok(written);
    }
    let mut tx = store.begin_write().await.map_err(|e| text(&e))?;
    let written = metering::write_group(Writer::Any(&mut tx, store.backend()), &ctx.tenant, ctx.now, &batches)
        .await
        .map_err(|e| text(&e))?;
    tx.commit().await.map_err(|e| text(&e))?;
    Ok(written)
}

/// Ingests a batch as `POST /v1/meter_events` does without an `Idempotency-Key`: checked on a
/// pooled connection, then written with `COPY` in a transaction of PostgreSQL's own driver, or
/// in one `Any` transaction on SQLite. Errors as text, for property tests.
pub async fn ingest(
    store: &Store,
    ctx: &billing_api::operation::Ctx,
    events: Vec<billing_api::billing::metering::NewEvent>,
) -> Result<billing_api::objects::MeterEventBatch, String> {
    use billing_api::billing::metering;
    let text = |e: &dyn std::fmt::Display| e.to_string();
    if !store.copies() {
        let mut tx = store.begin_write().await.map_err(|e| text(&e))?;
        let batch = metering::ingest(&mut tx, ctx, events, false)
            .await
            .map_err(|e| text(&e))?;
        tx.commit().await.map_err(|e| text(&e))?;
        return Ok(batch);
    }
    let writers = billing_api::billing::group_commit::GroupCommit::start(store, 1);
    metering::ingest_copying(&writers, store, ctx, events, false)
        .await
        .map_err(|e| text(&e))
}
