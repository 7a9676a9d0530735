//! A throwaway PostgreSQL cluster for the tests of this process, started from the installed
//! binaries (as the `postgres` user when running as root, since PostgreSQL refuses root), unless
//! `TEST_DATABASE_URL` names a server to use instead.
//!
//! The cluster is supervised by a small shell that reads our end of a pipe: when this process
//! exits, however it exits, the pipe closes and the shell stops PostgreSQL and removes its files.
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Why PostgreSQL tests cannot run here, or the admin URL of the server they use.
pub enum Availability {
    Ready(String),
    Unavailable(String),
}

struct Cluster {
    admin_url: String,
    _supervisor: Option<Mutex<ChildStdin>>,
}

static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
static TEMPLATE: tokio::sync::OnceCell<Result<(), String>> = tokio::sync::OnceCell::const_new();
pub const TEMPLATE_DB: &str = "billing_template";

pub fn availability() -> Availability {
    match CLUSTER.get_or_init(start) {
        Ok(c) => Availability::Ready(c.admin_url.clone()),
        Err(why) => Availability::Unavailable(why.clone()),
    }
}

fn start() -> Result<Cluster, String> {
    if let Ok(url) = std::env::var("TEST_DATABASE_URL") {
        return Ok(Cluster {
            admin_url: url,
            _supervisor: None,
        });
    }
    let bindir = find_bindir().ok_or("no PostgreSQL binaries (initdb, postgres) found")?;
    let run_as = if is_root() {
        Some(postgres_user().ok_or("running as root but there is no `postgres` user")?)
    } else {
        None
    };

    let base = std::env::temp_dir().join(format!(
        "billing-api-test-pg-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&base).map_err(|e| format!("create {}: {e}", base.display()))?;
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(&base, Some(uid), Some(gid)).map_err(|e| format!("chown {}: {e}", base.display()))?;
    }
    let data = base.join("data");
    let mut initdb = Command::new(bindir.join("initdb"));
    initdb
        .args([
            "-D",
            &data.to_string_lossy(),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    as_user(&mut initdb, run_as);
    let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
    }

    let port = free_port()?;
    let log = base.join("postgres.log");
    let script = r#"
        "$1/postgres" -D "$2/data" -p "$3" -k "$2" -c listen_addresses=127.0.0.1 \
            -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 \
            >"$2/postgres.log" 2>&1 &
        pid=$!
        cat >/dev/null
        kill -INT "$pid" 2>/dev/null
        wait "$pid"
        rm -rf "$2"
    "#;
    let mut sh = Command::new("sh");
    sh.args([
        "-c",
        script,
        "sh",
        &bindir.to_string_lossy(),
        &base.to_string_lossy(),
        &port.to_string(),
    ])
    .stdin(Stdio::piped())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    as_user(&mut sh, run_as);
    let mut child = sh.spawn().map_err(|e| format!("start postgres: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin for the supervisor")?;

    let deadline = Instant::now() + Duration::from_secs(30);
    let isready = bindir.join("pg_isready");
    loop {
        let ok = Command::new(&isready)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-q"])
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        if Instant::now() > deadline {
            let mut text = String::new();
            let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut text));
            return Err(format!("postgres did not become ready on port {port}: {text}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Cluster {
        admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        _supervisor: Some(Mutex::new(stdin)),
    })
}

/// Creates the template database once per process and migrates it, so that each test gets a
/// migrated database by copying it.
pub async fn ensure_template(admin_url: &str) -> Result<(), String> {
    TEMPLATE
        .get_or_init(|| async {
            let mut admin = PgConnection::connect(admin_url).await.map_err(|e| e.to_string())?;
            let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                .bind(TEMPLATE_DB)
                .fetch_optional(&mut admin)
                .await
                .map_err(|e| e.to_string())?;
            if exists.is_none() {
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {TEMPLATE_DB}")))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            admin.close().await.ok();
            let url = with_database(admin_url, TEMPLATE_DB);
            let config = super::config_for(&url, &[]);
            let store = billing_api::store::Store::connect_lazy(&config.database).map_err(|e| e.to_string())?;
            store.migrate_run().await.map_err(|e| e.to_string())?;
            store.close().await;
            Ok(())
        })
        .await
        .clone()
}

/// A new database, empty or copied from the migrated template.
pub async fn create_database(admin_url: &str, from_template: bool) -> Result<String, String> {
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    let sql = if from_template {
        ensure_template(admin_url).await?;
        format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    } else {
        format!("CREATE DATABASE {name} TEMPLATE template0")
    };
    let mut admin = PgConnection::connect(admin_url).await.map_err(|e| e.to_string())?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut admin)
        .await
        .map_err(|e| e.to_string())?;
    admin.close().await.ok();
    Ok(with_database(admin_url, &name))
}

fn with_database(url: &str, db: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

fn find_bindir() -> Option<PathBuf> {
    let has =
        |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file() && dir.join("pg_isready").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has(d))
        .collect();
    versions.sort();
    versions
        .pop()
        .or_else(|| std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| has(d))))
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn postgres_user() -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres"))
            .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
    })
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid).env("HOME", "/tmp");
        cmd.current_dir("/tmp");
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}
