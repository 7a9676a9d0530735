//! Where webhooks may go. Endpoint URLs must be https (http only when allowed for development)
//! and may not reach loopback, private, link-local (cloud metadata) or other special addresses,
//! unless a network is explicitly allowed. The address check runs on the addresses actually
//! connected to, at send time, so a name that later resolves elsewhere (DNS rebinding) is caught.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

#[derive(Debug, Clone)]
pub struct Policy {
    pub allow_http: bool,
    pub allowed: Arc<Vec<IpNet>>,
}

impl Policy {
    /// Checks a URL's form when an endpoint is created or changed.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, &'static str> {
        if !has_url_shape(url) {
            return Err("must look like https://host[:port][/path][?query], host in ASCII, no white space");
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| "not an absolute URL")?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => return Err("must use https"),
            _ => return Err("must be an https URL"),
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("has no host");
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("must not carry credentials");
        }
        if parsed.fragment().is_some() {
            return Err("must not have a fragment");
        }
        if let Some(ip) = literal_ip(&parsed)
            && !self.allows(ip)
        {
            return Err("points at a private, loopback or link-local address");
        }
        Ok(parsed)
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allowed.iter().any(|net| net.contains(&ip))
    }
}

/// The shape [`has_url_shape`] checks, as the regular expression the OpenAPI document states.
pub fn url_pattern() -> String {
    let control = crate::domain::text::CONTROL_CLASS;
    format!(r"^https?://([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(:[0-9]{{1,5}})?([/?][^\s#{control}]*)?$")
}

/// A URL's form before any parsing: a lower-case `http`/`https` scheme, an ASCII host name or a
/// bracketed IPv6 literal, an optional port, and a path or query without white space, control
/// characters or a fragment. A URL parser is lenient (it drops tabs, folds case, takes `\` for
/// `/`); the stored URL is exactly what was sent, so it is held to what the document promises.
pub fn has_url_shape(url: &str) -> bool {
    let Some(after) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        return false;
    };
    let (authority, rest) = after.find(['/', '?']).map_or((after, ""), |at| after.split_at(at));
    let rest_ok = !rest.contains(|c: char| c == '#' || c.is_whitespace() || crate::domain::text::is_control(c));
    let (host, port) = if let Some(literal) = authority.strip_prefix('[') {
        let Some((inside, port)) = literal.split_once(']') else {
            return false;
        };
        let inside_ok = !inside.is_empty() && inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
        (inside_ok, port)
    } else {
        let (name, port) = authority.find(':').map_or((authority, ""), |at| authority.split_at(at));
        let label = |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        (name.split('.').all(label), port)
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|digits| (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()));
    host && port_ok && rest_ok
}

/// The host of a URL when it is an IP address rather than a name.
pub fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Globally routable unicast addresses only.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x64 && v6.segments()[1] == 0xff9b)
        }
    }
}

/// Resolves names for the webhook client and drops addresses the policy refuses; a name with
/// nothing left fails the attempt before any connection is made.
impl Resolve for Policy {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs.iter().copied().filter(|a| policy.allows(a.ip())).collect();
            if allowed.is_empty() {
                let refused = addrs.first().map(|a| a.ip().to_string()).unwrap_or_default();
                return Err(
                    format!("destination not allowed: {host} resolves to {refused} (private or special)").into(),
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_http: bool, allowed: &[&str]) -> Policy {
        Policy {
            allow_http,
            allowed: Arc::new(allowed.iter().map(|n| n.parse().unwrap()).collect()),
        }
    }

    #[test]
    fn special_addresses_are_refused_unless_allowed() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} must not be public");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
        let p = policy(false, &["127.0.0.1/32"]);
        assert!(p.allows("127.0.0.1".parse().unwrap()));
        assert!(!p.allows("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn urls_need_https_a_host_and_no_credentials() {
        let p = policy(false, &[]);
        assert!(p.check_url("https://hooks.example.com/billing").is_ok());
        assert_eq!(p.check_url("http://hooks.example.com/").unwrap_err(), "must use https");
        assert!(policy(true, &[]).check_url("http://hooks.example.com/").is_ok());
        assert!(p.check_url("ftp://hooks.example.com/").is_err());
        assert!(p.check_url("https://user:pw@hooks.example.com/").is_err());
        assert!(p.check_url("https://10.0.0.1/hook").is_err());
        assert!(p.check_url("https://[::1]/hook").is_err());
        assert!(p.check_url("not a url").is_err());
        for lenient in [
            "HTTPS://hooks.example.com/",
            "https://hooks.example.com/a\tb",
            "https://hooks.example.com/#x",
        ] {
            assert!(p.check_url(lenient).is_err(), "{lenient:?}");
        }
    }

    #[test]
    fn the_url_shape_is_the_documented_pattern() {
        use proptest::prelude::*;
        let pattern = regex::Regex::new(&url_pattern()).unwrap();
        let examples = [
            "https://a.example/x?y=1",
            "https://[2001:db8::1]:8443/",
            "http://h:1?q",
            "https://a..b/",
            "https://a.b:123456/",
            "https://[::1/",
            "https://a.b/ x",
            "https://é.example/",
            "https://a.b:/",
            "https://",
        ];
        for url in examples {
            assert_eq!(has_url_shape(url), pattern.is_match(url), "{url:?}");
        }
        // The generator takes the pattern without its anchors (it generates whole strings).
        let unanchored = url_pattern();
        let unanchored = unanchored.trim_start_matches('^').trim_end_matches('$');
        let shaped = proptest::string::string_regex(unanchored).unwrap();
        let near = "(https?://)?[a-z.:\\[\\]0-9/?# \t\u{0}é@-]{0,12}";
        proptest!(ProptestConfig::with_cases(2000), |(good in shaped, any in near)| {
            prop_assert!(has_url_shape(&good), "{:?} matches the pattern", good);
            prop_assert_eq!(has_url_shape(&any), pattern.is_match(&any), "{:?}", any);
        });
    }
}
