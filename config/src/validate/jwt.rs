//! Checks for the `jwt` identity source: algorithms, keys and key files.
//!
//! Each key must carry exactly the material its algorithm verifies with: a
//! shared secret for HS*, a PEM public key for everything else. Key files
//! are read here, relative to the config file, so a missing or unreadable
//! file fails `headroom check` instead of the first authenticated request.

use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::identity::secret;
use super::Ctx;
use crate::identity::{JwtAlgorithm, JwtKey, JwtKeyMaterial, JwtSource, OnInvalid};
use crate::raw::{RawJwt, RawJwtKey};

/// A `jwt` source.
pub(super) fn jwt(ctx: &mut Ctx<'_>, key: &str, raw: &RawJwt, at: &Location) -> Option<JwtSource> {
    let header = ctx.header_name_or(&format!("{key}.header"), &raw.header, "authorization");
    let leeway = ctx.duration_or(
        &format!("{key}.leeway"),
        &raw.leeway,
        Duration::from_secs(30),
        true,
    );
    let text_or =
        |ctx: &mut Ctx<'_>, name: &str, field: &Option<Spanned<String>>, default: &str| {
            field
                .as_ref()
                .and_then(|v| ctx.non_empty(&format!("{key}.{name}"), v))
                .unwrap_or_else(|| default.to_owned())
        };
    let user_claim = text_or(ctx, "user_claim", &raw.user_claim, "sub");
    let plan_claim = text_or(ctx, "plan_claim", &raw.plan_claim, "plan");
    let role_claim = text_or(ctx, "role_claim", &raw.role_claim, "role");
    let issuer = raw
        .issuer
        .as_ref()
        .and_then(|v| ctx.non_empty(&format!("{key}.issuer"), v));
    let audience = raw
        .audience
        .as_ref()
        .and_then(|v| ctx.non_empty(&format!("{key}.audience"), v));
    let invalid_options = [
        ("reject", OnInvalid::Reject),
        ("anonymous", OnInvalid::Anonymous),
    ];
    let on_invalid = ctx.choice_or(
        &format!("{key}.on_invalid"),
        &raw.on_invalid,
        &invalid_options,
        OnInvalid::Reject,
    );

    let keys_key = format!("{key}.keys");
    let list = ctx.require(
        &raw.keys,
        at,
        &keys_key,
        "a list of at least one verification key",
    )?;
    if list.value.is_empty() {
        ctx.invalid(
            &list.referenced,
            &keys_key,
            "expected at least one verification key, got an empty list",
        );
        return None;
    }
    let mut keys: Vec<JwtKey> = Vec::with_capacity(list.value.len());
    let mut ok = true;
    for (i, entry) in list.value.iter().enumerate() {
        let checked = jwt_key(
            ctx,
            &format!("{keys_key}[{i}]"),
            &entry.value,
            &entry.referenced,
            &keys,
        );
        ok &= checked.is_some();
        keys.extend(checked);
    }
    ok.then_some(JwtSource {
        header,
        keys,
        issuer,
        audience,
        leeway,
        user_claim,
        plan_claim,
        role_claim,
        on_invalid,
    })
}

/// One JWT key: an algorithm and the material it needs, `kid` unique.
fn jwt_key(
    ctx: &mut Ctx<'_>,
    key: &str,
    raw: &RawJwtKey,
    at: &Location,
    earlier: &[JwtKey],
) -> Option<JwtKey> {
    let kid = raw
        .kid
        .as_ref()
        .and_then(|v| ctx.non_empty(&format!("{key}.kid"), v));
    if let (Some(kid), Some(written)) = (&kid, &raw.kid) {
        if let Some(first) = earlier.iter().position(|k| k.kid.as_ref() == Some(kid)) {
            let message = format!("kid {kid:?} is already used by keys[{first}]");
            ctx.invalid(&written.referenced, &format!("{key}.kid"), message);
        }
    }
    let algorithm_key = format!("{key}.algorithm");
    let algorithm = ctx
        .require(
            &raw.algorithm,
            at,
            &algorithm_key,
            "an algorithm such as HS256, RS256 or ES256",
        )
        .and_then(|v| ctx.choice(&algorithm_key, v, &JwtAlgorithm::ALL))?;
    let material = match algorithm.min_secret_bytes() {
        Some(min_bytes) => hmac_material(ctx, key, raw, at, algorithm, min_bytes),
        None => public_key_material(ctx, key, raw, at, algorithm),
    }?;
    Some(JwtKey {
        kid,
        algorithm,
        material,
    })
}

/// The shared secret an HS* key needs; public key fields are refused.
fn hmac_material(
    ctx: &mut Ctx<'_>,
    key: &str,
    raw: &RawJwtKey,
    at: &Location,
    algorithm: JwtAlgorithm,
    min_bytes: usize,
) -> Option<JwtKeyMaterial> {
    for (name, field) in [
        ("public_key_pem", &raw.public_key_pem),
        ("public_key_file", &raw.public_key_file),
    ] {
        if let Some(value) = field {
            let message =
                format!("{algorithm:?} verifies with a shared secret; use secret, not {name}");
            ctx.invalid(&value.referenced, &format!("{key}.{name}"), message);
        }
    }
    let secret_key = format!("{key}.secret");
    let expected =
        format!("a secret of at least {min_bytes} bytes for {algorithm:?} (or env:NAME)");
    let value = ctx.require(&raw.secret, at, &secret_key, &expected)?;
    secret(ctx, &secret_key, value, min_bytes).map(JwtKeyMaterial::Secret)
}

/// The PEM public key an RS*/PS*/ES*/EdDSA key needs, inline or from a file.
fn public_key_material(
    ctx: &mut Ctx<'_>,
    key: &str,
    raw: &RawJwtKey,
    at: &Location,
    algorithm: JwtAlgorithm,
) -> Option<JwtKeyMaterial> {
    if let Some(value) = &raw.secret {
        let message = format!("{algorithm:?} verifies with a public key; use public_key_pem or public_key_file, not secret");
        ctx.invalid(&value.referenced, &format!("{key}.secret"), message);
    }
    match (&raw.public_key_pem, &raw.public_key_file) {
        (Some(pem), None) => {
            let pem_key = format!("{key}.public_key_pem");
            check_pem(&pem.value)
                .map_err(|problem| ctx.invalid(&pem.referenced, &pem_key, problem))
                .ok()?;
            Some(JwtKeyMaterial::PublicKeyPem(pem.value.clone()))
        }
        (None, Some(file)) => {
            let file_key = format!("{key}.public_key_file");
            let path = ctx.resolve_path(&file.value);
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) => {
                    let message = format!(
                        "cannot read {:?} (resolved to {}): {error}",
                        file.value,
                        path.display()
                    );
                    ctx.invalid(&file.referenced, &file_key, message);
                    return None;
                }
            };
            check_pem(&text)
                .map_err(|problem| {
                    ctx.invalid(
                        &file.referenced,
                        &file_key,
                        format!("{}: {problem}", path.display()),
                    )
                })
                .ok()?;
            Some(JwtKeyMaterial::PublicKeyPem(text))
        }
        (Some(_), Some(file)) => {
            let message = "expected exactly one of public_key_pem and public_key_file, got both";
            ctx.invalid(&file.referenced, &format!("{key}.public_key_file"), message);
            None
        }
        (None, None) => {
            let message = format!(
                "missing required key: {algorithm:?} needs public_key_pem or public_key_file"
            );
            ctx.invalid(at, key, message);
            None
        }
    }
}

/// Checks that `text` at least looks like a PEM public key or certificate.
/// Refuses private keys outright: they must never sit in a proxy's config.
fn check_pem(text: &str) -> Result<(), String> {
    if text.contains("PRIVATE KEY-----") {
        return Err(
            "holds a PRIVATE key; give only the public key (openssl pkey -pubout)".to_owned(),
        );
    }
    let begin = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("-----BEGIN "));
    let label = begin
        .and_then(|l| l.strip_prefix("-----BEGIN "))
        .and_then(|l| l.strip_suffix("-----"));
    let Some(label) = label else {
        return Err("expected PEM text starting with -----BEGIN PUBLIC KEY-----".to_owned());
    };
    if !["PUBLIC KEY", "RSA PUBLIC KEY", "CERTIFICATE"].contains(&label) {
        return Err(format!(
            "expected a PEM PUBLIC KEY or CERTIFICATE, got a PEM {label}"
        ));
    }
    let end = format!("-----END {label}-----");
    let body: String = text
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN "))
        .skip(1)
        .take_while(|l| *l != end)
        .collect();
    if !text.contains(&end) {
        return Err(format!("PEM text has no {end} line"));
    }
    let base64 = |c: char| c.is_ascii_alphanumeric() || "+/=".contains(c);
    if body.is_empty() || !body.chars().all(base64) {
        return Err("PEM body is empty or not base64".to_owned());
    }
    Ok(())
}
