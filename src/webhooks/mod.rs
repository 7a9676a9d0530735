//! Webhooks: endpoints' secrets, the destination policy, signing, and the dispatcher that
//! delivers events at least once with retries, backoff and a circuit breaker per endpoint.
pub mod dispatcher;
pub mod endpoints;
pub mod policy;
pub mod secrets;
pub mod signature;

use std::sync::Arc;

use secrecy::ExposeSecret;
use tokio::sync::Notify;

use crate::config::WebhookConfig;

/// Wakes the dispatcher after a commit that queued deliveries, so they go out at once instead
/// of at the next poll.
static WAKE: Notify = Notify::const_new();

pub fn wake() {
    WAKE.notify_one();
}

/// What the API and the dispatcher share: the settings, the cipher (when a key is configured)
/// and the destination policy.
#[derive(Debug)]
pub struct Webhooks {
    pub config: WebhookConfig,
    pub cipher: Option<secrets::Cipher>,
    pub policy: policy::Policy,
}

impl Webhooks {
    pub fn new(config: &WebhookConfig) -> Arc<Self> {
        let key = |k: &Option<secrecy::SecretString>| k.as_ref().and_then(|k| secrets::parse_key(k.expose_secret()));
        let cipher = key(&config.encryption_key)
            .map(|current| secrets::Cipher::new(current, key(&config.previous_encryption_key)));
        let allowed = config
            .allowed_networks
            .iter()
            .filter_map(|n| crate::http::client_ip::parse_network(n))
            .collect();
        Arc::new(Webhooks {
            config: config.clone(),
            cipher,
            policy: policy::Policy {
                allow_http: config.allow_http,
                allowed: Arc::new(allowed),
            },
        })
    }
}
