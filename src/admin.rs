//! Operator commands that act on the database: API keys and tenant settings.
use crate::auth::{SCOPES, api_key};
use crate::cli::{ApikeyAction, TenantAction, WebhooksAction};
use crate::store::{Store, tenants, webhooks};

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

/// Re-encrypts webhook secrets still under the previous key; each endpoint in its own statement,
/// so an interrupted run can simply be started again.
pub async fn webhooks(
    store: &Store,
    config: &crate::config::WebhookConfig,
    action: WebhooksAction,
) -> Result<(), String> {
    let WebhooksAction::Reencrypt = action;
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
        TenantAction::Configure { tenant, invoice_prefix } => {
            valid_tenant(&tenant)?;
            if invoice_prefix.len() > 20 || invoice_prefix.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err("the invoice prefix is at most 20 visible characters".into());
            }
            tenants::set_invoice_prefix(&mut conn, &tenant, &invoice_prefix, crate::clock::now())
                .await
                .map_err(|e| crate::store::describe_error(&e))?;
            println!("tenant {tenant}: invoice numbers look like {invoice_prefix}000001");
        }
    }
    Ok(())
}
