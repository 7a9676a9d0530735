//! Webhooks: endpoints' secrets, the destination policy, signing, and the dispatcher that
//! delivers events at least once with retries, backoff and a circuit breaker per endpoint.
pub mod dispatcher;
pub mod endpoints;
pub mod policy;
pub mod secrets;
pub mod signature;

use std::sync::Arc;

use crate::config::WebhookConfig;
use crate::config::net::parse_network;

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
        let cipher = config
            .encryption_keys()
            .map(|(current, previous)| secrets::Cipher::new(current, previous));
        let allowed = config
            .allowed_networks
            .iter()
            .filter_map(|n| parse_network(n))
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
