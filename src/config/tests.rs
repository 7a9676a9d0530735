use std::collections::BTreeSet;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

fn load_env(env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    load_with(None, env)
}

fn load_with(file: Option<std::path::PathBuf>, env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Config::load(&Sources { file, env })
}

fn problems(env: &[(&str, &str)]) -> Vec<String> {
    load_env(env)
        .unwrap_err()
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn defaults_serve_a_newcomer() {
    let loaded = load_env(&[]).unwrap();
    let c = loaded.config;
    assert_eq!(c.listen_addr().to_string(), "127.0.0.1:8080");
    assert_eq!(c.database.url.expose_secret(), "sqlite://data/billing.db");
    assert!(c.database.migrate_on_start, "SQLite migrates on start by default");
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "info");
    assert!(loaded.origins.values().all(|o| *o == Origin::Default));
}

#[test]
fn layers_apply_in_order_defaults_file_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[server]\nport = 9000\nrequest_timeout = \"5s\"\n[log]\nformat = \"pretty\"\n",
    )
    .unwrap();
    let loaded = load_with(Some(file.clone()), &[("BILLING_SERVER__PORT", "9001")]).unwrap();
    assert_eq!(loaded.config.server.port, 9001, "env wins over the file");
    assert_eq!(
        loaded.config.server.request_timeout,
        Duration::from_secs(5),
        "file wins over defaults"
    );
    assert_eq!(loaded.config.log.format, LogFormat::Pretty);
    assert_eq!(
        loaded.origins["server.port"],
        Origin::Env("BILLING_SERVER__PORT".into())
    );
    assert_eq!(loaded.origins["server.request_timeout"], Origin::File(file));
    assert_eq!(loaded.origins["server.host"], Origin::Default);
}

#[test]
fn port_from_the_platform_is_honoured_unless_set_explicitly() {
    assert_eq!(load_env(&[("PORT", "3000")]).unwrap().config.server.port, 3000);
    let both = load_env(&[("PORT", "3000"), ("BILLING_SERVER__PORT", "4000")]).unwrap();
    assert_eq!(both.config.server.port, 4000);
}

#[test]
fn postgres_does_not_migrate_on_start_unless_asked() {
    let pg = load_env(&[("BILLING_DATABASE__URL", "postgres://u:p@db/billing")]).unwrap();
    assert!(!pg.config.database.migrate_on_start);
    let asked = load_env(&[
        ("BILLING_DATABASE__URL", "postgres://u:p@db/billing"),
        ("BILLING_DATABASE__MIGRATE_ON_START", "true"),
    ])
    .unwrap();
    assert!(asked.config.database.migrate_on_start);
}

#[test]
fn values_of_every_type_parse_from_text() {
    let c = load_env(&[
        ("BILLING_SERVER__HOST", "::"),
        ("BILLING_SERVER__COMPRESSION", "off"),
        (
            "BILLING_SERVER__CORS_ALLOWED_ORIGINS",
            "https://a.example, http://localhost:3000",
        ),
        ("BILLING_DATABASE__ACQUIRE_TIMEOUT", "250ms"),
        ("BILLING_SHUTDOWN__DRAIN_TIMEOUT", "45"),
    ])
    .unwrap()
    .config;
    assert_eq!(c.server.host.to_string(), "::");
    assert!(!c.server.compression);
    assert_eq!(
        c.server.cors_allowed_origins,
        ["https://a.example", "http://localhost:3000"]
    );
    assert_eq!(c.database.acquire_timeout, Duration::from_millis(250));
    assert_eq!(c.shutdown.drain_timeout, Duration::from_secs(45));
}

#[test]
fn every_problem_is_reported_at_once_with_its_origin() {
    let found = problems(&[
        ("BILLING_SERVER__PORT", "http"),
        ("BILLING_SERVER__HOST", "localhost"),
        ("BILLING_DATABASE__URL", "mysql://x"),
        ("BILLING_LOG__LEVEL", "info,=="),
        ("BILLING_SERVER__CORS_ALLOWED_ORIGINS", "*,https://a.example"),
        ("BILLING_DATABASE__MIN_CONECTIONS", "1"),
    ]);
    assert_eq!(found.len(), 6, "{found:#?}");
    let all = found.join("\n");
    for needle in [
        "server.port: invalid value \"http\": expected a whole number from 0 to 65535 (from env BILLING_SERVER__PORT)",
        "server.host: invalid value \"localhost\"",
        "database.url: must start with sqlite:, postgres:// or postgresql://",
        "log.level: invalid filter",
        "server.cors_allowed_origins: \"*\" allows every origin",
        "database.min_conections: unknown setting; did you mean database.min_connections?",
    ] {
        assert!(all.contains(needle), "{needle:?} not in\n{all}");
    }
}

#[test]
fn a_malformed_secret_is_reported_without_its_value() {
    let found = problems(&[("BILLING_DATABASE__URL", "mysql://user:pw-LEAK@db/x")]);
    assert!(!found.join("\n").contains("pw-LEAK"), "{found:?}");
}

#[test]
fn in_memory_sqlite_needs_a_single_connection() {
    let found = problems(&[("BILLING_DATABASE__URL", "sqlite::memory:")]);
    assert!(
        found[0].contains("database.max_connections: an in-memory SQLite database"),
        "{found:?}"
    );
    load_env(&[
        ("BILLING_DATABASE__URL", "sqlite::memory:"),
        ("BILLING_DATABASE__MAX_CONNECTIONS", "1"),
    ])
    .unwrap();
}

#[test]
fn secrets_come_from_files_relative_to_the_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("database-url"), "postgres://u:s3cret@db/x\n").unwrap();
    let creds = dir.path().to_str().unwrap();
    let loaded = load_env(&[
        ("CREDENTIALS_DIRECTORY", creds),
        ("BILLING_DATABASE__URL_FILE", "database-url"),
    ])
    .unwrap();
    assert_eq!(
        loaded.config.database.url.expose_secret(),
        "postgres://u:s3cret@db/x",
        "trailing newline trimmed"
    );
    assert_eq!(
        loaded.origins["database.url"],
        Origin::Env("BILLING_DATABASE__URL_FILE".into())
    );
    let shown = loaded.config.render(&loaded.origins);
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        !format!("{:?}", loaded.config).contains("s3cret"),
        "Debug never shows a secret"
    );
}

#[test]
fn a_secret_set_twice_or_unreadable_is_an_error() {
    let both = problems(&[
        ("BILLING_DATABASE__URL", "sqlite://a.db"),
        ("BILLING_DATABASE__URL_FILE", "/x"),
    ]);
    assert!(both[0].contains("set either database.url"), "{both:?}");
    let missing = problems(&[("BILLING_DATABASE__URL_FILE", "/does/not/exist")]);
    assert!(
        missing[0].starts_with("database.url_file: cannot read secret file /does/not/exist"),
        "{missing:?}"
    );
}

#[test]
fn a_broken_config_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[server\nport = 1").unwrap();
    let err = load_with(Some(file), &[("BILLING_SERVER__PORT", "x")]).unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert!(err.to_string().contains("not valid TOML"));
    let err = load_with(Some(dir.path().join("missing.toml")), &[]).unwrap_err();
    assert!(err.to_string().contains("cannot read it"), "{err}");
}

#[test]
fn the_reference_lists_exactly_the_settings_the_loader_reads() {
    // Every key the loader reads is known after a load; compare with the documented ones.
    let documented: BTreeSet<&str> = keys().map(|k| k.key).collect();
    let loaded = load_env(&[]).unwrap();
    let read: BTreeSet<&str> = loaded
        .origins
        .keys()
        .map(String::as_str)
        .filter(|k| !keys().any(|d| d.secret && k.strip_suffix("_file") == Some(d.key)))
        .collect();
    assert_eq!(documented, read);
    let markdown = reference_markdown();
    for key in &documented {
        assert!(markdown.contains(&format!("`{key}`")), "{key}");
    }
    assert!(markdown.contains("`BILLING_DATABASE__URL_FILE`"));
}

#[test]
fn the_readme_carries_the_current_reference() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(&reference_markdown()),
        "README.md's configuration table is stale: regenerate it with `cargo run -- config reference`"
    );
}
