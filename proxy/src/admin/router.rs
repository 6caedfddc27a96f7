//! The admin API's routes: one table, matched by method and path segments.
//!
//! The table ([`ROUTES`]) is the single list of what the listener serves;
//! the OpenAPI document is checked against it by a test, so the two cannot
//! drift apart. A path template segment `{user}` matches any one non-empty
//! segment; nothing is percent-decoded (user ids are hex digits).

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /metrics`.
    Metrics,
    /// `GET` or `HEAD /healthz`.
    Healthz,
    /// `GET /v1/profiles/{user}`.
    GetProfile,
    /// `DELETE /v1/profiles/{user}`.
    DeleteProfile,
    /// `GET /v1/cohorts`.
    Cohorts,
    /// `GET /v1/forecast`.
    Forecast,
    /// `GET /v1/events`.
    ListEvents,
    /// `POST /v1/events`.
    PostEvent,
    /// `GET /dashboard`.
    Dashboard,
    /// `GET /v1/openapi.json`.
    OpenApi,
}

/// One served route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// The HTTP method, upper case.
    pub method: &'static str,
    /// The path template.
    pub path: &'static str,
    /// What it serves.
    pub endpoint: Endpoint,
}

const fn route(method: &'static str, path: &'static str, endpoint: Endpoint) -> RouteSpec {
    RouteSpec {
        method,
        path,
        endpoint,
    }
}

/// Every route the admin listener serves.
pub const ROUTES: &[RouteSpec] = &[
    route("GET", "/metrics", Endpoint::Metrics),
    route("GET", "/healthz", Endpoint::Healthz),
    route("HEAD", "/healthz", Endpoint::Healthz),
    route("GET", "/v1/profiles/{user}", Endpoint::GetProfile),
    route("DELETE", "/v1/profiles/{user}", Endpoint::DeleteProfile),
    route("GET", "/v1/cohorts", Endpoint::Cohorts),
    route("GET", "/v1/forecast", Endpoint::Forecast),
    route("GET", "/v1/events", Endpoint::ListEvents),
    route("POST", "/v1/events", Endpoint::PostEvent),
    route("GET", "/dashboard", Endpoint::Dashboard),
    route("GET", "/v1/openapi.json", Endpoint::OpenApi),
];

/// The outcome of matching a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matched<'p> {
    /// A served route; `user` is the `{user}` segment, if the template has
    /// one.
    Found {
        /// The endpoint.
        endpoint: Endpoint,
        /// The `{user}` segment.
        user: Option<&'p str>,
    },
    /// The path exists but not with this method; `allow` lists those it
    /// takes, comma-separated.
    MethodNotAllowed {
        /// The `Allow` header value.
        allow: String,
    },
    /// No such path.
    NotFound,
}

/// Matches `method` and `path` against [`ROUTES`].
pub fn resolve<'p>(method: &str, path: &'p str) -> Matched<'p> {
    let mut allow: Vec<&str> = Vec::new();
    for spec in ROUTES {
        let Some(user) = match_path(spec.path, path) else {
            continue;
        };
        if spec.method == method {
            return Matched::Found {
                endpoint: spec.endpoint,
                user,
            };
        }
        allow.push(spec.method);
    }
    if allow.is_empty() {
        Matched::NotFound
    } else {
        Matched::MethodNotAllowed {
            allow: allow.join(", "),
        }
    }
}

/// `Some(user segment)` when `path` fits `template`.
fn match_path<'p>(template: &str, path: &'p str) -> Option<Option<&'p str>> {
    let mut want = template.split('/');
    let mut have = path.split('/');
    let mut user = None;
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(user),
            (Some("{user}"), Some(segment)) if !segment.is_empty() => user = Some(segment),
            (Some(a), Some(b)) if a == b => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_bind_the_user_segment_and_nothing_else() {
        assert_eq!(
            resolve("GET", "/v1/profiles/00ff"),
            Matched::Found {
                endpoint: Endpoint::GetProfile,
                user: Some("00ff")
            }
        );
        assert_eq!(resolve("GET", "/v1/profiles/"), Matched::NotFound);
        assert_eq!(resolve("GET", "/v1/profiles/a/b"), Matched::NotFound);
        assert_eq!(resolve("GET", "/v1/cohorts/"), Matched::NotFound);
        assert_eq!(resolve("GET", ""), Matched::NotFound);
    }

    #[test]
    fn a_known_path_with_another_method_lists_the_allowed_ones() {
        assert_eq!(
            resolve("PUT", "/v1/profiles/abc"),
            Matched::MethodNotAllowed {
                allow: "GET, DELETE".into()
            }
        );
        assert_eq!(
            resolve("DELETE", "/healthz"),
            Matched::MethodNotAllowed {
                allow: "GET, HEAD".into()
            }
        );
    }
}
