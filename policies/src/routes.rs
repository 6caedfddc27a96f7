//! Route classes: which kind of request this is, and what it costs.
//!
//! The proxy classifies every request once, by path, to charge the route's
//! token cost and to label per-route metrics. A class is a small number
//! (0 for "other", 1..=8 for the configured routes in file order), so
//! per-route state can live in fixed arrays and label values come from a
//! closed set. Matching semantics (segment-bounded prefixes, `*` globs) are
//! defined once, by `headroom_config::RouteMatch`; this module adds the
//! ordering, the ids, the costs and the names.

mod normalize;

use std::num::NonZeroU32;

use headroom_config::{Route, RouteKind, RouteMatch};

pub use normalize::normalize as normalize_path;

/// Most configured routes; ids 1..=8 plus 0 for "other" fit in a `u8` and
/// in small fixed arrays.
pub const MAX_ROUTES: usize = 8;

/// Name of route class 0, the requests no configured route matches.
pub const OTHER_ROUTE: &str = "other";

/// Errors compiling the route list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// More routes than ids.
    #[error("at most {MAX_ROUTES} routes are allowed, got {count}")]
    TooMany {
        /// Routes in the config.
        count: usize,
    },
    /// A route has cost 0, which would let its requests through for free.
    #[error("route {name:?}: cost must be at least 1, got 0")]
    ZeroCost {
        /// The route's name.
        name: String,
    },
    /// A route is named like the catch-all class, so their metrics would
    /// merge.
    #[error("route name {OTHER_ROUTE:?} is reserved for requests that match no route")]
    ReservedName,
}

/// The class of one request: what it costs and how urgent it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteClass {
    /// 0 = no configured route matched ("other"); 1..=8 = the configured
    /// routes in file order.
    pub id: u8,
    /// Tokens one request takes from the user's bucket, >= 1 (1 for
    /// "other").
    pub cost: NonZeroU32,
    /// Latency sensitivity ("other" is interactive).
    pub kind: RouteKind,
}

impl RouteClass {
    /// The class of requests that match no configured route.
    pub const OTHER: RouteClass = RouteClass {
        id: 0,
        cost: NonZeroU32::MIN,
        kind: RouteKind::Interactive,
    };
}

/// One configured route, ready to match.
#[derive(Debug, Clone)]
struct CompiledRoute {
    matcher: RouteMatch,
    class: RouteClass,
    name: Box<str>,
}

/// The ordered route list of one policy.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routes {
    routes: Box<[CompiledRoute]>,
}

impl Routes {
    /// Compiles the configured routes, keeping their order.
    pub(crate) fn compile(routes: &[Route]) -> Result<Self, RouteError> {
        if routes.len() > MAX_ROUTES {
            return Err(RouteError::TooMany {
                count: routes.len(),
            });
        }
        let compiled = routes
            .iter()
            .zip(1u8..)
            .map(|(route, id)| {
                if route.name == OTHER_ROUTE {
                    return Err(RouteError::ReservedName);
                }
                let cost = NonZeroU32::new(route.cost).ok_or_else(|| RouteError::ZeroCost {
                    name: route.name.clone(),
                })?;
                Ok(CompiledRoute {
                    matcher: route.matcher.clone(),
                    class: RouteClass {
                        id,
                        cost,
                        kind: route.kind,
                    },
                    name: route.name.as_str().into(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { routes: compiled })
    }

    /// The class of the first route matching `path`, or
    /// [`RouteClass::OTHER`]. Anything from the first `?` on is ignored.
    /// The path is matched as given: the caller passes the path it will
    /// forward (no percent-decoding or `..` resolution happens here).
    /// Allocation-free.
    pub(crate) fn classify(&self, path: &str) -> RouteClass {
        let path = path.split_once('?').map_or(path, |(path, _query)| path);
        self.routes
            .iter()
            .find(|route| route.matcher.matches(path))
            .map_or(RouteClass::OTHER, |route| route.class)
    }

    /// Name of route class `id`: [`OTHER_ROUTE`] for 0, the configured
    /// name for 1..=len, `None` past that.
    pub(crate) fn name(&self, id: u8) -> Option<&str> {
        match usize::from(id).checked_sub(1) {
            None => Some(OTHER_ROUTE),
            Some(index) => self.routes.get(index).map(|route| &*route.name),
        }
    }

    /// Every class this policy can return, "other" first, with its name.
    pub(crate) fn classes(&self) -> impl Iterator<Item = (RouteClass, &str)> {
        let configured = self.routes.iter().map(|route| (route.class, &*route.name));
        std::iter::once((RouteClass::OTHER, OTHER_ROUTE)).chain(configured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, matcher: RouteMatch, cost: u32, kind: RouteKind) -> Route {
        Route {
            name: name.into(),
            matcher,
            cost,
            kind,
        }
    }

    fn sample() -> Routes {
        Routes::compile(&[
            route(
                "export",
                RouteMatch::Prefix("/export".into()),
                10,
                RouteKind::Batch,
            ),
            route(
                "user_export",
                RouteMatch::Pattern("/api/*/export".into()),
                5,
                RouteKind::Batch,
            ),
            route(
                "api",
                RouteMatch::Prefix("/api/".into()),
                2,
                RouteKind::Interactive,
            ),
        ])
        .expect("valid routes")
    }

    #[test]
    fn first_matching_route_wins_in_file_order() {
        let routes = sample();
        assert_eq!(routes.classify("/export/all.csv").id, 1);
        assert_eq!(routes.classify("/api/alice/export").id, 2);
        assert_eq!(routes.classify("/api/alice/export").cost.get(), 5);
        assert_eq!(routes.classify("/api/alice/profile").id, 3);
        assert_eq!(
            routes.classify("/api/alice/profile").kind,
            RouteKind::Interactive
        );
    }

    #[test]
    fn unmatched_paths_are_other_with_cost_one() {
        let routes = sample();
        for path in ["/", "/exports", "/api", "/static/app.js", ""] {
            assert_eq!(routes.classify(path), RouteClass::OTHER, "{path}");
        }
    }

    #[test]
    fn query_string_is_ignored() {
        let routes = sample();
        assert_eq!(routes.classify("/export?format=csv").id, 1);
        assert_eq!(routes.classify("/api/bob/export?x=/y").id, 2);
        assert_eq!(routes.classify("/?/export").id, 0);
    }

    #[test]
    fn names_cover_other_and_every_configured_route() {
        let routes = sample();
        assert_eq!(routes.name(0), Some(OTHER_ROUTE));
        assert_eq!(routes.name(3), Some("api"));
        assert_eq!(routes.name(4), None);
        let names: Vec<_> = routes
            .classes()
            .map(|(class, name)| (class.id, name))
            .collect();
        assert_eq!(
            names,
            [(0, "other"), (1, "export"), (2, "user_export"), (3, "api")]
        );
    }

    #[test]
    fn too_many_zero_cost_and_reserved_names_are_rejected() {
        let many: Vec<_> = (0..9)
            .map(|i| {
                route(
                    &format!("r{i}"),
                    RouteMatch::Prefix(format!("/r{i}")),
                    1,
                    RouteKind::Batch,
                )
            })
            .collect();
        assert_eq!(
            Routes::compile(&many).err(),
            Some(RouteError::TooMany { count: 9 })
        );
        assert!(Routes::compile(&many[..8]).is_ok());

        let free = route(
            "free",
            RouteMatch::Prefix("/free".into()),
            0,
            RouteKind::Batch,
        );
        assert_eq!(
            Routes::compile(&[free]).err(),
            Some(RouteError::ZeroCost {
                name: "free".into()
            })
        );
        let other = route(
            "other",
            RouteMatch::Prefix("/o".into()),
            1,
            RouteKind::Batch,
        );
        assert_eq!(
            Routes::compile(&[other]).err(),
            Some(RouteError::ReservedName)
        );
    }
}
