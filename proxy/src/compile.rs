//! From a validated [`Config`] to the [`Runtime`] the hot path reads.
//!
//! `headroom check`, start-up and every reload go through [`compile_runtime`],
//! so a file that passes `check` is exactly a file the proxy accepts.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use headroom_config::{
    AnonymousMode as CfgAnonymous, BandwidthWhen, Config, ForwardedHeader as CfgForwarded,
    IdentitySource as CfgSource, JwtAlgorithm, JwtKeyMaterial, OnInvalid, UnknownKeys,
};
use headroom_policies::admission::TierShare;
use headroom_policies::Policy;
use http::HeaderName;
use jsonwebtoken::Algorithm;

use crate::admission::TierQueue;
use crate::identity::{
    AnonymousMode, ClientIpResolver, ForwardedHeader, IdentityResolver, JwtKey, JwtRules,
    JwtVerifier, KeyEntry, Pseudonymizer, Source,
};
use crate::metrics::Metrics;
use crate::state::{Pacing, Runtime};

/// Why a validated config still could not be compiled (a PEM that does not
/// parse as a key, a header name with bad characters).
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The policy part was refused.
    #[error("{path}: {message}")]
    Policy {
        /// The config file.
        path: String,
        /// What was wrong.
        message: String,
    },
    /// The identity part was refused.
    #[error("{path}: identity: {message}")]
    Identity {
        /// The config file.
        path: String,
        /// What was wrong.
        message: String,
    },
}

/// The key for pseudonymous user ids when the config sets no
/// `identity.secret`: random per process, kept across reloads so that a reload
/// never changes a user's key.
#[derive(Clone)]
pub struct IdentitySecret([u8; 16]);

impl IdentitySecret {
    /// 16 random bytes from the operating system.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut key = [0u8; 16];
        getrandom::fill(&mut key)?;
        Ok(Self(key))
    }
}

/// Loads and compiles `path` exactly as the proxy would, returning the
/// `FILE:LINE:COLUMN: message` lines on failure.
pub fn check_file(path: &Path) -> Result<(), Vec<String>> {
    let config = headroom_config::load_file(path).map_err(|e| e.lines())?;
    let secret = IdentitySecret([0; 16]);
    compile_runtime(&config, path, &Metrics::new(), &secret)
        .map(|_| ())
        .map_err(|e| vec![e.to_string()])
}

/// The user table's settings from the config's `profiler` section (durations
/// in whole milliseconds), shared by the proxy, the benches and the tests.
pub fn table_config(config: &headroom_config::Config) -> headroom_profiler::TableConfig {
    let p = &config.profiler;
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    headroom_profiler::TableConfig {
        max_users: p.max_users,
        idle_timeout_ms: ms(p.idle_timeout),
        bucket_ms: ms(p.bucket),
        buckets: p.buckets,
        session_gap_ms: ms(p.session_gap),
    }
}

/// Compiles the hot-path form of `config`.
pub fn compile_runtime(
    config: &Config,
    path: &Path,
    metrics: &Metrics,
    secret: &IdentitySecret,
) -> Result<Runtime, CompileError> {
    let policy = Policy::compile(config).map_err(|e| CompileError::Policy {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let identity = compile_identity(config, secret).map_err(|message| CompileError::Identity {
        path: path.display().to_string(),
        message,
    })?;
    let tier_queues = tier_queues(config, &policy);
    let pacing = pacing(config, &policy);
    let tier_pools = crate::upstreams::UpstreamPools::routes_for_config(config, &policy);
    let mut runtime = Runtime::new(policy, identity, tier_queues, pacing, metrics);
    runtime.tier_pools = tier_pools;
    Ok(runtime)
}

/// Body pacing for each of `policy`'s tiers, in `TierId` order.
fn pacing(config: &Config, policy: &Policy) -> Vec<Option<Pacing>> {
    policy
        .tiers()
        .iter()
        .map(|tier| {
            let written = config.tiers.iter().find(|t| t.name == tier.name())?;
            let bytes_per_second = written.bandwidth_bytes_per_second?;
            Some(Pacing {
                bytes_per_second: bytes_per_second as f64,
                always: written.bandwidth_when == BandwidthWhen::Always,
            })
        })
        .collect()
}

/// Queue settings for each of `policy`'s tiers, in `TierId` order.
fn tier_queues(config: &Config, policy: &Policy) -> Vec<TierQueue> {
    policy
        .tiers()
        .iter()
        .map(|tier| {
            let written = config.tiers.iter().find(|t| t.name == tier.name());
            TierQueue {
                share: TierShare {
                    weight: f64::from(tier.weight()),
                    min_share: written.map_or(0.0, |t| t.min_share),
                },
                max_queue_time: written.map_or(Duration::from_secs(1), |t| t.max_queue_time),
            }
        })
        .collect()
}

fn compile_identity(config: &Config, secret: &IdentitySecret) -> Result<IdentityResolver, String> {
    let id = &config.identity;
    let pseudonymizer = match &id.secret {
        Some(s) => Pseudonymizer::from_secret(s.expose().as_bytes()),
        None => Pseudonymizer::new(secret.0),
    };
    let sources = id
        .sources
        .iter()
        .map(compile_source)
        .collect::<Result<Vec<_>, _>>()?;
    let location_header = id.location_header.as_deref().map(header_name).transpose()?;
    Ok(IdentityResolver {
        sources,
        client_ip: ClientIpResolver::new(
            id.trusted_proxies.clone(),
            match id.forwarded_header {
                CfgForwarded::XForwardedFor => ForwardedHeader::XForwardedFor,
                CfgForwarded::Forwarded => ForwardedHeader::Forwarded,
            },
        ),
        location_header,
        anonymous: match id.anonymous.mode {
            CfgAnonymous::PerIp => AnonymousMode::PerIp,
            CfgAnonymous::Shared => AnonymousMode::Shared,
            CfgAnonymous::Reject => AnonymousMode::Reject,
        },
        pseudonymizer,
    })
}

fn compile_source(source: &CfgSource) -> Result<Source, String> {
    Ok(match source {
        CfgSource::ApiKey(s) => Source::ApiKey {
            header: header_name(&s.header)?,
            keys: s
                .keys
                .iter()
                .map(|(key, who)| {
                    let entry = KeyEntry {
                        user: Arc::from(who.user.as_str()),
                        plan: who.plan.as_deref().map(Arc::from),
                        role: who.role.as_deref().map(Arc::from),
                    };
                    (key.clone(), entry)
                })
                .collect(),
            unknown_as_id: s.unknown_keys == UnknownKeys::AsId,
        },
        CfgSource::Jwt(s) => {
            let keys = s
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let alg = algorithm(k.algorithm);
                    match &k.material {
                        JwtKeyMaterial::Secret(secret) => {
                            Ok(JwtKey::hmac(k.kid.clone(), alg, secret.expose().as_bytes()))
                        }
                        JwtKeyMaterial::PublicKeyPem(pem) => {
                            JwtKey::public_pem(k.kid.clone(), alg, pem.as_bytes()).map_err(|e| {
                                format!("jwt.keys[{i}]: public key does not parse: {e}")
                            })
                        }
                    }
                })
                .collect::<Result<Vec<_>, String>>()?;
            let rules = JwtRules {
                issuer: s.issuer.clone(),
                audience: s.audience.clone(),
                leeway_secs: s.leeway.as_secs(),
                user_claim: s.user_claim.clone(),
                plan_claim: s.plan_claim.clone(),
                role_claim: s.role_claim.clone(),
            };
            Source::Jwt {
                header: header_name(&s.header)?,
                verifier: JwtVerifier::new(keys, rules),
                reject_invalid: s.on_invalid == OnInvalid::Reject,
            }
        }
        CfgSource::Cookie(c) => Source::Cookie {
            name: c.name.clone(),
        },
        CfgSource::ClientIp => Source::ClientIp,
    })
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
        .map_err(|_| format!("{name:?} is not a valid header name"))
}

fn algorithm(alg: JwtAlgorithm) -> Algorithm {
    match alg {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::HS384 => Algorithm::HS384,
        JwtAlgorithm::HS512 => Algorithm::HS512,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}
