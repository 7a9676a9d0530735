//! Process-level tests: the real binary, its exit codes, its output and its signals.
use std::time::Duration;

use billing_api::store::Backend;

use crate::helpers::TestDb;
use crate::helpers::process::{Server, json_lines, refs, run};

fn sqlite_env(dir: &tempfile::TempDir) -> Vec<(String, String)> {
    vec![
        (
            "BILLING_DATABASE__URL".into(),
            format!("sqlite://{}/billing.db", dir.path().display()),
        ),
        ("BILLING_SERVER__PORT".into(), "0".into()),
        ("BILLING_TEST_ROUTES".into(), "1".into()),
    ]
}

#[test]
fn version_names_commit_target_profile_and_rustc() {
    let (status, stdout, _) = run(&["--version"], &[]);
    assert!(status.success());
    for needle in [
        env!("CARGO_PKG_VERSION"),
        "commit:",
        "target:  x86_64",
        "profile: debug",
        "rustc:   rustc 1.",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing from:\n{stdout}");
    }
    let (status, stdout, _) = run(&["version", "--json"], &[]);
    assert!(status.success());
    let info: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        info.get("source_date_epoch").is_none(),
        "no build time unless SOURCE_DATE_EPOCH is given"
    );
}

#[test]
fn invalid_configuration_exits_78_and_names_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("billing.toml");
    std::fs::write(
        &file,
        "[server]\nport = 70000\n[database]\nmax_connections = 2\nmin_connections = 5\n",
    )
    .unwrap();
    let env = [
        ("BILLING_SERVER__REQUEST_TIMEOUT", "soon"),
        ("BILLING_LOG__FORMAT", "xml"),
        ("BILLING_SERVR__HOST", "0.0.0.0"),
        ("BILLING_DATABASE__URL_FILE", "/nonexistent/secret"),
    ];
    for args in [
        vec!["--config", file.to_str().unwrap(), "serve"],
        vec!["--config", file.to_str().unwrap(), "config", "check"],
    ] {
        let (status, stdout, stderr) = run(&args, &env);
        assert_eq!(status.code(), Some(78), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "nothing started: {stdout}");
        for needle in [
            "server.port: invalid value 70000",
            &format!("(from file {})", file.display()),
            "server.request_timeout: invalid value \"soon\"",
            "(from env BILLING_SERVER__REQUEST_TIMEOUT)",
            "log.format",
            "servr.host: unknown setting; did you mean server.host?",
            "database.url_file: cannot read secret file /nonexistent/secret",
            "database.min_connections: is 5 but database.max_connections is 2",
            "6 problems",
        ] {
            assert!(stderr.contains(needle), "{needle:?} missing from:\n{stderr}");
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn config_check_accepts_a_valid_configuration_and_show_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("db-url");
    std::fs::write(
        &secret,
        format!("sqlite://{}/secret-marker-Zq9.db\n", dir.path().display()),
    )
    .unwrap();
    let env = [
        ("BILLING_DATABASE__URL_FILE", secret.to_str().unwrap()),
        ("PORT", "9123"),
    ];
    let (status, stdout, stderr) = run(&["config", "check"], &env);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("valid"));

    let (status, stdout, _) = run(&["config", "show"], &env);
    assert!(status.success());
    assert!(!stdout.contains("secret-marker-Zq9"), "{stdout}");
    assert!(
        stdout.contains("url = \"[redacted]\"  # env BILLING_DATABASE__URL_FILE"),
        "{stdout}"
    );
    assert!(stdout.contains("port = 9123  # env PORT"), "{stdout}");
    assert!(stdout.contains("host = \"127.0.0.1\"  # default"), "{stdout}");

    let both = [
        ("BILLING_DATABASE__URL_FILE", secret.to_str().unwrap()),
        ("BILLING_DATABASE__URL", "sqlite://x.db"),
    ];
    let (status, _, stderr) = run(&["config", "check"], &both);
    assert_eq!(status.code(), Some(78));
    assert!(stderr.contains("set either database.url"), "{stderr}");
}

#[test]
fn a_secret_given_through_a_file_appears_nowhere_in_the_output() {
    let dir = tempfile::tempdir().unwrap();
    // A database URL whose password is the secret; the server it names does not exist.
    let secret = dir.path().join("db-url");
    std::fs::write(&secret, "postgres://billing:hunter2-Kx7@127.0.0.1:1/billing\n").unwrap();
    let env = [
        ("BILLING_DATABASE__URL_FILE", secret.to_str().unwrap()),
        ("BILLING_DATABASE__MIGRATE_ON_START", "true"),
        ("BILLING_DATABASE__ACQUIRE_TIMEOUT", "1s"),
        ("BILLING_LOG__LEVEL", "trace"),
    ];
    let (status, stdout, stderr) = run(&["serve"], &env);
    assert!(!status.success(), "cannot migrate an unreachable database");
    let all = format!("{stdout}\n{stderr}");
    assert!(!all.contains("hunter2-Kx7"), "{all}");
    assert!(stderr.contains("migrations failed"), "{stderr}");
    let (_, stdout, stderr) = run(&["config", "show"], &env);
    assert!(!format!("{stdout}{stderr}").contains("hunter2"));
    let (_, stdout, stderr) = run(&["migrate", "status"], &env);
    assert!(!format!("{stdout}{stderr}").contains("hunter2"), "{stderr}");

    // And while serving (without migrating): a request that reaches the failing database.
    let env = [
        ("BILLING_DATABASE__URL_FILE", secret.to_str().unwrap()),
        ("BILLING_SERVER__PORT", "0"),
        ("BILLING_DATABASE__ACQUIRE_TIMEOUT", "500ms"),
        ("BILLING_LOG__LEVEL", "debug"),
        ("BILLING_SHUTDOWN__GRACE_PERIOD", "0s"),
    ];
    let mut server = Server::start(&env);
    let addr = server.wait_for_address();
    let body = crate::helpers::blocking_client()
        .get(format!("http://{addr}/health/ready"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(body.contains("fail") && !body.contains("hunter2"), "{body}");
    server.signal("TERM");
    server.wait(Duration::from_secs(10));
    assert!(!server.text().contains("hunter2-Kx7"), "{}", server.text());
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut env = sqlite_env(&dir);
    env.retain(|(k, _)| k != "BILLING_SERVER__PORT");
    env.push(("BILLING_SERVER__PORT".into(), port.clone()));
    let (status, _, stderr) = run(&["serve"], &refs(&env));
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")) && stderr.contains("in use"),
        "{stderr}"
    );
}

#[test]
fn sigterm_turns_readiness_off_lets_in_flight_requests_finish_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = sqlite_env(&dir);
    env.push(("BILLING_SHUTDOWN__GRACE_PERIOD".into(), "1s".into()));
    env.push(("BILLING_SHUTDOWN__DRAIN_TIMEOUT".into(), "10s".into()));
    let mut server = Server::start(&refs(&env));
    let addr = server.wait_for_address();
    let client = crate::helpers::blocking_client();
    assert_eq!(
        client
            .get(format!("http://{addr}/health/ready"))
            .send()
            .unwrap()
            .status(),
        200
    );

    let slow_url = format!("http://{addr}/__test/slow?ms=2500");
    let slow = std::thread::spawn(move || {
        crate::helpers::blocking_client()
            .get(slow_url)
            .send()
            .map(|r| r.status().as_u16())
    });
    std::thread::sleep(Duration::from_millis(300));
    server.signal("TERM");
    server
        .wait_for_line("shutdown started", Duration::from_secs(5))
        .expect("shutdown logged");

    let ready = client.get(format!("http://{addr}/health/ready")).send().unwrap();
    assert_eq!(ready.status(), 503, "readiness fails during the grace period");
    // Kept-alive connections are closed, so a proxy has none left when the listener closes.
    assert_eq!(
        ready.headers().get("connection").map(|v| v.to_str().unwrap()),
        Some("close")
    );
    assert_eq!(slow.join().unwrap().unwrap(), 200, "the in-flight request completed");

    let status = server.wait(Duration::from_secs(15)).expect("the process exits");
    assert_eq!(status.code(), Some(0), "{}", server.text());
    let text = server.text();
    assert!(text.contains("shutdown complete"), "{text}");
    assert!(
        client.get(format!("http://{addr}/health/live")).send().is_err(),
        "nothing listens any more"
    );
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = sqlite_env(&dir);
    env.push(("BILLING_SHUTDOWN__GRACE_PERIOD".into(), "60s".into()));
    let mut server = Server::start(&refs(&env));
    server.wait_for_address();
    server.signal("TERM");
    server
        .wait_for_line("shutdown started", Duration::from_secs(5))
        .expect("shutdown logged");
    server.signal("INT");
    let status = server
        .wait(Duration::from_secs(5))
        .expect("exits without waiting for the grace period");
    assert_ne!(status.code(), Some(0));
}

#[test]
fn a_panic_is_a_500_problem_and_the_process_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let env = sqlite_env(&dir);
    let server = Server::start(&refs(&env));
    let addr = server.wait_for_address();
    let response = crate::helpers::blocking_client()
        .get(format!("http://{addr}/__test/panic"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body["code"], "internal_error");
    assert_eq!(
        crate::helpers::blocking_client()
            .get(format!("http://{addr}/health/live"))
            .send()
            .unwrap()
            .status(),
        200
    );

    let panic_line = server
        .wait_for_line("\"panic\"", Duration::from_secs(5))
        .expect("the panic is logged");
    let panic: serde_json::Value = serde_json::from_str(&panic_line).unwrap();
    assert_eq!(
        panic["request_id"], body["request_id"],
        "the panic log line carries the request id"
    );
}

#[test]
fn logs_are_json_lines_with_request_fields_and_redacted_headers() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = sqlite_env(&dir);
    env.push(("BILLING_LOG__LEVEL".into(), "info,billing_api=debug".into()));
    let server = Server::start(&refs(&env));
    let addr = server.wait_for_address();
    let client = crate::helpers::blocking_client();
    let response = client
        .get(format!("http://{addr}/__test/slow?ms=1"))
        .header("authorization", "Bearer tok-SECRET-9f")
        .header("x-request-id", "req-log-test-1")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    client.get(format!("http://{addr}/health/live")).send().unwrap();
    server.wait_for_line("req-log-test-1", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(200));

    let text = server.text();
    assert!(
        !text.contains("tok-SECRET-9f"),
        "the Authorization value is redacted:\n{text}"
    );
    let lines = json_lines(&text);
    assert!(!lines.is_empty());
    for line in &lines {
        for field in ["timestamp", "level", "target", "message", "service", "version"] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
    }
    let started = lines
        .iter()
        .find(|l| l["message"] == "billing-api started")
        .expect("startup line");
    assert_eq!(started["database"], "sqlite");
    assert_eq!(started["migrations"], "up to date");

    let access = lines
        .iter()
        .find(|l| l["message"] == "request completed" && l["request_id"] == "req-log-test-1")
        .expect("access line");
    assert_eq!(access["level"], "INFO");
    assert_eq!(access["method"], "GET");
    assert_eq!(access["route"], "/__test/slow", "the route template, not the raw path");
    assert_eq!(access["status"], 200);
    assert!(access["latency_ms"].as_f64().is_some());
    let received = lines
        .iter()
        .find(|l| l["message"] == "request received" && l["request_id"] == "req-log-test-1")
        .expect("debug line with headers");
    assert!(
        received["headers"].as_str().unwrap().contains("Sensitive"),
        "{received}"
    );

    let probe = lines
        .iter()
        .find(|l| l["message"] == "request completed" && l["route"] == "/health/live")
        .expect("probe line");
    assert_eq!(probe["level"], "DEBUG", "probes are logged at debug, not info");
}

#[test]
fn healthcheck_exits_0_only_when_the_service_is_ready() {
    let dir = tempfile::tempdir().unwrap();
    let env = sqlite_env(&dir);
    let server = Server::start(&refs(&env));
    let addr = server.wait_for_address();
    let port = addr.rsplit(':').next().unwrap();
    let (status, _, stderr) = run(&["healthcheck"], &[("BILLING_SERVER__PORT", port)]);
    assert!(status.success(), "{stderr}");
    drop(server);
    let (status, _, stderr) = run(&["healthcheck", "--timeout", "2"], &[("BILLING_SERVER__PORT", port)]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("not ready"), "{stderr}");
}

#[test]
fn migrate_sql_writes_what_each_backend_runs() {
    let dir = tempfile::tempdir().unwrap();
    for (backend, own, other) in [
        ("postgres", "LANGUAGE plpgsql", "RAISE(ABORT"),
        ("sqlite", "RAISE(ABORT", "LANGUAGE plpgsql"),
    ] {
        let out = dir.path().join(backend);
        let (status, stdout, stderr) = run(
            &["migrate", "sql", "--backend", backend, "--out", out.to_str().unwrap()],
            &[],
        );
        assert!(status.success(), "{stderr}");
        assert!(stdout.contains(&format!("for {backend}")), "{stdout}");
        let billing = std::fs::read_to_string(out.join("0002_billing.up.sql")).unwrap();
        assert!(
            billing.contains(own) && !billing.contains(other),
            "{backend}: {billing}"
        );
        assert!(!billing.contains("-- dialect"));
        assert!(out.join("0002_billing.down.sql").exists());
    }
    let (status, _, stderr) = run(&["migrate", "sql", "--backend", "mysql", "--out", "x"], &[]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("sqlite or postgres"), "{stderr}");
}

/// systemd's socket activation, by systemd's own tool: the service serves on the socket it is
/// given (LISTEN_FDS) rather than binding server.port.
#[test]
fn socket_activation_serves_on_the_socket_passed_in() {
    let Ok(activate) = which("systemd-socket-activate") else {
        assert!(
            std::env::var("CI").is_err(),
            "systemd-socket-activate is missing under CI"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = format!("sqlite://{}/s.db", dir.path().display());
    let child = std::process::Command::new(activate)
        // The tool passes the service no environment but what `-E` names: without them the
        // service would serve the default database in the working directory.
        .args([
            "-l",
            &format!("127.0.0.1:{port}"),
            "-E",
            "BILLING_DATABASE__URL",
            "-E",
            "BILLING_SERVER__PORT",
            "-E",
            "BILLING_ADMIN__PORT",
            "-E",
            "BILLING_SHUTDOWN__GRACE_PERIOD",
            crate::helpers::process::BIN,
            "serve",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BILLING_DATABASE__URL", &db)
        // A port nothing listens on: the socket passed in is what serves.
        .env("BILLING_SERVER__PORT", "1")
        .env("BILLING_ADMIN__PORT", "0")
        .env("BILLING_SHUTDOWN__GRACE_PERIOD", "0s")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = crate::helpers::blocking_client();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        match client.get(format!("http://127.0.0.1:{port}/health/ready")).send() {
            Ok(r) => break r.status().as_u16(),
            Err(_) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("no answer on the activated socket: {e}"),
        }
    };
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status, 200);
    assert!(log.contains("socket activation"), "{log}");
    assert!(
        dir.path().join("s.db").exists(),
        "the service used the database it was given"
    );
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
        .ok_or(())
}

#[test]
fn migrate_commands_run_list_and_revert() {
    let dir = tempfile::tempdir().unwrap();
    let env = [(
        "BILLING_DATABASE__URL",
        &*format!("sqlite://{}/m.db", dir.path().display()),
    )];
    let (status, stdout, _) = run(&["migrate", "status"], &env);
    assert!(status.success());
    assert!(stdout.contains("pending"), "{stdout}");
    let (status, stdout, _) = run(&["migrate", "run"], &env);
    assert!(status.success());
    assert!(stdout.contains("applied"), "{stdout}");
    let (_, stdout, _) = run(&["migrate", "status"], &env);
    assert!(stdout.contains("applied") && !stdout.contains("pending"), "{stdout}");
    let (status, stdout, _) = run(&["migrate", "revert"], &env);
    assert!(status.success());
    assert!(stdout.contains("reverted migration"), "{stdout}");
    let (_, stdout, _) = run(&["migrate", "status"], &env);
    assert!(stdout.contains("pending"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrate_runs_on_postgres_all_succeed_and_apply_each_migration_once() {
    let Some(db) = TestDb::empty(Backend::Postgres).await else {
        return;
    };
    let url = db.url.clone();
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || run(&["migrate", "run"], &[("BILLING_DATABASE__URL", &url)]))
        })
        .collect();
    for handle in handles {
        let (status, stdout, stderr) = handle.join().unwrap();
        assert!(status.success(), "{stdout}{stderr}");
    }
    let store = billing_api::store::Store::connect_lazy(&crate::helpers::config_for(&url, &[]).database).unwrap();
    let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT version, COUNT(*) FROM _sqlx_migrations GROUP BY version")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(
        rows.len(),
        billing_api::store::migrate::embedded(Backend::Postgres).len()
    );
    assert!(rows.iter().all(|(_, n)| *n == 1), "{rows:?}");
    assert_eq!(store.pending_migrations().await.unwrap(), 0);
}

#[test]
fn the_binary_ignores_what_cargo_puts_in_its_environment() {
    // `cargo run` and `cargo test` export the build script's variables; none may look like a setting.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::helpers::process::BIN)
        .args(["config", "check"])
        .env(
            "BILLING_DATABASE__URL",
            format!("sqlite://{}/x.db", dir.path().display()),
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
