//! Turns the raw, positioned file shape into the validated [`Config`].
//!
//! Validation never stops at the first problem: every reader records what is
//! wrong in the shared [`Ctx`] and hands back `None`, and the caller carries
//! on with the default so later checks still run. The caller of [`build`]
//! throws the half-built config away if anything was recorded.
//!
//! The section checks live in `validate/`: `server` (listeners, upstreams,
//! timeouts, profiler), `identity` with `jwt`, and `policy` (routes, tiers, rules).

mod admin;
mod admission;
mod identity;
mod jwt;
mod policy;
mod pools;
mod server;
mod shaping;

pub(crate) use policy::MAX_ROUTES;

use std::fmt::Display;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration as StdDuration;

use serde_saphyr::{Location, Spanned};

use crate::duration::{Duration, DurationError, DURATION_FORMAT};
use crate::error::{one_line, ConfigError, Position};
use crate::raw::{Field, RawConfig, Scalar};
use crate::schema::Config;

/// Longest excerpt of the file quoted back in a message, in characters.
const MAX_QUOTED_CHARS: usize = 60;

/// Looks up an environment variable; `None` when unset or not UTF-8.
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Everything the checks need besides the raw values, plus the errors found so far.
pub(crate) struct Ctx<'a> {
    /// Name of the file in messages.
    file: &'a str,
    /// The file's text, to quote values exactly as written.
    text: &'a str,
    /// Directory that relative paths in the file are resolved against.
    base_dir: &'a Path,
    /// Source of `env:NAME` values.
    env: EnvLookup<'a>,
    /// Problems found so far.
    errors: Vec<ConfigError>,
}

impl<'a> Ctx<'a> {
    /// A context for checking `text`, read from `file`.
    pub(crate) fn new(
        file: &'a str,
        text: &'a str,
        base_dir: &'a Path,
        env: EnvLookup<'a>,
    ) -> Self {
        Ctx {
            file,
            text,
            base_dir,
            env,
            errors: Vec::new(),
        }
    }

    /// The problems found; empty means the config is valid.
    pub(crate) fn into_errors(self) -> Vec<ConfigError> {
        self.errors
    }

    /// Records that the value of `key` written at `at` is wrong.
    pub(crate) fn invalid(&mut self, at: &Location, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::Invalid {
            file: self.file.to_owned(),
            at: Position::from_location(at),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// The value at `at` exactly as written in the file (quotes included),
    /// made safe for one line; `fallback` when the position has no text.
    fn written(&self, at: &Location, fallback: &dyn Display) -> String {
        let span = at.span();
        let excerpt = span
            .byte_offset()
            .zip(span.byte_len())
            .and_then(|(start, len)| {
                let start = usize::try_from(start).ok()?;
                let end = start.checked_add(usize::try_from(len).ok()?)?;
                self.text.get(start..end)
            });
        match excerpt {
            Some(text) if !text.is_empty() => one_line(text.trim(), MAX_QUOTED_CHARS),
            _ => one_line(&fallback.to_string(), MAX_QUOTED_CHARS),
        }
    }

    /// A scalar as written, for "got ..." in messages.
    pub(crate) fn shown(&self, value: &Spanned<Scalar>) -> String {
        self.written(&value.referenced, &value.value)
    }

    /// A string as written, for "got ..." in messages. Never use on secrets.
    pub(crate) fn shown_str(&self, value: &Spanned<String>) -> String {
        self.written(&value.referenced, &format_args!("{:?}", value.value))
    }

    /// The value of a required key, or an error at the enclosing mapping
    /// (`parent`) saying what was expected there.
    pub(crate) fn require<'v, T>(
        &mut self,
        field: &'v Field<T>,
        parent: &Location,
        key: &str,
        expected: &str,
    ) -> Option<&'v Spanned<T>> {
        if field.is_none() {
            self.invalid(
                parent,
                key,
                format!("missing required key: expected {expected}"),
            );
        }
        field.as_ref()
    }

    /// A plain decimal number with a redundant leading zero (`0123`), which
    /// YAML 1.1 tools read as octal: refused rather than guessed at.
    fn refuse_leading_zero(&mut self, key: &str, value: &Spanned<Scalar>, expected: &str) -> bool {
        let written = self.shown(value);
        let digits = written.trim_start_matches(['+', '-']);
        let ambiguous = digits.len() > 1
            && digits.starts_with('0')
            && digits.as_bytes().get(1).is_some_and(u8::is_ascii_digit);
        if ambiguous {
            self.invalid(
                &value.referenced,
                key,
                format!(
                    "expected {expected}, got {written}: YAML 1.1 tools read a leading zero \
                     as octal, so write the number without it"
                ),
            );
        }
        ambiguous
    }

    /// An integer in `min..=max`.
    pub(crate) fn integer(
        &mut self,
        key: &str,
        value: &Spanned<Scalar>,
        min: u64,
        max: u64,
    ) -> Option<u64> {
        let expected = if max == u64::MAX {
            format!("an integer >= {min}")
        } else {
            format!("an integer from {min} to {max}")
        };
        if self.refuse_leading_zero(key, value, &expected) {
            return None;
        }

        // `1e3` arrives as a float; accept it when it is a whole number.
        let number = match value.value {
            Scalar::UInt(n) => Some(n),
            Scalar::Float(f)
                if f.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(&f) =>
            {
                Some(f as u64)
            }
            _ => None,
        };
        match number {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                let got = self.shown(value);
                self.invalid(
                    &value.referenced,
                    key,
                    format!("expected {expected}, got {got}"),
                );
                None
            }
        }
    }

    /// An optional integer in `min..=max`, or `default` when absent or invalid.
    pub(crate) fn integer_or(
        &mut self,
        key: &str,
        field: &Field<Scalar>,
        (min, max): (u64, u64),
        default: u64,
    ) -> u64 {
        field
            .as_ref()
            .and_then(|v| self.integer(key, v, min, max))
            .unwrap_or(default)
    }

    /// A finite number greater than zero.
    pub(crate) fn positive_number(&mut self, key: &str, value: &Spanned<Scalar>) -> Option<f64> {
        let expected = "a positive number";
        if self.refuse_leading_zero(key, value, expected) {
            return None;
        }
        let number = match value.value {
            Scalar::UInt(n) => Some(n as f64),
            Scalar::Float(f) => Some(f),
            _ => None,
        };
        match number {
            Some(n) if n.is_finite() && n > 0.0 => Some(n),
            _ => {
                let got = self.shown(value);
                self.invalid(
                    &value.referenced,
                    key,
                    format!("expected {expected}, got {got}"),
                );
                None
            }
        }
    }

    /// A number in [0, 1): a share.
    pub(crate) fn fraction(&mut self, key: &str, value: &Spanned<Scalar>) -> Option<f64> {
        let number = match value.value {
            Scalar::UInt(n) => Some(n as f64),
            Scalar::Float(f) => Some(f),
            _ => None,
        };
        match number {
            Some(n) if (0.0..1.0).contains(&n) => Some(n),
            _ => {
                let got = self.shown(value);
                let message = format!("expected a share from 0 up to (not including) 1, got {got}");
                self.invalid(&value.referenced, key, message);
                None
            }
        }
    }

    /// `true` or `false`; YAML 1.1 spellings get a pointed hint.
    pub(crate) fn boolean(&mut self, key: &str, value: &Spanned<Scalar>) -> Option<bool> {
        if let Scalar::Bool(b) = value.value {
            return Some(b);
        }
        let got = self.shown(value);
        let yaml11 = matches!(
            &value.value,
            Scalar::Str(s) if ["yes", "no", "on", "off", "y", "n"]
                .contains(&s.to_ascii_lowercase().as_str())
        );
        let hint = if yaml11 {
            " (yes/no/on/off are YAML 1.1 spellings; write true or false)"
        } else {
            ""
        };
        self.invalid(
            &value.referenced,
            key,
            format!("expected true or false, got {got}{hint}"),
        );
        None
    }

    /// A duration such as `5s`.
    pub(crate) fn duration(&mut self, key: &str, value: &Spanned<Scalar>) -> Option<StdDuration> {
        let got = self.shown(value);
        let parsed = match &value.value {
            Scalar::Str(text) => text.parse::<Duration>(),
            Scalar::UInt(_) => Err(DurationError::MissingUnit(got)),
            Scalar::Int(_) => Err(DurationError::Negative(got)),
            Scalar::Float(_) => Err(DurationError::InvalidNumber(got)),
            Scalar::Bool(_) => {
                let message = format!("expected {DURATION_FORMAT}, got {got}");
                self.invalid(&value.referenced, key, message);
                return None;
            }
        };
        match parsed {
            Ok(duration) => Some(duration.get()),
            Err(error) => {
                self.invalid(&value.referenced, key, error.to_string());
                None
            }
        }
    }

    /// An optional duration; `default` when absent or invalid. With
    /// `allow_zero` false, `0s` is refused.
    pub(crate) fn duration_or(
        &mut self,
        key: &str,
        field: &Field<Scalar>,
        default: StdDuration,
        allow_zero: bool,
    ) -> StdDuration {
        let Some(value) = field else { return default };
        match self.duration(key, value) {
            Some(d) if d.is_zero() && !allow_zero => {
                let message = format!(
                    "expected a duration greater than 0s, got {}",
                    self.shown(value)
                );
                self.invalid(&value.referenced, key, message);
                default
            }
            Some(d) => d,
            None => default,
        }
    }

    /// An `IP:PORT` socket address (no host names: nothing is resolved).
    pub(crate) fn socket_addr(&mut self, key: &str, value: &Spanned<String>) -> Option<SocketAddr> {
        if let Ok(addr) = value.value.trim().parse() {
            return Some(addr);
        }
        let got = self.shown_str(value);
        let looks_like_host = value.value.contains(':')
            && value.value.chars().any(|c| c.is_ascii_alphabetic())
            && !value.value.contains('[');
        let hint = if looks_like_host {
            " (host names are not resolved; write an IP)"
        } else {
            ""
        };
        let message = format!(
            "expected an IP:PORT address like 127.0.0.1:8080 or [::1]:8080, got {got}{hint}"
        );
        self.invalid(&value.referenced, key, message);
        None
    }

    /// One of a fixed set of spellings.
    pub(crate) fn choice<T: Copy>(
        &mut self,
        key: &str,
        value: &Spanned<String>,
        options: &[(&str, T)],
    ) -> Option<T> {
        if let Some((_, choice)) = options.iter().find(|(name, _)| *name == value.value) {
            return Some(*choice);
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        let got = self.shown_str(value);
        let message = format!("expected one of {}, got {got}", names.join(", "));
        self.invalid(&value.referenced, key, message);
        None
    }

    /// An optional choice; `default` when absent or invalid.
    pub(crate) fn choice_or<T: Copy>(
        &mut self,
        key: &str,
        field: &Field<String>,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        field
            .as_ref()
            .and_then(|v| self.choice(key, v, options))
            .unwrap_or(default)
    }

    /// A label-safe name: 1 to 64 of `a-z`, `0-9`, `_`, `-`.
    pub(crate) fn label_name(&mut self, key: &str, value: &Spanned<String>) -> Option<String> {
        let name = &value.value;
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            return Some(name.clone());
        }
        let got = self.shown_str(value);
        let message =
            format!("expected a name of 1 to 64 characters from a-z, 0-9, _ and -, got {got}");
        self.invalid(&value.referenced, key, message);
        None
    }

    /// A non-empty string (surrounding whitespace counts as empty).
    pub(crate) fn non_empty(&mut self, key: &str, value: &Spanned<String>) -> Option<String> {
        if value.value.trim().is_empty() {
            self.invalid(
                &value.referenced,
                key,
                "expected a non-empty string, got an empty one",
            );
            return None;
        }
        Some(value.value.clone())
    }

    /// An HTTP header name, returned lowercased.
    pub(crate) fn header_name(&mut self, key: &str, value: &Spanned<String>) -> Option<String> {
        let name = &value.value;
        let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        if !name.is_empty() && name.chars().all(token) {
            return Some(name.to_ascii_lowercase());
        }
        let got = self.shown_str(value);
        let message = format!(
            "expected an HTTP header name (letters, digits and !#$%&'*+-.^_`|~), got {got}"
        );
        self.invalid(&value.referenced, key, message);
        None
    }

    /// An optional header name; `default` when absent or invalid.
    pub(crate) fn header_name_or(
        &mut self,
        key: &str,
        field: &Field<String>,
        default: &str,
    ) -> String {
        field
            .as_ref()
            .and_then(|v| self.header_name(key, v))
            .unwrap_or_else(|| default.to_owned())
    }

    /// Resolves a path written in the file against the file's directory.
    pub(crate) fn resolve_path(&self, written: &str) -> std::path::PathBuf {
        self.base_dir.join(written)
    }

    /// Reads an environment variable through the injected lookup.
    pub(crate) fn env_var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }
}

/// Checks every section of `raw` and assembles the config. The result is
/// only meaningful when `ctx` recorded no errors.
pub(crate) fn build(raw: &RawConfig, ctx: &mut Ctx<'_>) -> Config {
    // Listeners and backends first: they need nothing from the other sections.
    let server = server::server(raw, ctx);

    // Tiers need the largest route cost; everything after needs the tier names.
    let routes = policy::routes(ctx, &raw.routes);
    let tiers = policy::tiers(ctx, &raw.tiers, &routes);
    let default_tier = policy::default_tier(ctx, &raw.default_tier, &tiers);
    let (identity, written) = identity::identity(ctx, raw.identity.as_ref(), &tiers, &default_tier);
    let rules = policy::rules(ctx, &raw.rules, &tiers, &written, &routes);
    let admin_api = admin::admin_api(ctx, raw.admin_api.as_ref());
    let events = admin::events(ctx, &raw.events, &routes);
    let admission = admission::admission(ctx, raw.admission.as_ref());
    let tiering = shaping::tiering(ctx, raw.tiering.as_ref());
    let listeners = shaping::Listeners {
        listen: server.listen,
        admin: server.admin,
    };
    let preallocate = shaping::preallocate(ctx, raw, &written, &routes, &admission, listeners);
    shaping::predictive_rule_count(ctx, raw, &rules, preallocate.as_ref());
    let upstream_pools = pools::upstream_pools(ctx, raw, server.listen);
    let pool_names = pools::written_pool_names(raw);
    let tier_pools = pools::tier_pools(ctx, &raw.tiers, &upstream_pools, &pool_names);
    let warming = pools::warming(ctx, raw, &server.health_check);

    Config {
        listen: server.listen,
        admin: server.admin,
        threads: server.threads,
        grace_period: server.grace_period,
        upstreams: server.upstreams,
        health_check: server.health_check,
        upstream_timeouts: server.upstream_timeouts,
        identity,
        profiler: server.profiler,
        admission,
        routes,
        tiers: tiers.valid,
        rules,
        default_tier,
        admin_api,
        events,
        tiering,
        preallocate,
        upstream_pools,
        tier_pools,
        warming,
    }
}
