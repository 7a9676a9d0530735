//! Who the client is. Behind a reverse proxy the TCP peer is the proxy; the proxy names the
//! client in `X-Forwarded-For`. That header is believed only from configured proxies (anyone else
//! could write anything in it), and read from the right: each trusted hop appends the address it
//! saw, so the first address from the right that is not a trusted proxy is the client.
use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::config::net::parse_network;

#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(entries: &[String]) -> Self {
        TrustedProxies(entries.iter().filter_map(|e| parse_network(e)).collect())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The scheme the client used: what a trusted proxy says in `X-Forwarded-Proto`, or `http`
    /// (this service speaks plain HTTP itself).
    pub fn scheme<'h>(&self, peer: IpAddr, headers: &'h HeaderMap) -> &'h str {
        let forwarded = self
            .trusts(peer)
            .then(|| headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()))
            .flatten()
            .map(|v| v.split(',').next_back().unwrap_or("").trim());
        match forwarded {
            Some(scheme @ ("http" | "https")) => scheme,
            _ => "http",
        }
    }

    /// Whether `peer` is one of the proxies whose forwarding headers are believed.
    pub fn is_trusted(&self, peer: IpAddr) -> bool {
        self.trusts(peer)
    }

    /// The client's address: the peer, or what trusted proxies say it is.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusts(ip) => continue,
                Ok(ip) => return ip,
                // A hop we cannot read ends the chain we can vouch for.
                Err(_) => break,
            }
        }
        peer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::new(&["10.0.0.0/8".into(), "192.0.2.1".into()]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Straight from the internet: the header is ignored.
        assert_eq!(
            proxies.client(ip("198.51.100.9"), &headers("1.2.3.4")),
            ip("198.51.100.9")
        );
        // Through our proxy: the rightmost untrusted hop; a spoofed left part is ignored.
        assert_eq!(
            proxies.client(ip("10.1.2.3"), &headers("6.6.6.6, 203.0.113.7")),
            ip("203.0.113.7")
        );
        assert_eq!(
            proxies.client(ip("10.1.2.3"), &headers("203.0.113.7, 192.0.2.1")),
            ip("203.0.113.7")
        );
        // A trusted peer with no header, or garbage, is the client itself.
        assert_eq!(proxies.client(ip("10.1.2.3"), &HeaderMap::new()), ip("10.1.2.3"));
        assert_eq!(proxies.client(ip("10.1.2.3"), &headers("not-an-ip")), ip("10.1.2.3"));
        // The scheme, likewise, only from a trusted proxy.
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(proxies.scheme(ip("10.1.2.3"), &h), "https");
        assert_eq!(proxies.scheme(ip("198.51.100.9"), &h), "http");
    }
}
