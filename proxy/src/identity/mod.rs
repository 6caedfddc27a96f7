//! Who sent a request: an ordered list of identity sources, the anonymous
//! policy, and the pseudonymous id that stands for the user everywhere else.
//!
//! Sources are tried in configured order and the first that yields an
//! identity wins. A source whose credential is present but bad (an unknown
//! API key, a forged or expired token) ends the search with an error rather
//! than falling through, so a bad credential can never be swapped for a
//! weaker identity by accident; `on_invalid: anonymous` opts out for JWTs.
//!
//! A request that carries a configured credential twice (two API-key or
//! token header lines, or the identity cookie twice) is refused with 400
//! before any source is tried: the app behind the proxy might read the
//! other copy and see a different user from the one that was rate-limited.
//!
//! The user key is a keyed SipHash of the source and the id. It indexes the
//! profiler, goes to the upstream as `x-headroom-user`, and cannot be turned
//! back into the id without the secret.

mod client_ip;
mod jwt;

use std::collections::HashMap;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::Arc;

use headroom_policies::SourceKind as IdentitySource;
use http::{HeaderMap, HeaderName};
use siphasher::sip::SipHasher13;

pub use client_ip::{ClientIpResolver, ForwardedHeader};
pub use jwt::{JwtError, JwtKey, JwtRules, JwtVerifier, VerifiedClaims};

/// Attributes an API key carries, from the key table in the config.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    /// The user the key belongs to.
    pub user: Arc<str>,
    /// The user's plan, if configured.
    pub plan: Option<Arc<str>>,
    /// The user's role, if configured.
    pub role: Option<Arc<str>>,
}

/// One identity source, compiled.
pub enum Source {
    /// An API key in a header, looked up in the key table.
    ApiKey {
        /// The header carrying the key.
        header: HeaderName,
        /// Known keys.
        keys: HashMap<String, KeyEntry>,
        /// Whether an unknown key becomes the id (true) or is refused (false).
        unknown_as_id: bool,
    },
    /// A bearer JWT.
    Jwt {
        /// The header carrying `Bearer <token>`.
        header: HeaderName,
        /// Keys and checks.
        verifier: JwtVerifier,
        /// Refuse (true) or treat as anonymous (false) a bad token.
        reject_invalid: bool,
    },
    /// A cookie whose value is the id.
    Cookie {
        /// The cookie name.
        name: String,
    },
    /// The client's IP address.
    ClientIp,
}

/// What to do with a request no source identified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnonymousMode {
    /// Each client IP is its own anonymous user.
    PerIp,
    /// All anonymous requests share one user (and so one rate-limit bucket).
    Shared,
    /// Refuse with 401.
    Reject,
}

/// The identity of one request.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Keyed hash of (source, id): the profiler key and the pseudonym.
    pub key: u64,
    /// Which source identified the request.
    pub source: IdentitySource,
    /// Plan attribute, from a token claim or the key table.
    pub plan: Option<Arc<str>>,
    /// Role attribute, from a token claim or the key table.
    pub role: Option<Arc<str>>,
    /// The client address after trusted-proxy handling, for identities
    /// made from it (client IP, anonymous); `None` for key, token and cookie
    /// identities, whose requests never pay for walking the forwarded chain.
    pub client_ip: Option<IpAddr>,
    /// Whether a credential was verified (a key from the key table, a
    /// signed token): such users are never displaced from a full user table
    /// by unverified ones.
    pub verified: bool,
}

/// Why a request was refused before it had an identity. Rendered as 401.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A presented API key is not in the key table.
    #[error("unknown api key")]
    UnknownApiKey,
    /// A presented bearer token failed verification.
    #[error("invalid bearer token: {0}")]
    InvalidToken(#[from] JwtError),
    /// No source identified the request and anonymous access is refused.
    #[error("credentials required")]
    Anonymous,
    /// A credential header (or the identity cookie) was sent more than once.
    /// The proxy and the app could each read a different one, so the request
    /// is refused (400) before anything is counted against a user.
    #[error("duplicate credential: {0}")]
    DuplicateCredential(&'static str),
}

impl IdentityError {
    /// The `WWW-Authenticate` challenge to send with the 401.
    pub fn challenge(&self) -> &'static str {
        match self {
            IdentityError::InvalidToken(_) => "Bearer error=\"invalid_token\"",
            IdentityError::UnknownApiKey
            | IdentityError::Anonymous
            | IdentityError::DuplicateCredential(_) => "Bearer",
        }
    }

    /// The HTTP status to refuse with: 400 for an ambiguous request, 401
    /// for a missing or bad credential.
    pub fn status(&self) -> u16 {
        match self {
            IdentityError::DuplicateCredential(_) => 400,
            _ => 401,
        }
    }
}

/// Keyed hashing of ids into user keys.
#[derive(Clone)]
pub struct Pseudonymizer {
    k0: u64,
    k1: u64,
}

impl Pseudonymizer {
    /// A pseudonymizer keyed by 16 bytes of secret.
    pub fn new(key: [u8; 16]) -> Self {
        let (a, b) = key.split_at(8);
        Self {
            k0: u64::from_le_bytes(a.try_into().expect("split at 8 of 16")),
            k1: u64::from_le_bytes(b.try_into().expect("split at 8 of 16")),
        }
    }

    /// A pseudonymizer keyed by a secret of any length (hashed down to 16
    /// bytes with an unkeyed SipHash-1-3 pass per half).
    pub fn from_secret(secret: &[u8]) -> Self {
        let half = |salt: u8| {
            let mut h = SipHasher13::new_with_keys(0x6865_6164_726f_6f6d, u64::from(salt));
            h.write(secret);
            h.finish().to_le_bytes()
        };
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&half(0));
        key[8..].copy_from_slice(&half(1));
        Self::new(key)
    }

    /// The user key of `id` from `source`. Sources are separate namespaces:
    /// the API key "x" and the cookie "x" are different users.
    pub fn key(&self, source: IdentitySource, id: &[u8]) -> u64 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u8(source as u8);
        h.write(id);
        h.finish()
    }
}

/// The compiled identity configuration.
pub struct IdentityResolver {
    /// Sources in priority order.
    pub sources: Vec<Source>,
    /// Client address resolution.
    pub client_ip: ClientIpResolver,
    /// Header giving the location attribute, if configured.
    pub location_header: Option<HeaderName>,
    /// Policy for unidentified requests.
    pub anonymous: AnonymousMode,
    /// Keyed hashing of ids.
    pub pseudonymizer: Pseudonymizer,
}

impl IdentityResolver {
    /// Identifies a request from its headers and TCP peer address.
    pub fn identify(
        &self,
        peer: Option<IpAddr>,
        headers: &HeaderMap,
    ) -> Result<Identity, IdentityError> {
        // Every configured credential must be unambiguous, whichever source
        // wins: the app behind us may read another one than we do.
        self.refuse_duplicates(headers)?;

        // The forwarded chain is walked only if a source needs the address:
        // most requests are identified by a key or a token first.
        let client_ip = || self.client_ip.resolve(peer, headers);
        for source in &self.sources {
            if let Some(identity) = self.try_source(source, &client_ip, headers)? {
                return Ok(identity);
            }
        }
        self.anonymous(client_ip())
    }

    /// Refuses a request that carries a configured credential more than
    /// once: two lines of the API-key or token header, or the identity
    /// cookie twice (in one `Cookie` line or across several). Walks the
    /// headers in place, without allocating.
    fn refuse_duplicates(&self, headers: &HeaderMap) -> Result<(), IdentityError> {
        for source in &self.sources {
            let (duplicated, what) = match source {
                Source::ApiKey { header, .. } => (more_than_one(headers, header), "api key header"),
                Source::Jwt { header, .. } => (more_than_one(headers, header), "token header"),
                Source::Cookie { name } => (cookie_count(headers, name) > 1, "identity cookie"),
                Source::ClientIp => (false, ""),
            };
            if duplicated {
                return Err(IdentityError::DuplicateCredential(what));
            }
        }
        Ok(())
    }

    /// The location attribute, when the configured header is present.
    pub fn location<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        let name = self.location_header.as_ref()?;
        headers.get(name)?.to_str().ok().filter(|s| !s.is_empty())
    }

    fn try_source(
        &self,
        source: &Source,
        client_ip: &dyn Fn() -> Option<IpAddr>,
        headers: &HeaderMap,
    ) -> Result<Option<Identity>, IdentityError> {
        let plain = |source: IdentitySource, id: &[u8]| Identity {
            key: self.pseudonymizer.key(source, id),
            source,
            plan: None,
            role: None,
            client_ip: None,
            verified: false,
        };
        match source {
            Source::ApiKey {
                header,
                keys,
                unknown_as_id,
            } => {
                let Some(value) = headers.get(header) else {
                    return Ok(None);
                };
                let key = value
                    .to_str()
                    .map_err(|_| IdentityError::UnknownApiKey)?
                    .trim();
                if let Some(entry) = keys.get(key) {
                    let mut id = plain(IdentitySource::ApiKey, entry.user.as_bytes());
                    id.plan.clone_from(&entry.plan);
                    id.role.clone_from(&entry.role);
                    id.verified = true;
                    return Ok(Some(id));
                }
                if *unknown_as_id && !key.is_empty() {
                    return Ok(Some(plain(IdentitySource::ApiKey, key.as_bytes())));
                }
                Err(IdentityError::UnknownApiKey)
            }
            Source::Jwt {
                header,
                verifier,
                reject_invalid,
            } => {
                let Some(value) = headers.get(header) else {
                    return Ok(None);
                };
                match verifier.verify_header(value.as_bytes()) {
                    Ok(claims) => {
                        let mut id = plain(IdentitySource::Jwt, claims.user.as_bytes());
                        id.plan = claims.plan.map(Arc::from);
                        id.role = claims.role.map(Arc::from);
                        id.verified = true;
                        Ok(Some(id))
                    }
                    Err(e) if *reject_invalid => Err(e.into()),
                    Err(e) => {
                        // `on_invalid: anonymous`: ignore the token, as if
                        // absent; later sources and then the anonymous
                        // policy decide.
                        tracing::debug!(error = %e, "invalid token ignored");
                        Ok(None)
                    }
                }
            }
            Source::Cookie { name } => {
                Ok(cookie(headers, name).map(|v| plain(IdentitySource::Cookie, v.as_bytes())))
            }
            Source::ClientIp => Ok(client_ip().map(|ip| Identity {
                client_ip: Some(ip),
                ..plain(IdentitySource::ClientIp, &ip_bytes(ip))
            })),
        }
    }

    fn anonymous(&self, client_ip: Option<IpAddr>) -> Result<Identity, IdentityError> {
        let id: [u8; 16] = match self.anonymous {
            AnonymousMode::Reject => return Err(IdentityError::Anonymous),
            AnonymousMode::PerIp => client_ip.map_or([0; 16], ip_bytes),
            AnonymousMode::Shared => [0; 16],
        };
        Ok(Identity {
            key: self.pseudonymizer.key(IdentitySource::Anonymous, &id),
            source: IdentitySource::Anonymous,
            plan: None,
            role: None,
            client_ip,
            verified: false,
        })
    }
}

/// An address as 16 bytes (IPv4 as mapped IPv6), without allocating.
fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Whether header `name` has more than one line.
fn more_than_one(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.get_all(name).iter().nth(1).is_some()
}

/// How many times cookie `name` appears, over all `Cookie` header lines
/// (empty values included: they still say which cookie the app may read).
fn cookie_count(headers: &HeaderMap, name: &str) -> usize {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter(|pair| pair.trim().split_once('=').is_some_and(|(k, _)| k == name))
        .count()
}

/// The value of cookie `name`, from any `Cookie` header line.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name && !v.is_empty()).then_some(v.trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn resolver(sources: Vec<Source>, anonymous: AnonymousMode) -> IdentityResolver {
        IdentityResolver {
            sources,
            client_ip: ClientIpResolver::new(vec![], ForwardedHeader::XForwardedFor),
            location_header: None,
            anonymous,
            pseudonymizer: Pseudonymizer::from_secret(b"unit-test-secret"),
        }
    }

    fn api_key_source(unknown_as_id: bool) -> Source {
        let mut keys = HashMap::new();
        keys.insert(
            "k1".to_owned(),
            KeyEntry {
                user: Arc::from("alice"),
                plan: Some(Arc::from("premium")),
                role: None,
            },
        );
        Source::ApiKey {
            header: HeaderName::from_static("x-api-key"),
            keys,
            unknown_as_id,
        }
    }

    fn with(name: &'static str, value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_static(value));
        h
    }

    #[test]
    fn api_key_maps_to_user_and_plan() {
        let r = resolver(vec![api_key_source(false)], AnonymousMode::Reject);
        let id = r
            .identify(None, &with("x-api-key", "k1"))
            .expect("known key");
        assert_eq!(id.source, IdentitySource::ApiKey);
        assert_eq!(id.plan.as_deref(), Some("premium"));
        assert_eq!(
            id.key,
            r.pseudonymizer.key(IdentitySource::ApiKey, b"alice")
        );
    }

    #[test]
    fn unknown_api_key_is_refused_unless_used_as_id() {
        let strict = resolver(vec![api_key_source(false)], AnonymousMode::PerIp);
        assert!(matches!(
            strict.identify(None, &with("x-api-key", "nope")),
            Err(IdentityError::UnknownApiKey)
        ));
        let lax = resolver(vec![api_key_source(true)], AnonymousMode::PerIp);
        let id = lax
            .identify(None, &with("x-api-key", "nope"))
            .expect("as id");
        assert_eq!(id.plan, None);
    }

    #[test]
    fn cookie_source_reads_named_cookie() {
        let r = resolver(
            vec![Source::Cookie { name: "sid".into() }],
            AnonymousMode::Reject,
        );
        let id = r
            .identify(None, &with("cookie", "a=1; sid=xyz; b=2"))
            .expect("cookie");
        assert_eq!(id.key, r.pseudonymizer.key(IdentitySource::Cookie, b"xyz"));
    }

    #[test]
    fn duplicate_api_key_header_is_refused_with_400() {
        let r = resolver(vec![api_key_source(false)], AnonymousMode::PerIp);
        let mut h = with("x-api-key", "k1");
        h.append("x-api-key", HeaderValue::from_static("k2"));

        let err = r.identify(None, &h).expect_err("two keys");

        assert!(matches!(err, IdentityError::DuplicateCredential(_)));
        assert_eq!(err.status(), 400);
        assert_eq!(IdentityError::UnknownApiKey.status(), 401);
    }

    #[test]
    fn duplicate_token_header_is_refused_even_when_an_earlier_source_wins() {
        let jwt = Source::Jwt {
            header: HeaderName::from_static("authorization"),
            verifier: JwtVerifier::new(vec![], test_rules()),
            reject_invalid: true,
        };
        let r = resolver(vec![api_key_source(false), jwt], AnonymousMode::PerIp);
        let mut h = with("x-api-key", "k1");
        h.append("authorization", HeaderValue::from_static("Bearer a"));
        h.append("authorization", HeaderValue::from_static("Bearer b"));

        assert!(matches!(
            r.identify(None, &h),
            Err(IdentityError::DuplicateCredential("token header"))
        ));
    }

    #[test]
    fn identity_cookie_twice_is_refused_in_one_line_or_across_lines() {
        let r = resolver(
            vec![Source::Cookie { name: "sid".into() }],
            AnonymousMode::Reject,
        );
        let one_line = with("cookie", "sid=a; other=1; sid=b");
        let mut two_lines = with("cookie", "sid=a");
        two_lines.append("cookie", HeaderValue::from_static("sid=b"));
        let mut other_cookies_split = with("cookie", "a=1");
        other_cookies_split.append("cookie", HeaderValue::from_static("sid=x; b=2"));

        for h in [&one_line, &two_lines] {
            assert!(matches!(
                r.identify(None, h),
                Err(IdentityError::DuplicateCredential("identity cookie"))
            ));
        }
        let id = r
            .identify(None, &other_cookies_split)
            .expect("one sid over two lines is fine");
        assert_eq!(id.key, r.pseudonymizer.key(IdentitySource::Cookie, b"x"));
    }

    #[test]
    fn anonymous_per_ip_users_are_distinct() {
        let r = resolver(vec![], AnonymousMode::PerIp);
        let a = r.identify(Some("192.0.2.1".parse().expect("ip")), &HeaderMap::new());
        let b = r.identify(Some("192.0.2.2".parse().expect("ip")), &HeaderMap::new());
        assert_ne!(a.expect("anon").key, b.expect("anon").key);
    }

    #[test]
    fn anonymous_reject_gives_error() {
        let r = resolver(vec![Source::ClientIp], AnonymousMode::Reject);
        assert!(matches!(
            r.identify(None, &HeaderMap::new()),
            Err(IdentityError::Anonymous)
        ));
    }

    #[test]
    fn sources_are_separate_namespaces() {
        let p = Pseudonymizer::from_secret(b"s");
        assert_ne!(
            p.key(IdentitySource::ApiKey, b"x"),
            p.key(IdentitySource::Cookie, b"x")
        );
    }

    fn test_rules() -> JwtRules {
        JwtRules {
            issuer: None,
            audience: None,
            leeway_secs: 0,
            user_claim: "sub".into(),
            plan_claim: "plan".into(),
            role_claim: "role".into(),
        }
    }

    #[test]
    fn ignored_invalid_token_lets_later_sources_identify() {
        let verifier = JwtVerifier::new(
            vec![JwtKey::hmac(
                None,
                jsonwebtoken::Algorithm::HS256,
                b"0123456789abcdef0123456789abcdef",
            )],
            test_rules(),
        );
        let jwt = Source::Jwt {
            header: HeaderName::from_static("authorization"),
            verifier,
            reject_invalid: false,
        };
        let r = resolver(
            vec![jwt, Source::Cookie { name: "sid".into() }],
            AnonymousMode::Reject,
        );
        let mut h = with("authorization", "Bearer not.a.token");
        h.insert("cookie", HeaderValue::from_static("sid=abc"));

        let id = r.identify(None, &h).expect("the cookie identifies");

        assert_eq!(id.source, IdentitySource::Cookie);
        let no_cookie = with("authorization", "Bearer not.a.token");
        assert!(matches!(
            r.identify(None, &no_cookie),
            Err(IdentityError::Anonymous)
        ));
    }
}
