//! Small pieces the admin views share: route classes with the policy's
//! names, and the next-action table's horizons in seconds.
//!
//! The profiler tracks route classes 0 to 7 while a policy may have nine
//! (`other` plus eight routes): the profiler counts the eighth route in
//! class 7 with the seventh, so class 7 is named after both (`a+b`).

use headroom_policies::Policy;
use headroom_profiler::{NextActionTable, ROUTE_CLASSES};
use serde::Serialize;

/// The profiler's route classes that `policy` uses, with their names.
pub fn route_classes(policy: &Policy) -> Vec<(u8, String)> {
    let mut classes: Vec<(u8, String)> = Vec::with_capacity(ROUTE_CLASSES);
    for (class, name) in policy.route_classes() {
        let id = class.id.min(ROUTE_CLASSES as u8 - 1);
        match classes.iter_mut().find(|(c, _)| *c == id) {
            Some((_, existing)) => {
                existing.push('+');
                existing.push_str(name);
            }
            None => classes.push((id, name.to_owned())),
        }
    }
    classes
}

/// A route's share of some counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteShare {
    /// The route's name (`other` for requests no route matched).
    pub route: String,
    /// The count behind the share, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    /// Share of the total, in `[0, 1]`.
    pub share: f64,
}

impl RouteShare {
    /// Shares of per-class `counts`, for the classes `policy` uses.
    pub fn of_counts(policy: &Policy, counts: &[u64; ROUTE_CLASSES]) -> Vec<Self> {
        let total: u64 = counts.iter().sum();
        route_classes(policy)
            .into_iter()
            .map(|(class, route)| {
                let n = counts[usize::from(class)];
                Self {
                    route,
                    requests: Some(n),
                    share: if total == 0 {
                        0.0
                    } else {
                        n as f64 / total as f64
                    },
                }
            })
            .collect()
    }

    /// Per-class `shares`, for the classes `policy` uses.
    pub fn of_shares(policy: &Policy, shares: &[f64; ROUTE_CLASSES]) -> Vec<Self> {
        route_classes(policy)
            .into_iter()
            .map(|(class, route)| Self {
                route,
                requests: None,
                share: shares[usize::from(class)],
            })
            .collect()
    }
}

/// The table's horizons in whole seconds.
pub fn next_action_horizons_s(table: &NextActionTable) -> Vec<u64> {
    table.horizons_ms().iter().map(|ms| ms / 1_000).collect()
}
