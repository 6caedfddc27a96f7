//! Headroom's configuration: the YAML schema, loading, and validation with
//! `FILE:LINE:COLUMN: message` errors.
//!
//! A config goes through three steps, and only the last one is public:
//!
//! 1. `parse`: YAML text to the raw layer (`raw`), which mirrors the file and
//!    keeps a source position on every value. Syntax errors, unknown keys and
//!    wrong shapes stop here; the first one is reported.
//! 2. `validate`: raw layer to [`Config`], checking every value and every
//!    cross-reference (tiers named by rules exist, bursts cover route costs,
//!    key files are readable, `env:` secrets are set). All problems are
//!    collected, each with its key path and position.
//! 3. The caller gets either a [`Config`] of plain validated values or
//!    [`ConfigErrors`], never a half-checked mix.
//!
//! The crate is pure: it reads the config file, JWT public key files and
//! `env:` variables, and nothing else. Watching for changes is the proxy's
//! job; a file that fails [`load_file`] must never replace the one in force.
//! `config/README.md` is the reference for every key.

mod admin;
mod duration;
mod error;
mod identity;
mod parse;
mod raw;
mod schema;
mod shaping;
mod timestamp;
mod upstreams;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use admin::{
    AdminApi, DeclaredEvent, EventScope, MAX_DECLARED_EVENTS, MAX_EVENT_MULTIPLIER,
    MAX_EVENT_NAME_BYTES, MIN_ADMIN_TOKEN_BYTES,
};
pub use duration::{Duration, DurationError, DURATION_FORMAT};
pub use error::{ConfigError, ConfigErrors, Position};
pub use identity::{
    Anonymous, AnonymousMode, ApiKeyIdentity, ApiKeySource, CookieSource, ForwardedHeader,
    Identity, IdentitySource, JwtAlgorithm, JwtKey, JwtKeyMaterial, JwtSource, OnInvalid, Secret,
    UnknownKeys,
};
pub use schema::{
    Admission, BandwidthWhen, Condition, Config, Device, HealthCheck, ProfilerConfig, Route,
    RouteKind, RouteMatch, Rule, SourceKind, Tier, Upstream, UpstreamTimeouts,
};
pub use shaping::{NextActionCondition, PreallocHook, Preallocate, Tiering, MAX_PREDICTIVE_RULES};
pub use timestamp::{
    check_unix_ms, parse_timestamp_ms, TimestampError, MAX_EVENT_MS, MIN_EVENT_MS, TIMESTAMP_FORMAT,
};
pub use upstreams::{PoolFallback, TierPool, UpstreamPool, Warming};

/// Most route classes a config may declare.
pub const MAX_ROUTES: usize = validate::MAX_ROUTES;

/// Reads, parses and validates the config file at `path`.
///
/// This is also the whole of `headroom check`: a file is valid exactly when
/// this returns `Ok`. Relative `public_key_file` paths are resolved against
/// the file's directory, and `env:NAME` secrets are read from the process
/// environment. Errors name the file as `path` was given.
///
/// # Errors
/// A single [`ConfigError::Read`] when the file cannot be read, a single
/// [`ConfigError::Syntax`] when it is not valid YAML of the right shape, or
/// every [`ConfigError::Invalid`] found otherwise.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    load_file_with_env(path, &process_env)
}

/// [`load_file`] with `env:NAME` secrets looked up through `env` instead of
/// the process environment (for tests and embedding).
///
/// # Errors
/// As for [`load_file`].
pub fn load_file_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        ConfigErrors::new(vec![ConfigError::Read {
            file: file.clone(),
            reason: error.to_string(),
        }])
    })?;
    load_str_with_env(&text, &file, env)
}

/// Parses and validates config `text`.
///
/// `origin` names the text in error messages (normally the file path); read
/// as a path, its directory is where relative `public_key_file` paths are
/// resolved (the current directory when it has none, as for `"<stdin>"`).
/// `env:NAME` secrets are read from the process environment.
///
/// # Errors
/// As for [`load_file`], without the read error.
pub fn load_str(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
    load_str_with_env(text, origin, &process_env)
}

/// [`load_str`] with `env:NAME` secrets looked up through `env`.
///
/// # Errors
/// As for [`load_str`].
pub fn load_str_with_env(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let raw = parse::parse(text, origin).map_err(|error| ConfigErrors::new(vec![error]))?;

    let base_dir = Path::new(origin).parent().unwrap_or(Path::new(""));
    let mut ctx = validate::Ctx::new(origin, text, base_dir, env);
    let config = validate::build(&raw, &mut ctx);

    let errors = ctx.into_errors();
    if !errors.is_empty() {
        tracing::debug!(
            config.origin = origin,
            errors = errors.len(),
            "config rejected"
        );
        return Err(ConfigErrors::new(errors));
    }
    tracing::debug!(
        config.origin = origin,
        tiers = config.tiers.len(),
        routes = config.routes.len(),
        rules = config.rules.len(),
        sources = config.identity.sources.len(),
        "config loaded"
    );
    Ok(config)
}

/// The process environment; unset and non-UTF-8 variables both read as `None`.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
