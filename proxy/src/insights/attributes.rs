//! Who a user is, as the cohort clusterer counts it: small codes for role,
//! location and device, kept in one atomic word per user.
//!
//! The clusterer groups users by behaviour *and* by attributes, but the
//! attributes are only known on the request path (a JWT claim, a location
//! header, the user agent). So the hot path turns them into codes and
//! stores them in the user's entry; the background tick reads them back.
//!
//! Codes: 0 is unknown; roles and locations that the config names (in rule
//! conditions and the API-key table) get 1 to 6 in file order; any other
//! value gets 7 ("other"). The device code is the profiler's
//! [`UserAttributes::device_code`]. Eight codes per attribute is what the
//! clusterer encodes ([`ATTRIBUTE_VALUES`]); a config naming more than six
//! roles or locations shares code 7 among the rest.
//!
//! Known limitation: the vocabulary is read from the config at start, so
//! roles and locations first named by a later reload count as "other" until
//! a restart.

use std::sync::atomic::{AtomicU32, Ordering};

use headroom_config::{Config, IdentitySource};
use headroom_policies::Attributes;
use headroom_profiler::cohort::ATTRIBUTE_VALUES;
use headroom_profiler::{CohortNames, UserAttributes};

/// Named codes per attribute: 1 to 6; code 7 is "other".
const NAMED: usize = ATTRIBUTE_VALUES - 2;

/// The code shared by every value the config does not name.
const OTHER: u8 = (ATTRIBUTE_VALUES - 1) as u8;

/// The role and location vocabularies, from the config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttributeCodes {
    roles: Vec<Box<str>>,
    locations: Vec<Box<str>>,
}

impl AttributeCodes {
    /// The roles and locations `config` names, in file order, at most six
    /// of each: rule conditions first, then API-key table entries (roles).
    pub fn from_config(config: &Config) -> Self {
        let mut codes = Self::default();
        for rule in &config.rules {
            if let Some(role) = &rule.when.role {
                push_unique(&mut codes.roles, role, false);
            }
            if let Some(location) = &rule.when.location {
                push_unique(&mut codes.locations, location, true);
            }
        }
        for source in &config.identity.sources {
            if let IdentitySource::ApiKey(api) = source {
                let mut entries: Vec<_> =
                    api.keys.values().filter_map(|e| e.role.clone()).collect();
                // The key table is a hash map: sort so codes do not change
                // from one start to the next.
                entries.sort();
                for role in &entries {
                    push_unique(&mut codes.roles, role, false);
                }
            }
        }
        codes
    }

    /// The codes of one request's attributes. Allocation-free: at most six
    /// string comparisons per attribute.
    pub fn code(&self, attrs: &Attributes<'_>) -> UserAttributes {
        UserAttributes {
            role: lookup(&self.roles, attrs.role, false),
            location: lookup(&self.locations, attrs.location, true),
            device: UserAttributes::device_code(attrs.device),
        }
    }

    /// Words for cohort names: `routes` by class id, the roles and
    /// locations by code, and the profiler's default device words.
    pub fn cohort_names(&self, routes: Vec<String>) -> CohortNames {
        let words = |named: &[Box<str>], other: &str| {
            let mut words = vec!["unknown".to_owned()];
            words.extend(named.iter().map(|w| w.to_string()));
            words.resize(usize::from(OTHER), String::new());
            words.push(other.to_owned());
            words
        };
        CohortNames {
            routes,
            roles: words(&self.roles, "other-role"),
            locations: words(&self.locations, "other-location"),
            ..CohortNames::default()
        }
    }
}

/// Adds `value` unless present or the list is full.
fn push_unique(list: &mut Vec<Box<str>>, value: &str, ignore_case: bool) {
    let present = list.iter().any(|v| same(v, value, ignore_case));
    if !present && list.len() < NAMED {
        list.push(value.into());
    }
}

fn same(a: &str, b: &str, ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// The code of `value` in `list`: 0 when absent, 1.. when named, else 7.
fn lookup(list: &[Box<str>], value: Option<&str>, ignore_case: bool) -> u8 {
    let Some(value) = value else { return 0 };
    list.iter()
        .position(|v| same(v, value, ignore_case))
        .map_or(OTHER, |i| i as u8 + 1)
}

/// A user's latest attribute codes, packed in one atomic word
/// (role | location << 8 | device << 16). Starts all unknown.
#[derive(Debug, Default)]
pub struct UserAttributeCell(AtomicU32);

impl UserAttributeCell {
    /// Stores `codes`; a load and, only when they changed, a store (most
    /// requests of a user carry the same attributes, so the cache line is
    /// rarely written).
    pub fn store(&self, codes: UserAttributes) {
        let word =
            u32::from(codes.role) | u32::from(codes.location) << 8 | u32::from(codes.device) << 16;
        // Relaxed: a self-contained statistic, read by the background tick.
        if self.0.load(Ordering::Relaxed) != word {
            self.0.store(word, Ordering::Relaxed);
        }
    }

    /// The latest codes.
    pub fn load(&self) -> UserAttributes {
        let word = self.0.load(Ordering::Relaxed);
        UserAttributes {
            role: word as u8,
            location: (word >> 8) as u8,
            device: (word >> 16) as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headroom_policies::{Device, SourceKind};

    const CONFIG: &str = "\
identity:
  location_header: cf-ipcountry
  sources:
    - api_key:
        keys:
          k1: { user: a, role: auditor }
          k2: { user: b, role: admin }
tiers:
  - name: free
    requests_per_second: 1
    burst: 5
rules:
  - when: { role: admin }
    tier: free
  - when: { location: DE }
    tier: free
default_tier: free
";

    fn attrs<'a>(role: Option<&'a str>, location: Option<&'a str>) -> Attributes<'a> {
        Attributes {
            plan: None,
            role,
            location,
            device: Device::Mobile,
            authenticated: true,
            source: SourceKind::ApiKey,
        }
    }

    #[test]
    fn named_values_get_their_code_and_others_share_the_last() {
        let config = headroom_config::load_str(CONFIG, "x.yaml").expect("valid");
        let codes = AttributeCodes::from_config(&config);
        let c = codes.code(&attrs(Some("admin"), Some("de")));
        assert_eq!((c.role, c.location, c.device), (1, 1, 2));
        assert_eq!(codes.code(&attrs(Some("auditor"), None)).role, 2);
        let c = codes.code(&attrs(Some("intern"), Some("fr")));
        assert_eq!((c.role, c.location), (7, 7));
        assert_eq!(codes.code(&attrs(None, None)).role, 0);

        let names = codes.cohort_names(vec!["other".into()]);
        assert_eq!(names.roles[1], "admin");
        assert_eq!(names.roles[7], "other-role");
        assert_eq!(names.locations.len(), 8);
    }

    #[test]
    fn the_cell_round_trips_codes() {
        let cell = UserAttributeCell::default();
        assert_eq!(cell.load(), UserAttributes::default());
        let codes = UserAttributes {
            role: 3,
            location: 7,
            device: 4,
        };
        cell.store(codes);
        assert_eq!(cell.load(), codes);
    }
}
