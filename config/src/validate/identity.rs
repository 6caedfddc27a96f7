//! Checks for `identity`: secrets, trusted proxies, sources and anonymous handling.
//!
//! Secrets are resolved here (`env:NAME` is read once, at load time), and
//! JWT public key files are read relative to the config file, so a config
//! that passes `headroom check` has everything the proxy will need.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_saphyr::{Location, Spanned};

use super::policy::TierSet;
use super::Ctx;
use crate::identity::{
    Anonymous, AnonymousMode, ApiKeyIdentity, ApiKeySource, CookieSource, ForwardedHeader,
    Identity, IdentitySource, Secret, UnknownKeys,
};
use crate::raw::{RawAnonymous, RawApiKey, RawCookie, RawIdentity, RawSource, SpannedList};
use crate::schema::SourceKind;

/// Shortest accepted `identity.secret`, in bytes.
const MIN_IDENTITY_SECRET_BYTES: usize = 16;

/// What the file declared, whether or not it validated; lets later checks
/// avoid repeating an error about a source that is merely malformed.
pub(super) struct Written {
    /// Kinds listed in `identity.sources`.
    pub source_kinds: Vec<SourceKind>,
    /// Whether `identity.location_header` was given.
    pub location_header: bool,
}

/// Checks `identity`; absent means all defaults (no sources: everyone anonymous).
pub(super) fn identity(
    ctx: &mut Ctx<'_>,
    raw: Option<&Spanned<RawIdentity>>,
    tiers: &TierSet,
    default_tier: &str,
) -> (Identity, Written) {
    let empty = RawIdentity {
        secret: None,
        trusted_proxies: None,
        forwarded_header: None,
        location_header: None,
        sources: None,
        anonymous: None,
    };
    let raw = raw.map_or(&empty, |r| &r.value);

    let secret = raw
        .secret
        .as_ref()
        .and_then(|v| secret(ctx, "identity.secret", v, MIN_IDENTITY_SECRET_BYTES));
    let trusted_proxies = trusted_proxies(ctx, &raw.trusted_proxies);
    let forwarded_options = [
        ("x-forwarded-for", ForwardedHeader::XForwardedFor),
        ("forwarded", ForwardedHeader::Forwarded),
    ];
    let forwarded_header = ctx.choice_or(
        "identity.forwarded_header",
        &raw.forwarded_header,
        &forwarded_options,
        ForwardedHeader::XForwardedFor,
    );
    let location_header = raw
        .location_header
        .as_ref()
        .and_then(|v| ctx.header_name("identity.location_header", v));
    let (sources, source_kinds) = sources(ctx, &raw.sources);
    let anonymous = anonymous(
        ctx,
        raw.anonymous.as_ref(),
        tiers,
        default_tier,
        source_kinds.is_empty(),
    );

    let written = Written {
        source_kinds,
        location_header: raw.location_header.is_some(),
    };
    let identity = Identity {
        secret,
        trusted_proxies,
        forwarded_header,
        location_header,
        sources,
        anonymous,
    };
    (identity, written)
}

/// A secret written literally or as `env:NAME`, at least `min_bytes` long.
/// The value itself never appears in a message.
pub(super) fn secret(
    ctx: &mut Ctx<'_>,
    key: &str,
    value: &Spanned<String>,
    min_bytes: usize,
) -> Option<Secret> {
    let (resolved, what) = match value.value.strip_prefix("env:") {
        Some(name) => {
            let name = name.trim();
            let valid_name = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                let message = format!(
                    "expected env:NAME with NAME made of letters, digits and _, got env:{name:?}"
                );
                ctx.invalid(&value.referenced, key, message);
                return None;
            }
            let Some(resolved) = ctx.env_var(name) else {
                let message = format!("environment variable {name} is not set (or not valid UTF-8); it was named by env:{name}");
                ctx.invalid(&value.referenced, key, message);
                return None;
            };
            (
                resolved,
                format!("the value of environment variable {name}"),
            )
        }
        None => (value.value.clone(), "the secret".to_owned()),
    };
    if resolved.len() < min_bytes {
        let message = format!(
            "{what} is {} bytes long; expected at least {min_bytes} bytes",
            resolved.len()
        );
        ctx.invalid(&value.referenced, key, message);
        return None;
    }
    Some(Secret::new(resolved))
}

/// `trusted_proxies`: CIDRs, or bare addresses meaning a single host.
fn trusted_proxies(ctx: &mut Ctx<'_>, list: &SpannedList<String>) -> Vec<IpNet> {
    let Some(list) = list else { return Vec::new() };
    let mut out = Vec::with_capacity(list.value.len());
    for (i, entry) in list.value.iter().enumerate() {
        let key = format!("identity.trusted_proxies[{i}]");
        let text = entry.value.trim();
        let parsed = text
            .parse::<IpNet>()
            .ok()
            .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from));
        match parsed {
            Some(net) if net == net.trunc() => out.push(net),
            Some(net) => {
                let message = format!(
                    "{net} has host bits set; expected the network address {}",
                    net.trunc()
                );
                ctx.invalid(&entry.referenced, &key, message);
            }
            None => {
                let got = ctx.shown_str(entry);
                let message = format!(
                    "expected a CIDR like 10.0.0.0/8 or fd00::/8 (or a single IP), got {got}"
                );
                ctx.invalid(&entry.referenced, &key, message);
            }
        }
    }
    out
}

/// `identity.sources`: one of each kind at most, and `client_ip` last.
fn sources(
    ctx: &mut Ctx<'_>,
    list: &SpannedList<RawSource>,
) -> (Vec<IdentitySource>, Vec<SourceKind>) {
    let mut sources = Vec::new();
    let mut kinds: Vec<SourceKind> = Vec::new();
    let Some(list) = list else {
        return (sources, kinds);
    };

    for (i, entry) in list.value.iter().enumerate() {
        let kind = match entry.value {
            RawSource::ApiKey(_) => SourceKind::ApiKey,
            RawSource::Jwt(_) => SourceKind::Jwt,
            RawSource::Cookie(_) => SourceKind::Cookie,
            RawSource::ClientIp(_) => SourceKind::ClientIp,
        };
        let key = format!("identity.sources[{i}]");
        if let Some(first) = kinds.iter().position(|k| *k == kind) {
            let message = format!(
                "a second {} source; at most one of each kind (the first is sources[{first}])",
                kind.as_str()
            );
            ctx.invalid(&entry.referenced, &key, message);
        } else if let Some(ip) = kinds.iter().position(|k| *k == SourceKind::ClientIp) {
            let message = format!("unreachable: client_ip at sources[{ip}] identifies every request, so it must be the last source");
            ctx.invalid(&entry.referenced, &key, message);
        }
        kinds.push(kind);

        let source = match &entry.value {
            RawSource::ApiKey(raw) => {
                api_key(ctx, &format!("{key}.api_key"), raw, &entry.referenced)
                    .map(IdentitySource::ApiKey)
            }
            RawSource::Jwt(raw) => {
                super::jwt::jwt(ctx, &format!("{key}.jwt"), raw, &entry.referenced)
                    .map(IdentitySource::Jwt)
            }
            RawSource::Cookie(raw) => {
                cookie(ctx, &format!("{key}.cookie"), raw).map(IdentitySource::Cookie)
            }
            RawSource::ClientIp(_) => Some(IdentitySource::ClientIp),
        };
        sources.extend(source);
    }
    (sources, kinds)
}

/// An `api_key` source. Keys are credentials, so messages name them by index.
fn api_key(ctx: &mut Ctx<'_>, key: &str, raw: &RawApiKey, at: &Location) -> Option<ApiKeySource> {
    let header = ctx.header_name_or(&format!("{key}.header"), &raw.header, "x-api-key");
    let unknown_options = [
        ("reject", UnknownKeys::Reject),
        ("as_id", UnknownKeys::AsId),
    ];
    let unknown_keys = ctx.choice_or(
        &format!("{key}.unknown_keys"),
        &raw.unknown_keys,
        &unknown_options,
        UnknownKeys::Reject,
    );
    let mut ok = true;

    let mut keys = HashMap::new();
    let entries = raw
        .keys
        .as_ref()
        .map_or(&[][..], |table| &table.value.0[..]);
    for (i, (api_key, entry)) in entries.iter().enumerate() {
        let entry_key = format!("{key}.keys[{i}]");
        if api_key.value.trim().is_empty() {
            ctx.invalid(
                &api_key.referenced,
                &entry_key,
                "expected a non-empty API key, got an empty one",
            );
            ok = false;
            continue;
        }
        let user = ctx
            .require(
                &entry.value.user,
                &entry.referenced,
                &format!("{entry_key}.user"),
                "the user id this key belongs to",
            )
            .and_then(|v| ctx.non_empty(&format!("{entry_key}.user"), v));
        let plan = entry
            .value
            .plan
            .as_ref()
            .and_then(|v| ctx.non_empty(&format!("{entry_key}.plan"), v));
        let role = entry
            .value
            .role
            .as_ref()
            .and_then(|v| ctx.non_empty(&format!("{entry_key}.role"), v));
        let Some(user) = user else {
            ok = false;
            continue;
        };
        keys.insert(api_key.value.clone(), ApiKeyIdentity { user, plan, role });
    }

    // An empty table that rejects unknown keys turns every key away.
    if keys.is_empty() && ok && unknown_keys == UnknownKeys::Reject {
        let place = raw.keys.as_ref().map_or(at, |k| &k.referenced);
        let message = "no keys and unknown_keys: reject would reject every key; add keys or set unknown_keys: as_id";
        ctx.invalid(place, &format!("{key}.keys"), message);
        ok = false;
    }
    ok.then_some(ApiKeySource {
        header,
        keys,
        unknown_keys,
    })
}

/// A `cookie` source: the cookie name must be an RFC 6265 token.
fn cookie(ctx: &mut Ctx<'_>, key: &str, raw: &RawCookie) -> Option<CookieSource> {
    let Some(value) = &raw.name else {
        return Some(CookieSource {
            name: "session".to_owned(),
        });
    };
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !value.value.is_empty() && value.value.chars().all(token) {
        return Some(CookieSource {
            name: value.value.clone(),
        });
    }
    let got = ctx.shown_str(value);
    let message =
        format!("expected a cookie name (letters, digits and !#$%&'*+-.^_`|~), got {got}");
    ctx.invalid(&value.referenced, &format!("{key}.name"), message);
    None
}

/// `identity.anonymous`: the tier resolved (default tier when unset).
fn anonymous(
    ctx: &mut Ctx<'_>,
    raw: Option<&Spanned<RawAnonymous>>,
    tiers: &TierSet,
    default_tier: &str,
    no_sources: bool,
) -> Anonymous {
    let mode_options = [
        ("per_ip", AnonymousMode::PerIp),
        ("shared", AnonymousMode::Shared),
        ("reject", AnonymousMode::Reject),
    ];
    let mode_field = raw.and_then(|r| r.value.mode.as_ref());
    let mode = mode_field
        .and_then(|v| ctx.choice("identity.anonymous.mode", v, &mode_options))
        .unwrap_or(AnonymousMode::PerIp);
    if let (AnonymousMode::Reject, true, Some(written)) = (mode, no_sources, mode_field) {
        let message =
            "reject with no identity sources would reject every request; add sources or use per_ip";
        ctx.invalid(&written.referenced, "identity.anonymous.mode", message);
    }

    let tier = raw
        .and_then(|r| r.value.tier.as_ref())
        .and_then(|v| tiers.reference(ctx, "identity.anonymous.tier", v))
        .unwrap_or_else(|| default_tier.to_owned());
    Anonymous { mode, tier }
}
