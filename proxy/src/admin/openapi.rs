//! `GET /v1/openapi.json`: the admin API described in OpenAPI 3, written by
//! hand (`openapi.json`) and checked against the router's table by the
//! tests below, both ways: every served route is documented, and every
//! documented operation is served.

use http::StatusCode;

use super::reply::{Reply, JSON};

/// The document.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /v1/openapi.json`.
pub fn document() -> Reply {
    Reply::with_body(StatusCode::OK, JSON, DOCUMENT.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::router::ROUTES;

    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];

    fn paths() -> serde_json::Map<String, serde_json::Value> {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.0.3");
        doc["paths"].as_object().expect("paths object").clone()
    }

    #[test]
    fn every_route_the_router_serves_is_documented() {
        let paths = paths();
        for spec in ROUTES {
            let method = spec.method.to_ascii_lowercase();
            assert!(
                paths.get(spec.path).and_then(|p| p.get(&method)).is_some(),
                "{} {} is served but not documented",
                spec.method,
                spec.path
            );
        }
    }

    #[test]
    fn every_documented_operation_is_served() {
        for (path, item) in paths() {
            let item = item.as_object().expect("path item object");
            for method in item.keys().filter(|k| METHODS.contains(&k.as_str())) {
                assert!(
                    ROUTES
                        .iter()
                        .any(|r| r.path == path && r.method.eq_ignore_ascii_case(method)),
                    "{method} {path} is documented but not served"
                );
            }
        }
    }
}
