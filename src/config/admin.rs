//! `[admin]`: the operators' listener (`/metrics`, probes), kept off the API port.
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

use super::section::{KeyDoc, Reader, key};

#[derive(Debug, Clone, Serialize)]
pub struct AdminConfig {
    pub host: IpAddr,
    /// 0 picks a free port (tests).
    pub port: u16,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 9464,
        }
    }
}

pub const KEYS: &[KeyDoc] = &[
    key(
        "admin.host",
        "IP address of the admin listener (`GET /metrics`, probes). Keep it private: bind it where only Prometheus reaches it.",
    ),
    key("admin.port", "TCP port of the admin listener; `0` picks a free one."),
];

impl AdminConfig {
    pub(super) fn load(r: &mut Reader<'_>) -> Self {
        let d = Self::default();
        AdminConfig {
            host: r.get("host", d.host),
            port: r.get("port", d.port),
        }
    }
}
