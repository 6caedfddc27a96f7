//! Who is calling the admin API: the operator (the configured token) or a
//! user (the credentials the proxy itself accepts for that user).
//!
//! An operator sends `Authorization: Bearer <admin_api.token>` and may see
//! every endpoint. A user sends whatever identifies them to the proxy (an
//! API key, a bearer JWT, a session cookie), resolved by the *current*
//! runtime's identity sources exactly as on the proxy listener, and may
//! read or delete only their own profile. A client address is not a
//! credential: identities from `client_ip` or the anonymous fallback are
//! refused, or anyone behind the same NAT could read each other's profile.
//!
//! The token comparison takes the same time whatever the given value, so
//! the token cannot be found byte by byte from response times.

use std::net::IpAddr;

use headroom_config::Secret;
use headroom_policies::SourceKind;
use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::identity::IdentityError;
use crate::state::Runtime;

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Presented the operator token.
    Operator,
    /// Identified as the user with this key (the pseudonymous id).
    User(u64),
}

/// Why a caller was not authenticated; rendered as 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No credential at all.
    #[error("credentials required: the operator token or your own api key, token or cookie")]
    Missing,
    /// A credential was given and is not valid.
    #[error("invalid credentials: {0}")]
    Invalid(String),
}

/// Authenticates a request to the admin listener; see the module docs.
///
/// # Errors
/// [`Denied::Missing`] without credentials, [`Denied::Invalid`] with a
/// wrong token, a bad credential, or one that only names an address.
pub fn authenticate(
    token: Option<&Secret>,
    runtime: &Runtime,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Result<Caller, Denied> {
    let bearer = bearer(headers);
    if let (Some(token), Some(given)) = (token, bearer) {
        if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
            return Ok(Caller::Operator);
        }
    }
    match runtime.identity.identify(peer, headers) {
        Ok(id)
            if matches!(
                id.source,
                SourceKind::ApiKey | SourceKind::Jwt | SourceKind::Cookie
            ) =>
        {
            Ok(Caller::User(id.key))
        }
        Ok(_) if bearer.is_some() => Err(Denied::Invalid("unknown bearer token".into())),
        Ok(_) | Err(IdentityError::Anonymous) => Err(Denied::Missing),
        Err(e) => Err(Denied::Invalid(e.to_string())),
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme matched
/// ignoring case), if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares `given` with `expected` in time that depends only on
/// `expected`'s length.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = given.len() ^ expected.len();
    for (i, &e) in expected.iter().enumerate() {
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= usize::from(g ^ e);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_tokens_match_and_any_difference_does_not() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-tokem", b"secret-token"));
        assert!(!constant_time_eq(b"secret-toke", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token!", b"secret-token"));
        assert!(!constant_time_eq(b"", b"secret-token"));
    }

    #[test]
    fn only_bearer_schemes_give_a_token() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, "bEaReR  abc ".parse().expect("value"));
        assert_eq!(bearer(&h), Some("abc"));
        h.insert(AUTHORIZATION, "Basic abc".parse().expect("value"));
        assert_eq!(bearer(&h), None);
        h.insert(AUTHORIZATION, "Bearer".parse().expect("value"));
        assert_eq!(bearer(&h), None);
    }
}
