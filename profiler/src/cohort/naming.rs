//! Names for cohorts, from what sets each one apart.
//!
//! A name is a few traits joined by `-`, each one a way the cohort's centre
//! differs from the whole sample, in this order:
//! - a device, role or location that at least 60% of the cohort shares
//!   (skipped when 90% of everyone shares it, since it says nothing);
//! - the route class that dominates its arrivals (a majority of them, or at
//!   least 40% and 1.2 times the sample's share), or `mixed`;
//! - `bulk` when its responses are large (mean `log2` bytes one standard
//!   deviation above the sample's);
//! - `heavy` or `light` when its rate is half a standard deviation (of
//!   `ln(1 + requests per minute)`) above or below the sample's;
//! - `night` when half its active minutes fall between 00:00 and 06:00 UTC
//!   and the sample's do not (under 35%).
//!
//! So a cohort reads like `mobile-page-heavy`, `bot-static` or
//! `download-bulk`. Two cohorts that come out with the same name get `-2`,
//! `-3` in id order.

use serde::{Deserialize, Serialize};

use crate::activity::ROUTE_CLASSES;
use crate::cohort::features::{
    ColumnStats, Vector, ATTRIBUTE_VALUES, BYTES, DEVICE, HOURS, LOCATION, RATE, ROLE, ROUTES,
};

/// Share of a cohort that must share an attribute value to be named by it.
const ATTRIBUTE_DOMINANT: f64 = 0.6;
/// An attribute value shared this widely in the sample names nobody.
const ATTRIBUTE_UBIQUITOUS: f64 = 0.9;
/// Share of arrivals a route class needs to name a cohort.
const ROUTE_DOMINANT: f64 = 0.4;
/// ... unless it has this share, which names the cohort whatever the
/// sample does (so that a single cohort still gets a name).
const ROUTE_MAJORITY: f64 = 0.5;
/// ... and how much more than the sample's share.
const ROUTE_LIFT: f64 = 1.2;
/// Standard deviations of `log2` bytes above the sample for `bulk`.
const BULK_SD: f64 = 1.0;
/// Standard deviations of log rate for `heavy` / `light`.
const RATE_SD: f64 = 0.5;
/// Share of active minutes in 00:00-06:00 UTC for `night`.
const NIGHT_SHARE: f64 = 0.5;
/// ... when the sample's share stays under this.
const NIGHT_SAMPLE_MAX: f64 = 0.35;

/// Words for the codes in [`UserAttributes`](crate::cohort::UserAttributes)
/// and for route classes; a code without a word is written as the kind and
/// the number (`route3`, `role2`, `location5`, `device6`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortNames {
    /// Route class names by class index (the proxy passes its policy's).
    pub routes: Vec<String>,
    /// Role names by code.
    pub roles: Vec<String>,
    /// Location names by code.
    pub locations: Vec<String>,
    /// Device names by code; the default follows
    /// [`UserAttributes::device_code`](crate::cohort::UserAttributes::device_code).
    pub devices: Vec<String>,
}

impl Default for CohortNames {
    fn default() -> Self {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect();
        Self {
            routes: words(&["other"]),
            roles: Vec::new(),
            locations: Vec::new(),
            devices: words(&["unknown", "desktop", "mobile", "bot", "other-device"]),
        }
    }
}

fn word(words: &[String], code: usize, kind: &str) -> String {
    words
        .get(code)
        .filter(|w| !w.is_empty())
        .cloned()
        .unwrap_or_else(|| format!("{kind}{code}"))
}

/// The name of a cohort whose members' raw vectors average to `centre`,
/// in a sample with statistics `sample`.
pub(crate) fn name(centre: &Vector, sample: &ColumnStats, names: &CohortNames) -> String {
    let mut traits: Vec<String> = Vec::new();

    // Attributes that most of the cohort shares and not everyone does.
    for (first, words, kind) in [
        (DEVICE, &names.devices, "device"),
        (ROLE, &names.roles, "role"),
        (LOCATION, &names.locations, "location"),
    ] {
        let (code, share) = argmax(&centre[first..first + ATTRIBUTE_VALUES]);
        let everyone = sample.mean[first + code];
        if code != 0 && share >= ATTRIBUTE_DOMINANT && everyone < ATTRIBUTE_UBIQUITOUS {
            traits.push(word(words, code, kind));
        }
    }

    // The route class that sets its arrivals apart.
    let dominant = (0..ROUTE_CLASSES)
        .filter(|&c| {
            let share = centre[ROUTES + c];
            share > ROUTE_MAJORITY
                || (share >= ROUTE_DOMINANT && share >= ROUTE_LIFT * sample.mean[ROUTES + c])
        })
        .max_by(|&a, &b| centre[ROUTES + a].total_cmp(&centre[ROUTES + b]));
    traits.push(dominant.map_or_else(|| "mixed".to_owned(), |c| word(&names.routes, c, "route")));

    // Size, volume and time of day.
    if z(centre, sample, BYTES) >= BULK_SD {
        traits.push("bulk".to_owned());
    }
    let rate_z = z(centre, sample, RATE);
    if rate_z >= RATE_SD {
        traits.push("heavy".to_owned());
    } else if rate_z <= -RATE_SD {
        traits.push("light".to_owned());
    }
    let night = |v: &[f64]| v[HOURS] + v[HOURS + 1];
    if night(centre) >= NIGHT_SHARE && night(&sample.mean) < NIGHT_SAMPLE_MAX {
        traits.push("night".to_owned());
    }
    traits.join("-")
}

/// Standard score of column `j` of `centre` in the sample (0 when the
/// column does not vary or is unknown).
fn z(centre: &Vector, sample: &ColumnStats, j: usize) -> f64 {
    let sd = sample.variance[j].sqrt();
    let d = centre[j] - sample.mean[j];
    if sd > 1e-12 && d.is_finite() {
        d / sd
    } else {
        0.0
    }
}

/// Index and value of the largest entry (the first on ties).
fn argmax(values: &[f64]) -> (usize, f64) {
    values
        .iter()
        .copied()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
}

/// Makes names unique by suffixing repeats with `-2`, `-3`, ... in order.
pub(crate) fn dedupe(names: &mut [String]) {
    for i in 1..names.len() {
        let base = names[i].clone();
        let mut n = 1;
        while names[..i].contains(&names[i]) {
            n += 1;
            names[i] = format!("{base}-{n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cohort::features::DIMS;

    fn sample() -> ColumnStats {
        let mut mean = [0.0; DIMS];
        let mut variance = [0.0; DIMS];
        mean[RATE] = 1.0;
        variance[RATE] = 1.0;
        mean[BYTES] = 12.0;
        variance[BYTES] = 4.0;
        mean[ROUTES] = 0.45;
        mean[ROUTES + 1] = 0.3;
        mean[ROUTES + 2] = 0.25;
        mean[HOURS + 4] = 1.0;
        mean[DEVICE + 1] = 0.5;
        mean[DEVICE + 2] = 0.3;
        mean[DEVICE + 3] = 0.2;
        mean[ROLE] = 1.0;
        mean[LOCATION] = 1.0;
        ColumnStats { mean, variance }
    }

    fn names() -> CohortNames {
        CohortNames {
            routes: ["static", "page", "export"].map(String::from).to_vec(),
            ..CohortNames::default()
        }
    }

    #[test]
    fn traits_that_set_a_cohort_apart_make_its_name() {
        let stats = sample();
        let mut centre = stats.mean;
        centre[DEVICE + 1] = 0.1;
        centre[DEVICE + 2] = 0.8;
        centre[ROUTES] = 0.2;
        centre[ROUTES + 1] = 0.7;
        centre[RATE] = 2.0;
        assert_eq!(name(&centre, &stats, &names()), "mobile-page-heavy");

        let mut bulk = stats.mean;
        bulk[ROUTES] = 0.1;
        bulk[ROUTES + 2] = 0.8;
        bulk[BYTES] = 16.0;
        bulk[RATE] = 0.0;
        assert_eq!(name(&bulk, &stats, &names()), "export-bulk-light");
    }

    #[test]
    fn a_cohort_like_everyone_is_mixed_and_night_needs_a_day_population() {
        let stats = sample();
        assert_eq!(name(&stats.mean, &stats, &names()), "mixed");
        let mut owls = stats.mean;
        owls[HOURS] = 0.6;
        owls[HOURS + 4] = 0.4;
        assert_eq!(name(&owls, &stats, &names()), "mixed-night");
    }

    #[test]
    fn codes_without_words_are_spelled_out_and_repeats_are_numbered() {
        let stats = sample();
        let mut centre = stats.mean;
        centre[ROLE] = 0.0;
        centre[ROLE + 5] = 1.0;
        centre[ROUTES + 6] = 1.0;
        assert_eq!(
            name(&centre, &stats, &CohortNames::default()),
            "role5-route6"
        );
        let mut list = ["a", "b", "a", "a", "a-2"].map(String::from).to_vec();
        dedupe(&mut list);
        assert_eq!(list, ["a", "b", "a-2", "a-3", "a-2-2"]);
    }
}
