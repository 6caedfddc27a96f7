//! `admission`: the concurrency limit and queue bounds.

use crate::raw::{Field, RawAdmission, Scalar};
use crate::schema::Admission;
use crate::validate::Ctx;
use serde_saphyr::Spanned;

/// Largest concurrency limit accepted: far above what one proxy should hold
/// open to its backends, low enough that mistakes (an extra zero) are caught.
const MAX_CONCURRENCY: u64 = 100_000;

/// Checks `admission`; defaults for whatever is absent.
pub(super) fn admission(ctx: &mut Ctx<'_>, raw: Option<&Spanned<RawAdmission>>) -> Admission {
    let defaults = Admission::default();
    let Some(section) = raw else {
        return defaults;
    };
    let s = &section.value;
    let flag = |ctx: &mut Ctx<'_>, key: &str, field: &Field<Scalar>, default: bool| {
        field
            .as_ref()
            .and_then(|v| ctx.boolean(key, v))
            .unwrap_or(default)
    };
    let count = |ctx: &mut Ctx<'_>, key: &str, field: &Field<Scalar>, min: u64, default: u32| {
        let n = ctx.integer_or(key, field, (min, MAX_CONCURRENCY), u64::from(default));
        u32::try_from(n).unwrap_or(default)
    };

    let max = count(
        ctx,
        "admission.max_concurrency",
        &s.max_concurrency,
        1,
        defaults.max_concurrency,
    );
    let min = count(
        ctx,
        "admission.min_concurrency",
        &s.min_concurrency,
        1,
        defaults.min_concurrency,
    );
    let initial = count(
        ctx,
        "admission.initial_concurrency",
        &s.initial_concurrency,
        1,
        defaults.initial_concurrency.clamp(min.min(max), max),
    );
    let max_queue = ctx.integer_or(
        "admission.max_queue",
        &s.max_queue,
        (0, 1 << 24),
        defaults.max_queue as u64,
    );
    let tolerance = match &s.latency_tolerance {
        Some(v) => match ctx.positive_number("admission.latency_tolerance", v) {
            Some(t) if t > 1.0 => t,
            Some(t) => {
                let message = format!("expected a multiple above 1 (like 2), got {t}");
                ctx.invalid(&v.referenced, "admission.latency_tolerance", message);
                defaults.latency_tolerance
            }
            None => defaults.latency_tolerance,
        },
        None => defaults.latency_tolerance,
    };

    // The bounds must leave room for the limit to exist.
    if min > max {
        if let Some(at) = &s.min_concurrency {
            let message = format!("{min} is above max_concurrency {max}; expected at most {max}");
            ctx.invalid(&at.referenced, "admission.min_concurrency", message);
        }
    }
    if let Some(at) = &s.initial_concurrency {
        if !(min..=max).contains(&initial) {
            let message =
                format!("{initial} is outside [min_concurrency {min}, max_concurrency {max}]");
            ctx.invalid(&at.referenced, "admission.initial_concurrency", message);
        }
    }

    Admission {
        enabled: flag(ctx, "admission.enabled", &s.enabled, defaults.enabled),
        adaptive: flag(ctx, "admission.adaptive", &s.adaptive, defaults.adaptive),
        max_concurrency: max,
        min_concurrency: min.min(max),
        initial_concurrency: initial.clamp(min.min(max), max),
        latency_tolerance: tolerance,
        max_queue: usize::try_from(max_queue).unwrap_or(defaults.max_queue),
    }
}
