//! Validated identity settings: who a request belongs to.
//!
//! Identity is the part of the config most likely to hold secrets (HMAC keys,
//! API keys), so the types here keep them out of `Debug` output: a config
//! dumped into a log at `debug` level must not leak credentials.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use ipnet::IpNet;

/// How requests are attributed to users.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Key for the pseudonymous `x-headroom-user` hash, at least 16 bytes.
    /// `None`: the proxy draws a random key at each start, so user ids change
    /// across restarts, persisted profiles no longer match their users, and
    /// several proxy instances disagree on ids. Set it for anything but a demo.
    pub secret: Option<Secret>,
    /// Peers whose forwarding header is believed. Requests from any other
    /// peer are identified by the TCP peer address. Empty: never believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Which header carries the original client address. Default `x-forwarded-for`.
    pub forwarded_header: ForwardedHeader,
    /// Header carrying the client's location (like `cf-ipcountry`),
    /// lowercased; `None` disables location conditions.
    pub location_header: Option<String>,
    /// Identity sources in order; the first one that yields an identity wins.
    /// At most one of each kind. Empty: every request is anonymous.
    pub sources: Vec<IdentitySource>,
    /// What happens to requests no source identified.
    pub anonymous: Anonymous,
}

/// A secret string: `Debug` and `Display` show only its length.
///
/// Written in the file either literally or as `env:VARNAME`, in which case the
/// value was read from the environment when the config was loaded.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Never log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty (validation never lets an empty one through).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// The header that carries the original client address behind a proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client;proto=https, for=proxy1` (RFC 7239).
    Forwarded,
}

/// One way of identifying a request.
#[derive(Clone, Debug)]
pub enum IdentitySource {
    /// A header holding an API key.
    ApiKey(ApiKeySource),
    /// A signed JSON Web Token in a header.
    Jwt(JwtSource),
    /// A cookie whose value is the (hashed) user id.
    Cookie(CookieSource),
    /// The client IP, after trusted-proxy handling; always yields an identity,
    /// so it is always the last source.
    ClientIp,
}

/// API keys looked up in a table.
#[derive(Clone)]
pub struct ApiKeySource {
    /// Lowercased header name. Default `x-api-key`.
    pub header: String,
    /// Known keys and who they belong to. Keys are non-empty.
    pub keys: HashMap<String, ApiKeyIdentity>,
    /// What to do with a key that is not in `keys`.
    pub unknown_keys: UnknownKeys,
}

impl fmt::Debug for ApiKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keys are credentials: show how many there are, not what they are.
        f.debug_struct("ApiKeySource")
            .field("header", &self.header)
            .field("keys", &format_args!("<{} keys redacted>", self.keys.len()))
            .field("unknown_keys", &self.unknown_keys)
            .finish()
    }
}

/// Who an API key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyIdentity {
    /// The user id (hashed before it reaches the upstream). Non-empty.
    pub user: String,
    /// Plan attribute for rules, if any.
    pub plan: Option<String>,
    /// Role attribute for rules, if any.
    pub role: Option<String>,
}

/// Handling of API keys missing from the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnknownKeys {
    /// Answer 401. The default: an unknown key is most likely a wrong one.
    #[default]
    Reject,
    /// The key itself (hashed) is the user id, with no plan or role.
    AsId,
}

/// Bearer tokens verified against configured keys.
#[derive(Clone, Debug)]
pub struct JwtSource {
    /// Lowercased header holding `Bearer <token>`. Default `authorization`.
    pub header: String,
    /// Verification keys, at least one. A token whose header names a `kid`
    /// is checked against the key with that `kid`; otherwise against every
    /// key whose algorithm matches the token's.
    pub keys: Vec<JwtKey>,
    /// Required `iss` claim, if set.
    pub issuer: Option<String>,
    /// Required `aud` claim, if set.
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`. Default 30 s.
    pub leeway: Duration,
    /// Claim holding the user id. Default `sub`.
    pub user_claim: String,
    /// Claim holding the plan attribute. Default `plan`.
    pub plan_claim: String,
    /// Claim holding the role attribute. Default `role`.
    pub role_claim: String,
    /// What to do with a token that fails verification.
    pub on_invalid: OnInvalid,
}

/// One JWT verification key.
#[derive(Clone, Debug)]
pub struct JwtKey {
    /// Key id matched against the token's `kid` header; `None` matches any.
    pub kid: Option<String>,
    /// Signature algorithm this key verifies.
    pub algorithm: JwtAlgorithm,
    /// The key itself, of the kind `algorithm` needs.
    pub material: JwtKeyMaterial,
}

/// Key material for a JWT key.
#[derive(Clone, Debug)]
pub enum JwtKeyMaterial {
    /// HMAC secret for HS256/384/512, at least as long as the hash output
    /// (32, 48 or 64 bytes, RFC 7518 section 3.2).
    Secret(Secret),
    /// PEM text of a public key (or certificate) for RS*, PS*, ES* and
    /// EdDSA; read from `public_key_file` at load time when given as a file.
    PublicKeyPem(String),
}

/// JWT signature algorithms (RFC 7518 names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519 signatures.
    EdDSA,
}

impl JwtAlgorithm {
    /// Every algorithm with its config spelling.
    pub const ALL: [(&'static str, JwtAlgorithm); 12] = [
        ("HS256", JwtAlgorithm::HS256),
        ("HS384", JwtAlgorithm::HS384),
        ("HS512", JwtAlgorithm::HS512),
        ("RS256", JwtAlgorithm::RS256),
        ("RS384", JwtAlgorithm::RS384),
        ("RS512", JwtAlgorithm::RS512),
        ("PS256", JwtAlgorithm::PS256),
        ("PS384", JwtAlgorithm::PS384),
        ("PS512", JwtAlgorithm::PS512),
        ("ES256", JwtAlgorithm::ES256),
        ("ES384", JwtAlgorithm::ES384),
        ("EdDSA", JwtAlgorithm::EdDSA),
    ];

    /// For HMAC algorithms, the minimum secret length in bytes (the hash
    /// output size); `None` for public-key algorithms.
    #[must_use]
    pub fn min_secret_bytes(self) -> Option<usize> {
        match self {
            JwtAlgorithm::HS256 => Some(32),
            JwtAlgorithm::HS384 => Some(48),
            JwtAlgorithm::HS512 => Some(64),
            _ => None,
        }
    }
}

/// Handling of a JWT that fails verification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnInvalid {
    /// Answer 401.
    #[default]
    Reject,
    /// Ignore the token: later sources are tried, then the anonymous policy.
    Anonymous,
}

/// A cookie-based identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CookieSource {
    /// Cookie name (case-sensitive). Default `session`.
    pub name: String,
}

/// Treatment of requests that no source identified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anonymous {
    /// How anonymous requests are grouped. Default per IP.
    pub mode: AnonymousMode,
    /// Tier for anonymous users; already resolved to `default_tier` when the
    /// file left it unset.
    pub tier: String,
}

/// How anonymous requests are grouped into users.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AnonymousMode {
    /// Each client IP is its own anonymous user: fair between clients, but one
    /// client behind many addresses gets many budgets.
    #[default]
    PerIp,
    /// All anonymous requests share one user and one budget: one noisy client
    /// can exhaust it for everyone anonymous, but the total is hard-capped.
    Shared,
    /// Anonymous requests are answered 401.
    Reject,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_api_keys_never_appear_in_debug_output() {
        let secret = Secret::new("hunter2-hunter2-hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(<23 bytes redacted>)");

        let mut keys = HashMap::new();
        keys.insert(
            "k_live_topsecret".to_owned(),
            ApiKeyIdentity {
                user: "alice".into(),
                plan: None,
                role: None,
            },
        );
        let source = ApiKeySource {
            header: "x-api-key".into(),
            keys,
            unknown_keys: UnknownKeys::Reject,
        };
        let shown = format!("{source:?}");
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("<1 keys redacted>"), "{shown}");
    }

    #[test]
    fn only_hmac_algorithms_need_a_secret_length() {
        assert_eq!(JwtAlgorithm::HS256.min_secret_bytes(), Some(32));
        assert_eq!(JwtAlgorithm::HS512.min_secret_bytes(), Some(64));
        assert_eq!(JwtAlgorithm::ES256.min_secret_bytes(), None);
    }
}
