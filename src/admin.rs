//! Operator commands that act on the database: API keys, tenant settings, webhook keys and
//! delivery, idempotency-key purges.
use crate::auth::{SCOPES, api_key};
use crate::cli::{ApikeyAction, CyclesAction, IdempotencyAction, TenantAction, WebhooksAction};
use crate::config::{Config, IdempotencyConfig};
use crate::shutdown::Shutdown;
use crate::store::{Store, tenants, webhooks};
use crate::webhooks::dispatcher::Dispatcher;

fn valid_tenant(tenant: &str) -> Result<(), String> {
    let ok =
        (1..=64).contains(&tenant.len()) && tenant.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tenant {tenant:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
        ))
    }
}

fn format_time(t: Option<i64>) -> String {
    match t.and_then(|secs| u64::try_from(secs).ok()) {
        Some(secs) => {
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs)).to_string()
        }
        None => "-".into(),
    }
}

pub async fn apikey(store: &Store, action: ApikeyAction) -> Result<(), String> {
    let mut conn = store
        .pool()
        .acquire()
        .await
        .map_err(|e| crate::store::describe_error(&e))?;
    let db = |e: sqlx::Error| crate::store::describe_error(&e);
    match action {
        ApikeyAction::Create {
            tenant,
            scopes,
            description,
        } => {
            valid_tenant(&tenant)?;
            for scope in &scopes {
                if scope != "*" && !SCOPES.contains(&scope.as_str()) {
                    return Err(format!("unknown scope {scope:?}; known scopes: * {}", SCOPES.join(" ")));
                }
            }
            let generated = api_key::generate(&tenant, &scopes, description, crate::clock::now())
                .map_err(|e| format!("no randomness available: {e}"))?;
            tenants::insert_key(&mut conn, &generated.row).await.map_err(db)?;
            eprintln!(
                "created {} for tenant {tenant} with scopes {}; this is the only time the key is shown:",
                generated.row.id,
                scopes.join(" ")
            );
            println!("{}", generated.key);
        }
        ApikeyAction::List { tenant } => {
            let keys = tenants::list_keys(&mut conn, tenant.as_deref()).await.map_err(db)?;
            println!(
                "{:<22} {:<16} {:<21} {:<21} {:<21} {:<30} DESCRIPTION",
                "ID", "TENANT", "CREATED", "LAST USED", "REVOKED", "SCOPES"
            );
            for k in keys {
                println!(
                    "{:<22} {:<16} {:<21} {:<21} {:<21} {:<30} {}",
                    k.id,
                    k.tenant_id,
                    format_time(Some(k.created)),
                    format_time(k.last_used),
                    format_time(k.revoked),
                    k.scopes,
                    k.description.unwrap_or_default()
                );
            }
        }
        ApikeyAction::Revoke { id } => {
            if !tenants::revoke_key(&mut conn, &id, crate::clock::now())
                .await
                .map_err(db)?
            {
                return Err(format!("no active key {id}"));
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub async fn webhooks(store: &Store, config: &Config, action: WebhooksAction) -> Result<(), String> {
    match action {
        WebhooksAction::Reencrypt => reencrypt(store, &config.webhooks).await,
        WebhooksAction::Dispatch { until_idle } => dispatch(store, config, until_idle).await,
    }
}

/// Delivers webhooks outside the API process: until a signal (a worker of its own) or until
/// nothing is due (a scheduled job). Any number of dispatchers may run at once.
async fn dispatch(store: &Store, config: &Config, until_idle: bool) -> Result<(), String> {
    let hooks = crate::webhooks::Webhooks::new(&config.webhooks);
    let dispatcher = Dispatcher::new(store.clone(), hooks)?;
    if until_idle {
        let attempts = dispatcher.run_until_idle().await;
        println!("{attempts} webhook delivery attempt(s) made; nothing is due now");
        return Ok(());
    }
    let shutdown = Shutdown::new();
    tokio::spawn(crate::shutdown::watch_signals(shutdown.clone()));
    let stop = shutdown.stop_token();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        trigger.requested().await;
        trigger.stop_now();
    });
    tracing::info!("webhook dispatcher started (no API in this process)");
    dispatcher.run(stop, config.shutdown.drain_timeout).await;
    tracing::info!("webhook dispatcher stopped");
    Ok(())
}

/// Bills what is due by `--until` (default now), moves the subscriptions whose standing changed
/// by then (past due, or settled), and exits.
pub async fn cycles(store: &Store, config: &Config, action: CyclesAction) -> Result<(), String> {
    let CyclesAction::Run { until } = action;
    let now = crate::clock::now();
    let until = match until {
        None => now,
        Some(text) => parse_instant(&text).ok_or_else(|| format!("--until {text:?}: not Unix seconds or RFC 3339"))?,
    };
    if until > now + 60 {
        return Err(format!(
            "--until is {} s ahead of now: periods that have not started are not billed",
            until - now
        ));
    }
    let report = crate::billing::cycles::run_with_standing(
        store,
        until,
        config.billing.past_due_after_seconds(),
        &tokio_util::sync::CancellationToken::new(),
    )
    .await;
    println!(
        "{} period(s) billed over {} subscription(s); {} subscription(s) became past due or active again; {} failed (left due)",
        report.periods, report.subscriptions, report.standings, report.failures
    );
    if report.failures > 0 {
        return Err(format!(
            "{} subscription(s) could not be billed; see the log",
            report.failures
        ));
    }
    Ok(())
}

/// Unix seconds, or an RFC 3339 timestamp (`2026-01-31T00:00:00Z`).
fn parse_instant(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<i64>() {
        return Some(seconds);
    }
    let since_epoch = humantime::parse_rfc3339(text)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    i64::try_from(since_epoch.as_secs()).ok()
}

/// Deletes expired idempotency keys once.
pub async fn idempotency(store: &Store, config: &IdempotencyConfig, action: IdempotencyAction) -> Result<(), String> {
    let IdempotencyAction::Purge = action;
    let db = |e: sqlx::Error| crate::store::describe_error(&e);
    let mut conn = store.acquire().await.map_err(db)?;
    let before = crate::clock::now() - config.retention.as_secs() as i64;
    let purged = crate::store::idempotency::purge(&mut conn, before).await.map_err(db)?;
    println!("{purged} expired idempotency key(s) deleted");
    Ok(())
}

/// Re-encrypts webhook secrets still under the previous key; each endpoint in its own statement,
/// so an interrupted run can simply be started again.
async fn reencrypt(store: &Store, config: &crate::config::WebhookConfig) -> Result<(), String> {
    let hooks = crate::webhooks::Webhooks::new(config);
    let cipher = hooks
        .cipher
        .as_ref()
        .ok_or("webhooks.encryption_key is not set: there is no key to encrypt under")?;
    let db = |e: sqlx::Error| crate::store::describe_error(&e);
    let mut conn = store.acquire().await.map_err(db)?;
    let (mut changed, mut total) = (0, 0);
    for (id, secret, previous) in webhooks::all_secrets(&mut conn).await.map_err(db)? {
        total += 1;
        let current = cipher.is_current(&secret) && previous.as_deref().is_none_or(|p| cipher.is_current(p));
        if current {
            continue;
        }
        let again = |stored: &str| -> Result<String, String> {
            let plain = cipher.decrypt(stored).map_err(|e| format!("{id}: {e}"))?;
            cipher.encrypt(&plain)
        };
        let secret = again(&secret)?;
        let previous = previous.as_deref().map(again).transpose()?;
        webhooks::set_secrets(&mut conn, &id, &secret, previous.as_deref())
            .await
            .map_err(db)?;
        changed += 1;
    }
    println!("{changed} of {total} webhook endpoints re-encrypted; every secret is now under the current key");
    Ok(())
}

pub async fn tenant(store: &Store, action: TenantAction) -> Result<(), String> {
    let mut conn = store
        .pool()
        .acquire()
        .await
        .map_err(|e| crate::store::describe_error(&e))?;
    match action {
        TenantAction::Configure {
            tenant,
            invoice_prefix,
            time_zone,
        } => {
            valid_tenant(&tenant)?;
            if invoice_prefix.is_none() && time_zone.is_none() {
                return Err("nothing to configure: give --invoice-prefix or --time-zone".into());
            }
            let db = |e: sqlx::Error| crate::store::describe_error(&e);
            if let Some(prefix) = invoice_prefix {
                if prefix.len() > 20 || prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return Err("the invoice prefix is at most 20 visible characters".into());
                }
                tenants::set_invoice_prefix(&mut conn, &tenant, &prefix, crate::clock::now())
                    .await
                    .map_err(db)?;
                println!("tenant {tenant}: invoice numbers look like {prefix}000001");
            }
            if let Some(zone) = time_zone {
                if crate::domain::calendar::time_zone(&zone).is_none() {
                    return Err(format!("--time-zone {zone:?}: not an IANA time zone name"));
                }
                tenants::set_time_zone(&mut conn, &tenant, &zone, crate::clock::now())
                    .await
                    .map_err(db)?;
                println!("tenant {tenant}: subscriptions created without a time zone count their periods in {zone}");
            }
        }
    }
    Ok(())
}
