//! `billing-api doctor`: the launch checklist, run against a live deployment. It talks to the API
//! as clients reach it (`--url`, through the proxy), to each replica's admin listener
//! (`--admin-url`), and to the database of the configuration it was started with, and says
//! for each check whether it passes, and if not, what to do.
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{self, HeaderMap};
use serde_json::Value;

use crate::cli::DoctorArgs;
use crate::config::{Backend, Config};
use crate::store::Store;
use crate::store::migrate::State;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    /// Worth a look, not a failure (two versions during a rollout, say).
    Warn,
    Fail,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, name: &'static str, outcome: Outcome, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            outcome,
            detail: detail.into(),
        });
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }

    pub fn failed(&self) -> Vec<&'static str> {
        self.checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .map(|c| c.name)
            .collect()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = match c.outcome {
                Outcome::Pass => "PASS",
                Outcome::Warn => "WARN",
                Outcome::Fail => "FAIL",
            };
            let _ = writeln!(out, "{mark}  {:<11} {}", c.name, c.detail);
        }
        let failed = self.failed();
        if failed.is_empty() {
            let _ = writeln!(out, "\nall {} checks pass", self.checks.len());
        } else {
            let _ = writeln!(
                out,
                "\n{} of {} checks fail: {}",
                failed.len(),
                self.checks.len(),
                failed.join(", ")
            );
        }
        out
    }
}

/// The most clocks may differ before time-based rules (token expiry, webhook signatures) go wrong.
const MAX_SKEW_SECS: f64 = 2.0;
/// Connections kept free beyond the replicas' pools: a migration job and an operator's session.
const SPARE_CONNECTIONS: u32 = 2;

pub async fn run(config: &Config, args: &DoctorArgs) -> Result<Report, String> {
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut builder = crate::outbound::builder(
        timeout,
        timeout,
        concat!("billing-api-doctor/", env!("CARGO_PKG_VERSION")),
    );
    if let Some(path) = &args.ca_cert {
        let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
        builder = builder.add_root_certificate(cert);
    }
    let client = builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let url = args.url.trim_end_matches('/').to_owned();
    let mut report = Report::default();

    let versions = probes(&client, &url, &mut report).await;
    self::versions(&client, &url, args, versions, &mut report).await;
    metrics(&client, args, &mut report).await;
    tls(&client, &url, args, &mut report).await;
    proxy(&client, &url, &mut report).await;
    let replicas = args.replicas.unwrap_or(args.admin_urls.len().max(1) as u32);
    database(config, replicas, &mut report).await;
    Ok(report)
}

/// One GET: the status, headers and JSON body, or what went wrong.
async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Result<(u16, HeaderMap, Value), String> {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.map_err(|e| error_chain(&e))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.map_err(|e| error_chain(&e))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok((status, headers, body))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

/// Liveness answers 200 `pass`; readiness 200 `pass`, or 503 naming the failing check. Returns
/// the version the live probe reported.
async fn probes(client: &reqwest::Client, url: &str, report: &mut Report) -> Option<String> {
    let live = get(client, &format!("{url}/health/live"), &[]).await;
    let ready = get(client, &format!("{url}/health/ready"), &[]).await;
    let mut problems = Vec::new();
    let mut version = None;
    match &live {
        Ok((200, _, body)) if body["status"] == "pass" => version = version_of(body),
        Ok((status, _, _)) => problems.push(format!("/health/live answered {status}")),
        Err(e) => problems.push(format!("/health/live: {e}")),
    }
    match &ready {
        Ok((200, _, body)) if body["status"] == "pass" => {}
        Ok((status, _, body)) => {
            let failing: Vec<String> = body["checks"]
                .as_object()
                .map(|checks| {
                    checks
                        .iter()
                        .filter(|(_, c)| c["status"] != "pass")
                        .map(|(name, c)| format!("{name}: {}", c["error"].as_str().unwrap_or("failed")))
                        .collect()
                })
                .unwrap_or_default();
            problems.push(format!("/health/ready answered {status} ({})", failing.join("; ")));
        }
        Err(e) => problems.push(format!("/health/ready: {e}")),
    }
    if problems.is_empty() {
        report.add(
            "probes",
            Outcome::Pass,
            "/health/live and /health/ready answer 200 pass",
        );
    } else {
        report.add("probes", Outcome::Fail, problems.join("; "));
    }
    version
}

fn version_of(live: &Value) -> Option<String> {
    let version = live["version"].as_str()?;
    Some(match live["commit"].as_str() {
        Some(commit) => format!("{version} ({})", &commit[..commit.len().min(12)]),
        None => version.to_owned(),
    })
}

/// Every replica runs the same version, or two during a rollout (N and N+1), never more.
async fn versions(client: &reqwest::Client, url: &str, args: &DoctorArgs, first: Option<String>, report: &mut Report) {
    let mut seen: BTreeSet<String> = first.into_iter().collect();
    for _ in 1..args.samples {
        if let Ok((200, _, body)) = get(client, &format!("{url}/health/live"), &[]).await
            && let Some(v) = version_of(&body)
        {
            seen.insert(v);
        }
    }
    for admin in &args.admin_urls {
        let admin = admin.trim_end_matches('/');
        if let Ok((200, _, body)) = get(client, &format!("{admin}/health/live"), &[]).await
            && let Some(v) = version_of(&body)
        {
            seen.insert(v);
        }
    }
    let list = seen.iter().cloned().collect::<Vec<_>>().join(", ");
    match seen.len() {
        0 => report.add("versions", Outcome::Fail, "no replica reported its version"),
        1 => report.add("versions", Outcome::Pass, format!("every replica runs {list}")),
        2 => report.add(
            "versions",
            Outcome::Warn,
            format!("two versions serve ({list}): a rollout under way?"),
        ),
        n => report.add(
            "versions",
            Outcome::Fail,
            format!("{n} versions serve at once ({list})"),
        ),
    }
}

/// Each replica's `/metrics` is scrapeable and in Prometheus' text format.
async fn metrics(client: &reqwest::Client, args: &DoctorArgs, report: &mut Report) {
    if args.admin_urls.is_empty() {
        report.add("metrics", Outcome::Warn, "not checked: give each replica's --admin-url");
        return;
    }
    let mut problems = Vec::new();
    for admin in &args.admin_urls {
        let url = format!("{}/metrics", admin.trim_end_matches('/'));
        let response = match client.get(&url).send().await {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("{url}: {}", error_chain(&e)));
                continue;
            }
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response.text().await.unwrap_or_default();
        if status != 200 || !content_type.starts_with("text/plain") {
            problems.push(format!("{url} answered {status} {content_type}"));
        } else if !body
            .lines()
            .any(|l| l.starts_with(crate::telemetry::metrics::BUILD_INFO))
        {
            problems.push(format!("{url} has no {}", crate::telemetry::metrics::BUILD_INFO));
        } else if let Some(bad) = body
            .lines()
            .find(|l| !l.starts_with('#') && !l.is_empty() && !is_sample(l))
        {
            problems.push(format!("{url}: not a Prometheus sample: {bad:?}"));
        }
    }
    if problems.is_empty() {
        report.add(
            "metrics",
            Outcome::Pass,
            format!("{} replica(s) scrapeable", args.admin_urls.len()),
        );
    } else {
        report.add("metrics", Outcome::Fail, problems.join("; "));
    }
}

/// `name{labels} value`: a sample line of the text exposition format.
fn is_sample(line: &str) -> bool {
    let Some((series, value)) = line.rsplit_once(' ') else {
        return false;
    };
    let name_ok = series
        .split('{')
        .next()
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'));
    name_ok && (value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value))
}

/// Clients reach the API over verified TLS, with HSTS; plain HTTP is redirected.
async fn tls(client: &reqwest::Client, url: &str, args: &DoctorArgs, report: &mut Report) {
    if let Some(rest) = url.strip_prefix("http://") {
        let outcome = if args.allow_http { Outcome::Warn } else { Outcome::Fail };
        report.add(
            "tls",
            outcome,
            format!("{rest} is served over plain HTTP: terminate TLS in front of it (deploy/nginx)"),
        );
        return;
    }
    match get(client, &format!("{url}/health/live"), &[]).await {
        Err(e) => report.add("tls", Outcome::Fail, format!("no verified TLS connection: {e}")),
        Ok((_, headers, _)) if !headers.contains_key(header::STRICT_TRANSPORT_SECURITY) => report.add(
            "tls",
            Outcome::Fail,
            "TLS verified, but no Strict-Transport-Security header",
        ),
        Ok(_) => report.add("tls", Outcome::Pass, "certificate verified; HSTS sent"),
    }
}

/// The proxy in front is believed (the service sees the client and the scheme it used) and
/// passes the request id both ways.
async fn proxy(client: &reqwest::Client, url: &str, report: &mut Report) {
    let request_id = format!("doctor-{}", uuid::Uuid::new_v4().simple());
    let (status, headers, body) = match get(
        client,
        &format!("{url}/health/connection"),
        &[("x-request-id", &request_id)],
    )
    .await
    {
        Ok(answer) => answer,
        Err(e) => return report.add("proxy", Outcome::Fail, format!("/health/connection: {e}")),
    };
    let echoed = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    let mut problems = Vec::new();
    if status != 200 {
        problems.push(format!("/health/connection answered {status}"));
    }
    if echoed != Some(request_id.as_str()) {
        problems.push(format!(
            "X-Request-Id not passed through (sent {request_id}, got {echoed:?})"
        ));
    }
    let https = url.starts_with("https://");
    let trusted = body["via_trusted_proxy"].as_bool() == Some(true);
    if https && !trusted {
        problems.push("the proxy is not in server.trusted_proxies: the service logs the proxy, not the client".into());
    }
    if https && trusted && body["scheme"] != "https" {
        problems.push("the proxy does not send X-Forwarded-Proto: https".into());
    }
    let seen = format!(
        "client {}, scheme {}, via trusted proxy: {trusted}",
        body["client"].as_str().unwrap_or("?"),
        body["scheme"].as_str().unwrap_or("?")
    );
    if problems.is_empty() {
        report.add("proxy", Outcome::Pass, seen);
    } else {
        report.add("proxy", Outcome::Fail, format!("{} ({seen})", problems.join("; ")));
    }
    clock_of_service(&headers, report);
}

/// The service's clock (its `Date` header) against this machine's.
fn clock_of_service(headers: &HeaderMap, report: &mut Report) {
    let date = headers
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(httpdate_secs);
    let now = unix_now();
    match date {
        // A Date header has whole seconds: allow for that.
        Some(at) if (at - now).abs() <= MAX_SKEW_SECS + 1.0 => report.add(
            "clock",
            Outcome::Pass,
            format!("the service's clock is within {MAX_SKEW_SECS} s of this one"),
        ),
        Some(at) => report.add(
            "clock",
            Outcome::Fail,
            format!(
                "the service's clock is {:+.0} s off this one: run NTP (chrony) on every host",
                at - now
            ),
        ),
        None => report.add("clock", Outcome::Fail, "the service sent no Date header"),
    }
}

fn httpdate_secs(text: &str) -> Option<f64> {
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs_f64())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// Migrations current, the pools fit in the database's connections, the database's clock.
async fn database(config: &Config, replicas: u32, report: &mut Report) {
    let store = match Store::connect_lazy(&config.database) {
        Ok(store) => store,
        Err(e) => return report.add("migrations", Outcome::Fail, e.to_string()),
    };
    match store.migration_status().await {
        Err(e) => report.add("migrations", Outcome::Fail, format!("cannot read them: {e}")),
        Ok(rows) => {
            let count = |state: State| rows.iter().filter(|r| r.state == state).count();
            let (pending, failed, newer) = (count(State::Pending), count(State::Failed), count(State::Unknown));
            if failed > 0 {
                report.add(
                    "migrations",
                    Outcome::Fail,
                    format!("{failed} failed: see `billing-api migrate status`"),
                );
            } else if pending > 0 {
                report.add(
                    "migrations",
                    Outcome::Fail,
                    format!("{pending} pending: run `billing-api migrate run`"),
                );
            } else if newer > 0 {
                report.add(
                    "migrations",
                    Outcome::Warn,
                    format!("current; {newer} from a newer release (this doctor is older than the schema)"),
                );
            } else {
                report.add("migrations", Outcome::Pass, format!("all {} applied", rows.len()));
            }
        }
    }
    if store.backend() == Backend::Postgres {
        let per_replica = config.database.max_connections + config.database.copy_connections;
        pool(&store, per_replica, replicas, report).await;
    } else {
        report.add("pool", Outcome::Pass, "SQLite: one process, no shared connection limit");
    }
    clock_of_database(&store, report).await;
    store.close().await;
}

async fn pool(store: &Store, per_replica: u32, replicas: u32, report: &mut Report) {
    let setting = async |name: &str| -> Result<u32, String> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT setting FROM pg_settings WHERE name = '{name}'"));
        let text: String = sqlx::query_scalar(sql)
            .fetch_one(store.pool())
            .await
            .map_err(|e| crate::store::describe_error(&e))?;
        text.parse().map_err(|_| format!("{name} is {text:?}"))
    };
    let (max, reserved) = match (
        setting("max_connections").await,
        setting("superuser_reserved_connections").await,
    ) {
        (Ok(max), Ok(reserved)) => (max, reserved),
        (Err(e), _) | (_, Err(e)) => {
            return report.add("pool", Outcome::Fail, format!("cannot read the server's limits: {e}"));
        }
    };
    let need = per_replica * replicas + SPARE_CONNECTIONS;
    let room = max.saturating_sub(reserved);
    let detail = format!(
        "{replicas} replica(s) × database.max_connections + copy_connections {per_replica} + {SPARE_CONNECTIONS} spare = {need}; the server allows {room} ({max} max_connections − {reserved} reserved)"
    );
    if need <= room {
        report.add("pool", Outcome::Pass, detail);
    } else {
        report.add(
            "pool",
            Outcome::Fail,
            format!("{detail}: lower database.max_connections (or copy_connections) or raise max_connections"),
        );
    }
}

async fn clock_of_database(store: &Store, report: &mut Report) {
    let started = Instant::now();
    let sql = match store.backend() {
        Backend::Postgres => "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
        // SQLite's clock is this machine's: nothing to compare.
        Backend::Sqlite => return,
    };
    match sqlx::query_scalar::<_, f64>(sql).fetch_one(store.pool()).await {
        Err(e) => report.add("db clock", Outcome::Fail, crate::store::describe_error(&e)),
        Ok(at) => {
            let skew = at - (unix_now() - started.elapsed().as_secs_f64() / 2.0);
            if skew.abs() <= MAX_SKEW_SECS {
                report.add(
                    "db clock",
                    Outcome::Pass,
                    format!("the database's clock is {skew:+.3} s off this one"),
                );
            } else {
                report.add(
                    "db clock",
                    Outcome::Fail,
                    format!("the database's clock is {skew:+.1} s off this one: run NTP"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prometheus_samples_are_recognised() {
        assert!(super::is_sample("billing_ready 1"));
        assert!(super::is_sample(
            "billing_build_info{version=\"0.1.0\",commit=\"x y\"} 1"
        ));
        assert!(super::is_sample("x_bucket{le=\"+Inf\"} 3"));
        assert!(!super::is_sample("<html>"));
        assert!(!super::is_sample("billing_ready one"));
    }
}
