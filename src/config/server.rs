//! `[server]`: the API listener and the limits every request is held to.
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde::Serialize;

use super::net::parse_network;
use super::section::{Checks, KeyDoc, Reader, key};
use super::value::as_humantime;

#[derive(Debug, Clone, Serialize)]
pub struct ServerConfig {
    pub host: IpAddr,
    pub port: u16,
    #[serde(serialize_with = "as_humantime")]
    pub request_timeout: Duration,
    pub body_limit: usize,
    /// Largest request head (request line and headers) in bytes.
    pub header_limit: usize,
    pub concurrency_limit: usize,
    pub compression: bool,
    pub cors_allowed_origins: Vec<String>,
    pub sensitive_headers: Vec<String>,
    /// Peers whose `X-Forwarded-For` is believed (a reverse proxy, a load balancer).
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8080,
            request_timeout: Duration::from_secs(30),
            body_limit: 1024 * 1024,
            header_limit: 16 * 1024,
            concurrency_limit: 512,
            compression: true,
            cors_allowed_origins: Vec::new(),
            sensitive_headers: [
                "authorization",
                "proxy-authorization",
                "cookie",
                "set-cookie",
                "x-api-key",
            ]
            .map(String::from)
            .to_vec(),
            trusted_proxies: Vec::new(),
        }
    }
}

pub const KEYS: &[KeyDoc] = &[
    key(
        "server.host",
        "IP address the API listens on (`0.0.0.0` or `::` in a container).",
    ),
    key(
        "server.port",
        "TCP port of the API. `PORT` is honoured when this is not set.",
    ),
    key(
        "server.request_timeout",
        "Longest time a request may take before it is answered 408 `request_timeout`.",
    ),
    key(
        "server.body_limit",
        "Largest request body in bytes; larger bodies get 413 `payload_too_large`.",
    ),
    key(
        "server.header_limit",
        "Largest request head (request line and headers) in bytes, and at most 100 headers; larger ones get 431 `request_header_fields_too_large`.",
    ),
    key(
        "server.concurrency_limit",
        "Requests served at once; excess requests are shed with 503 `overloaded` and `Retry-After` (health probes are exempt).",
    ),
    key(
        "server.compression",
        "Compress responses (gzip) for clients that accept it.",
    ),
    key(
        "server.cors_allowed_origins",
        "Origins allowed by CORS, e.g. `https://app.example.com`, or `*`. Empty turns CORS off.",
    ),
    key("server.sensitive_headers", "Headers whose values are redacted in logs."),
    key(
        "server.trusted_proxies",
        "Addresses or networks of reverse proxies (e.g. `10.0.0.0/8`) whose `X-Forwarded-For` names the client in logs. Empty: the peer is the client.",
    ),
];

impl ServerConfig {
    pub(super) fn load(r: &mut Reader<'_>) -> Self {
        let d = Self::default();
        ServerConfig {
            host: r.get("host", d.host),
            port: r.get("port", d.port),
            request_timeout: r.get("request_timeout", d.request_timeout),
            body_limit: r.get("body_limit", d.body_limit),
            header_limit: r.get("header_limit", d.header_limit),
            concurrency_limit: r.get("concurrency_limit", d.concurrency_limit),
            compression: r.get("compression", d.compression),
            cors_allowed_origins: r.get("cors_allowed_origins", d.cors_allowed_origins),
            sensitive_headers: r.get("sensitive_headers", d.sensitive_headers),
            trusted_proxies: r.get("trusted_proxies", d.trusted_proxies),
        }
    }

    pub(super) fn validate(&self, c: &mut Checks<'_>) {
        c.positive("request_timeout", !self.request_timeout.is_zero());
        c.positive("body_limit", self.body_limit > 0);
        c.require(
            (1024..=512 * 1024).contains(&self.header_limit),
            "header_limit",
            "must be between 1024 and 524288 bytes (1 KiB to 512 KiB)",
        );
        c.positive("concurrency_limit", self.concurrency_limit > 0);
        for origin in &self.cors_allowed_origins {
            c.require(
                origin == "*" || http::HeaderValue::from_str(origin).is_ok() && is_origin(origin),
                "cors_allowed_origins",
                format!("{origin:?} is not an origin such as https://app.example.com (or \"*\")"),
            );
        }
        c.require(
            !(self.cors_allowed_origins.len() > 1 && self.cors_allowed_origins.iter().any(|o| o == "*")),
            "cors_allowed_origins",
            "\"*\" allows every origin and cannot be combined with others",
        );
        for name in &self.sensitive_headers {
            c.require(
                http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                "sensitive_headers",
                format!("{name:?} is not a valid header name"),
            );
        }
        for proxy in &self.trusted_proxies {
            c.require(
                parse_network(proxy).is_some(),
                "trusted_proxies",
                format!("{proxy:?} is not an IP address or network such as 10.0.0.0/8"),
            );
        }
    }
}

fn is_origin(s: &str) -> bool {
    let rest = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"));
    rest.is_some_and(|host| !host.is_empty() && !host.contains('/'))
}
