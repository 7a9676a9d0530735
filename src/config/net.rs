//! Addresses and networks as settings name them.
use std::net::IpAddr;

use ipnet::IpNet;

/// An address (`10.0.0.1`) or a network (`10.0.0.0/8`).
pub fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_and_networks_parse() {
        assert_eq!(super::parse_network("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert!(super::parse_network("2001:db8::/32").is_some() && super::parse_network("nope").is_none());
    }
}
