//! The client's IP address, honouring forwarding headers only from trusted
//! proxies.
//!
//! A forwarding header is just text the previous hop wrote; any client can
//! send `X-Forwarded-For: 1.2.3.4`. So the header is read only when the TCP
//! peer is inside a configured trusted CIDR, and then walked from the right
//! (the hop nearest to us) past every trusted address: the first untrusted
//! address is the client. Entries left of it were written by the client or by
//! proxies we do not trust and are ignored.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName};
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Which forwarding header the trusted proxies write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for="[2001:db8::1]:443"`.
    Forwarded,
}

/// Resolves the client address of a request.
#[derive(Clone, Debug)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
    header: ForwardedHeader,
}

impl ClientIpResolver {
    /// A resolver trusting `trusted` to write `header`. With an empty list no
    /// forwarding header is ever read.
    pub fn new(trusted: Vec<IpNet>, header: ForwardedHeader) -> Self {
        Self { trusted, header }
    }

    /// Whether `ip` belongs to a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client address: the peer itself unless it is trusted, else the
    /// nearest untrusted hop named in the forwarding header. When every hop is
    /// trusted the leftmost one is the client. A malformed entry stops the walk
    /// at the last good address, so garbage can never win over the peer.
    pub fn resolve(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer?);
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        // Prebuilt names: a `&str` would be parsed into a name on every call.
        let name = match self.header {
            ForwardedHeader::XForwardedFor => &X_FORWARDED_FOR,
            ForwardedHeader::Forwarded => &FORWARDED,
        };

        // Several header lines are one list, in order; walk them backwards.
        let mut client = peer;
        for value in headers.get_all(name).iter().rev() {
            let Ok(text) = value.to_str() else {
                return Some(client);
            };
            for entry in text.rsplit(',') {
                let parsed = match self.header {
                    ForwardedHeader::XForwardedFor => parse_xff_entry(entry),
                    ForwardedHeader::Forwarded => parse_forwarded_entry(entry),
                };
                let Some(ip) = parsed else {
                    return Some(client);
                };
                client = canonical(ip);
                if !self.is_trusted(client) {
                    return Some(client);
                }
            }
        }
        Some(client)
    }
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:1.2.3.4`) to IPv4, so one client
/// is one identity whatever socket family it arrived on.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn parse_xff_entry(entry: &str) -> Option<IpAddr> {
    parse_node(entry.trim())
}

/// The `for=` parameter of one RFC 7239 element.
fn parse_forwarded_entry(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        if !key.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_node(value.trim().trim_matches('"'))
    })
}

/// An address with an optional port, IPv6 possibly in brackets.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (host, _) = rest.split_once(']')?;
        return host.parse().ok();
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name, HeaderValue::from_static(v));
        }
        map
    }

    fn loopback_trusted(header: ForwardedHeader) -> ClientIpResolver {
        let nets = vec![
            "127.0.0.0/8".parse().expect("cidr"),
            "10.0.0.0/8".parse().expect("cidr"),
        ];
        ClientIpResolver::new(nets, header)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peer_header_is_ignored() {
        let r = loopback_trusted(ForwardedHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(
            r.resolve(Some(ip("198.51.100.7")), &h),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn trusted_peer_yields_nearest_untrusted_hop() {
        let r = loopback_trusted(ForwardedHeader::XForwardedFor);
        // The client forged the first entry; 10.1.1.1 is our own balancer.
        let h = headers("x-forwarded-for", &["6.6.6.6, 198.51.100.7", "10.1.1.1"]);
        assert_eq!(
            r.resolve(Some(ip("127.0.0.1")), &h),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn garbage_entry_stops_the_walk() {
        let r = loopback_trusted(ForwardedHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["198.51.100.7, not-an-ip"]);
        assert_eq!(r.resolve(Some(ip("127.0.0.1")), &h), Some(ip("127.0.0.1")));
    }

    #[test]
    fn forwarded_header_with_ports_and_ipv6() {
        let r = loopback_trusted(ForwardedHeader::Forwarded);
        let h = headers(
            "forwarded",
            &["for=\"[2001:db8::1]:443\";proto=https, for=10.0.0.2:80"],
        );
        assert_eq!(
            r.resolve(Some(ip("127.0.0.1")), &h),
            Some(ip("2001:db8::1"))
        );
    }

    #[test]
    fn mapped_ipv6_peer_is_ipv4() {
        let r = loopback_trusted(ForwardedHeader::XForwardedFor);
        let h = headers("x-forwarded-for", &["198.51.100.7"]);
        assert_eq!(
            r.resolve(Some(ip("::ffff:127.0.0.1")), &h),
            Some(ip("198.51.100.7"))
        );
    }

    #[test]
    fn no_peer_means_no_ip() {
        let r = loopback_trusted(ForwardedHeader::XForwardedFor);
        assert_eq!(r.resolve(None, &HeaderMap::new()), None);
    }
}
