//! `GET /dashboard`: one self-contained HTML page (`dashboard.html`, no
//! external assets) that asks for the operator token, then polls
//! `/metrics`, `/v1/cohorts`, `/v1/forecast` and `/v1/events` every five
//! seconds and shows tiers, outcomes, the admission queue, cohorts, the
//! forecast and events. The page itself holds no data, so serving it needs
//! no token; the token stays in the page's memory.

use http::header::{HeaderName, CONTENT_SECURITY_POLICY, X_CONTENT_TYPE_OPTIONS};
use http::{HeaderValue, StatusCode};

use super::reply::Reply;

/// The page.
const PAGE: &str = include_str!("dashboard.html");

/// Scripts and styles are inline; the page may talk to this listener only
/// and may not be framed.
const POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
                      style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; \
                      form-action 'none'";

/// `GET /dashboard`.
pub fn page() -> Reply {
    Reply::with_body(
        StatusCode::OK,
        "text/html; charset=utf-8",
        PAGE.as_bytes().to_vec(),
    )
    .header(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY))
    .header(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"))
    .header(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere_and_polls_the_json_endpoints() {
        let reply = page();
        let html = String::from_utf8(reply.body).expect("utf-8");
        for external in ["http://", "https://", "<link", "src=", "@import"] {
            assert!(!html.contains(external), "external asset marker {external}");
        }
        for endpoint in ["/metrics", "/v1/cohorts", "/v1/forecast", "/v1/events"] {
            assert!(html.contains(endpoint), "{endpoint} not fetched");
        }
        assert!(!html.contains("innerHTML"), "data must go in as text");
    }
}
