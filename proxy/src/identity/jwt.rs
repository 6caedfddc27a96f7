//! Bearer JWT verification.
//!
//! Only signed tokens verified against a configured key are trusted:
//! `jsonwebtoken` has no `none` algorithm, and a token whose header names an
//! algorithm no configured key uses is refused before any signature check, so
//! an attacker cannot pick the algorithm (the HS256-with-a-public-key
//! confusion). `exp` is required and checked, `nbf` is checked when present,
//! both with the configured leeway.

use std::collections::HashSet;

use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

/// Why a token was refused. The message goes to the log, never to the client.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// The `Authorization` value is not `Bearer <token>`.
    #[error("authorization header is not a bearer token")]
    NotBearer,
    /// The token's header names an algorithm or key id no configured key has.
    #[error("no configured key for algorithm {alg:?} and key id {kid:?}")]
    NoKey {
        /// The algorithm the token claims.
        alg: Algorithm,
        /// The key id the token names, if any.
        kid: Option<String>,
    },
    /// Signature, expiry, not-before, issuer, audience or format check failed.
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    /// The token verified but lacks the claim naming the user.
    #[error("token has no string claim {0:?} naming the user")]
    NoUser(String),
}

/// One verification key.
pub struct JwtKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

impl JwtKey {
    /// An HMAC key (HS256/384/512) from the shared secret's bytes.
    pub fn hmac(kid: Option<String>, algorithm: Algorithm, secret: &[u8]) -> Self {
        Self {
            kid,
            algorithm,
            key: DecodingKey::from_secret(secret),
        }
    }

    /// An RSA or EC public key in PEM form.
    pub fn public_pem(
        kid: Option<String>,
        algorithm: Algorithm,
        pem: &[u8],
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem)?,
            Algorithm::EdDSA => DecodingKey::from_ed_pem(pem)?,
            _ => DecodingKey::from_rsa_pem(pem)?,
        };
        Ok(Self {
            kid,
            algorithm,
            key,
        })
    }
}

/// The claims Headroom reads from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    /// The user id (the configured user claim, `sub` by default).
    pub user: String,
    /// The plan attribute, when the token carries the configured claim.
    pub plan: Option<String>,
    /// The role attribute, when the token carries the configured claim.
    pub role: Option<String>,
}

/// Verifies bearer tokens against the configured keys and validation rules.
pub struct JwtVerifier {
    keys: Vec<(JwtKey, Validation)>,
    user_claim: String,
    plan_claim: String,
    role_claim: String,
}

/// Claim names and checks shared by every key.
pub struct JwtRules {
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud`, if any.
    pub audience: Option<String>,
    /// Clock-skew allowance for `exp`/`nbf`, in seconds.
    pub leeway_secs: u64,
    /// Claim naming the user.
    pub user_claim: String,
    /// Claim giving the plan attribute.
    pub plan_claim: String,
    /// Claim giving the role attribute.
    pub role_claim: String,
}

impl JwtVerifier {
    /// A verifier over `keys`, each checked with `rules`.
    pub fn new(keys: Vec<JwtKey>, rules: JwtRules) -> Self {
        let keys = keys
            .into_iter()
            .map(|key| {
                let mut v = Validation::new(key.algorithm);
                v.leeway = rules.leeway_secs;
                v.validate_nbf = true;
                v.required_spec_claims = HashSet::from(["exp".to_owned()]);
                if let Some(iss) = &rules.issuer {
                    v.set_issuer(&[iss]);
                }
                match &rules.audience {
                    Some(aud) => v.set_audience(&[aud]),
                    None => v.validate_aud = false,
                }
                (key, v)
            })
            .collect();
        Self {
            keys,
            user_claim: rules.user_claim,
            plan_claim: rules.plan_claim,
            role_claim: rules.role_claim,
        }
    }

    /// Verifies the value of an `Authorization` header (`Bearer <token>`).
    pub fn verify_header(&self, value: &[u8]) -> Result<VerifiedClaims, JwtError> {
        let text = std::str::from_utf8(value).map_err(|_| JwtError::NotBearer)?;
        let (scheme, token) = text.trim().split_once(' ').ok_or(JwtError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(JwtError::NotBearer);
        }
        self.verify(token.trim())
    }

    /// Verifies a compact JWS token and extracts the claims.
    pub fn verify(&self, token: &str) -> Result<VerifiedClaims, JwtError> {
        // The header is untrusted: it only selects among configured keys.
        let header = decode_header(token)?;
        let candidates = self.keys.iter().filter(|(k, _)| {
            k.algorithm == header.alg
                && match (&header.kid, &k.kid) {
                    // A key with an id only verifies tokens naming it.
                    (want, Some(have)) => want.as_deref() == Some(have.as_str()),
                    (_, None) => true,
                }
        });

        let mut last_error = None;
        for (key, validation) in candidates {
            match decode::<Map<String, Value>>(token, &key.key, validation) {
                Ok(data) => return self.claims(data.claims),
                Err(e) => last_error = Some(e),
            }
        }
        Err(match last_error {
            Some(e) => JwtError::Invalid(e),
            None => JwtError::NoKey {
                alg: header.alg,
                kid: header.kid,
            },
        })
    }

    fn claims(&self, mut claims: Map<String, Value>) -> Result<VerifiedClaims, JwtError> {
        let mut take = |name: &str| match claims.remove(name) {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let user =
            take(&self.user_claim).ok_or_else(|| JwtError::NoUser(self.user_claim.clone()))?;
        Ok(VerifiedClaims {
            user,
            plan: take(&self.plan_claim),
            role: take(&self.role_claim),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, get_current_timestamp, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"test-secret-0123456789abcdef";

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(
            vec![JwtKey::hmac(None, Algorithm::HS256, SECRET)],
            JwtRules {
                issuer: None,
                audience: None,
                leeway_secs: 0,
                user_claim: "sub".into(),
                plan_claim: "plan".into(),
                role_claim: "role".into(),
            },
        )
    }

    fn token(claims: &Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("encode")
    }

    #[test]
    fn valid_token_gives_user_and_attributes() {
        let exp = get_current_timestamp() + 600;
        let t = token(
            &json!({"sub": "alice", "plan": "premium", "exp": exp}),
            SECRET,
        );
        let claims = verifier()
            .verify_header(format!("Bearer {t}").as_bytes())
            .expect("valid");
        assert_eq!(claims.user, "alice");
        assert_eq!(claims.plan.as_deref(), Some("premium"));
        assert_eq!(claims.role, None);
    }

    #[test]
    fn forged_signature_is_refused() {
        let exp = get_current_timestamp() + 600;
        let t = token(
            &json!({"sub": "alice", "exp": exp}),
            b"another-secret-entirely!!",
        );
        assert!(matches!(verifier().verify(&t), Err(JwtError::Invalid(_))));
    }

    #[test]
    fn expired_token_is_refused() {
        let exp = get_current_timestamp() - 120;
        let t = token(&json!({"sub": "alice", "exp": exp}), SECRET);
        assert!(matches!(verifier().verify(&t), Err(JwtError::Invalid(_))));
    }

    #[test]
    fn token_without_exp_is_refused() {
        let t = token(&json!({"sub": "alice"}), SECRET);
        assert!(verifier().verify(&t).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        // {"alg":"none","typ":"JWT"} . {"sub":"alice","exp":9999999999} . (empty)
        let t = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSIsImV4cCI6OTk5OTk5OTk5OX0.";
        assert!(verifier().verify(t).is_err());
    }

    #[test]
    fn non_bearer_scheme_is_refused() {
        assert!(matches!(
            verifier().verify_header(b"Basic YWxhZGRpbjpvcGVu"),
            Err(JwtError::NotBearer)
        ));
    }

    const ES_PRIVATE: &str = include_str!("testdata/es256-private.pem");
    const ES_PUBLIC: &str = include_str!("testdata/es256-public.pem");
    const RS_PRIVATE: &str = include_str!("testdata/rs256-private.pem");
    const RS_PUBLIC: &str = include_str!("testdata/rs256-public.pem");

    fn public_key_verifier() -> JwtVerifier {
        let keys = vec![
            JwtKey::public_pem(None, Algorithm::ES256, ES_PUBLIC.as_bytes()).expect("ec key"),
            JwtKey::public_pem(None, Algorithm::RS256, RS_PUBLIC.as_bytes()).expect("rsa key"),
        ];
        let rules = JwtRules {
            issuer: Some("https://issuer.test".into()),
            audience: None,
            leeway_secs: 0,
            user_claim: "sub".into(),
            plan_claim: "plan".into(),
            role_claim: "role".into(),
        };
        JwtVerifier::new(keys, rules)
    }

    #[test]
    fn es256_and_rs256_tokens_verify_against_public_keys() {
        let claims = json!({"sub": "carol", "role": "admin", "iss": "https://issuer.test",
            "exp": get_current_timestamp() + 600});
        let es = EncodingKey::from_ec_pem(ES_PRIVATE.as_bytes()).expect("ec private");
        let rs = EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes()).expect("rsa private");
        let v = public_key_verifier();
        for (alg, key) in [(Algorithm::ES256, es), (Algorithm::RS256, rs)] {
            let t = encode(&Header::new(alg), &claims, &key).expect("sign");
            let c = v.verify(&t).expect("verifies");
            assert_eq!(
                (c.user.as_str(), c.role.as_deref()),
                ("carol", Some("admin"))
            );
        }
    }

    #[test]
    fn wrong_issuer_is_refused() {
        let claims = json!({"sub": "carol", "iss": "https://evil.test",
            "exp": get_current_timestamp() + 600});
        let es = EncodingKey::from_ec_pem(ES_PRIVATE.as_bytes()).expect("ec private");
        let t = encode(&Header::new(Algorithm::ES256), &claims, &es).expect("sign");
        assert!(public_key_verifier().verify(&t).is_err());
    }

    #[test]
    fn hs256_signed_with_the_public_key_text_is_refused() {
        // The classic confusion: an attacker signs HS256 using the RSA public
        // key as the HMAC secret. No HS256 key is configured, so no key fits.
        let claims = json!({"sub": "mallory", "iss": "https://issuer.test",
            "exp": get_current_timestamp() + 600});
        let t = token(&claims, RS_PUBLIC.as_bytes());
        assert!(matches!(
            public_key_verifier().verify(&t),
            Err(JwtError::NoKey { .. })
        ));
    }
}
