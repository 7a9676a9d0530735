//! The HTTP client for calls to systems we do not control: bounded in time, never following
//! redirects, identifying itself.
use std::sync::Once;
use std::time::Duration;

/// rustls needs a process-wide crypto provider; ring compiles without a C toolchain.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub fn client(connect_timeout: Duration, timeout: Duration) -> Result<reqwest::Client, String> {
    builder(
        connect_timeout,
        timeout,
        concat!("billing-api/", env!("CARGO_PKG_VERSION")),
    )
    .build()
    .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The common settings, for callers that add their own (the webhook client adds its resolver).
pub fn builder(connect_timeout: Duration, timeout: Duration, user_agent: &'static str) -> reqwest::ClientBuilder {
    install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(user_agent)
}
