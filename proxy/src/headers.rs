//! Header names Headroom reads and writes, and the small formatting helpers
//! that fill them without going through `format!`.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Tier of the user, to the client and to the upstream.
pub const TIER: &str = "x-headroom-tier";
/// The user's predicted request rate, requests per second, to the client.
pub const FORECAST_RPS: &str = "x-headroom-forecast-rps";
/// Pseudonymous user id (a keyed hash), to the upstream.
pub const USER: &str = "x-headroom-user";
/// IETF httpapi rate-limit headers draft: the quota policy.
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// IETF httpapi rate-limit headers draft: the current state.
pub const RATELIMIT: &str = "ratelimit";
/// Seconds until a refused request may be retried.
pub const RETRY_AFTER: &str = "retry-after";

/// The client address chain, to the upstream.
pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Prefix of every header Headroom owns; clients may not send any of them.
const OWN_PREFIX: &[u8] = b"x-headroom-";

/// Hop-by-hop headers (RFC 9110 section 7.6.1) that a proxy must not forward.
/// `upgrade` is kept so that upgraded protocols still pass through.
const HOP_BY_HOP: [&str; 6] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
];

/// Names of the headers to drop from a client request before forwarding: every
/// `x-headroom-*`, the fixed hop-by-hop set, and any header the `Connection`
/// header lists (but `upgrade`). Collected first because the request is
/// borrowed while we look. Allocates only when there is something to drop.
pub fn request_headers_to_drop(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut drop = Vec::new();
    for name in headers.keys() {
        let bytes = name.as_str().as_bytes();
        let own = bytes.len() >= OWN_PREFIX.len() && bytes[..OWN_PREFIX.len()] == *OWN_PREFIX;
        if own || HOP_BY_HOP.contains(&name.as_str()) {
            drop.push(name.clone());
        }
    }
    for value in headers.get_all(http::header::CONNECTION) {
        let Ok(text) = value.to_str() else { continue };
        for token in text.split(',').map(str::trim) {
            let keep = token.is_empty()
                || token.eq_ignore_ascii_case("upgrade")
                || token.eq_ignore_ascii_case("keep-alive")
                || token.eq_ignore_ascii_case("close");
            if !keep {
                if let Ok(name) = HeaderName::from_bytes(token.to_ascii_lowercase().as_bytes()) {
                    drop.push(name);
                }
            }
        }
    }
    drop
}

/// The `X-Forwarded-For` value to send upstream: the existing chain plus
/// `peer` when the peer is a trusted proxy, else `peer` alone (a client's own
/// claim is dropped, so the app never mistakes it for ours).
pub fn forwarded_for(headers: &HeaderMap, peer: std::net::IpAddr, trusted: bool) -> HeaderValue {
    let existing: Vec<&str> = if trusted {
        headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    } else {
        Vec::new()
    };
    let mut chain = existing.join(", ");
    if !chain.is_empty() {
        chain.push_str(", ");
    }
    chain.push_str(&peer.to_string());
    HeaderValue::from_str(&chain).unwrap_or_else(|_| {
        HeaderValue::from_str(&peer.to_string()).expect("an IP address is a valid header value")
    })
}

/// A header value for a whole number.
pub fn number(n: u64) -> HeaderValue {
    let mut buf = itoa::Buffer::new();
    HeaderValue::from_str(buf.format(n)).expect("digits are a valid header value")
}

/// A header value for a rate with two decimals (`12.35`); NaN, infinities and
/// negatives become `0.00`.
pub fn rate(rps: f64) -> HeaderValue {
    let hundredths = if rps.is_finite() && rps > 0.0 {
        // Saturating cast: rates beyond u64 hundredths are not meaningful.
        (rps * 100.0).round() as u64
    } else {
        0
    };
    let mut out = [0u8; 24];
    let mut int = itoa::Buffer::new();
    let int = int.format(hundredths / 100).as_bytes();
    let frac = hundredths % 100;
    out[..int.len()].copy_from_slice(int);
    let n = int.len();
    out[n] = b'.';
    out[n + 1] = b'0' + (frac / 10) as u8;
    out[n + 2] = b'0' + (frac % 10) as u8;
    HeaderValue::from_bytes(&out[..n + 3]).expect("digits and a dot are a valid header value")
}

/// The pseudonymous user id as 16 lowercase hex digits.
pub fn user_id(key: u64) -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = HEX[((key >> (60 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&out).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_has_two_decimals_and_clamps_garbage() {
        assert_eq!(rate(12.345), "12.35");
        assert_eq!(rate(0.004), "0.00");
        assert_eq!(rate(f64::NAN), "0.00");
        assert_eq!(rate(-3.0), "0.00");
        assert_eq!(rate(7.0), "7.00");
    }

    #[test]
    fn user_id_is_fixed_width_hex() {
        assert_eq!(user_id(0xab), "00000000000000ab");
        assert_eq!(user_id(u64::MAX), "ffffffffffffffff");
    }

    #[test]
    fn forwarded_for_extends_trusted_chains_and_replaces_untrusted_claims() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("198.51.100.7"));
        let peer: std::net::IpAddr = "10.0.0.1".parse().expect("ip");
        assert_eq!(forwarded_for(&h, peer, true), "198.51.100.7, 10.0.0.1");
        assert_eq!(forwarded_for(&h, peer, false), "10.0.0.1");
        assert_eq!(forwarded_for(&HeaderMap::new(), peer, true), "10.0.0.1");
    }

    #[test]
    fn client_owned_and_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("x-headroom-tier", HeaderValue::from_static("premium"));
        h.insert("X-Headroom-User", HeaderValue::from_static("spoof"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("connection", HeaderValue::from_static("x-secret, upgrade"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        let drop: Vec<String> = request_headers_to_drop(&h)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(drop.contains(&"x-headroom-tier".to_owned()));
        assert!(drop.contains(&"x-headroom-user".to_owned()));
        assert!(drop.contains(&"keep-alive".to_owned()));
        assert!(drop.contains(&"x-secret".to_owned()));
        assert!(!drop.contains(&"accept".to_owned()));
    }
}
