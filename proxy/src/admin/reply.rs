//! Admin API responses: JSON bodies, JSON errors, and the few text and HTML
//! bodies, built without ever failing.
//!
//! Every error the API gives is `{"error": "..."}` with a 4xx (or, for a bug,
//! 500) status, so clients and the dashboard handle one shape. JSON
//! responses carry `Cache-Control: no-store`: profiles are personal data
//! and must not sit in a shared cache.

use http::header::{CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Response, StatusCode};
use serde::Serialize;

/// The `Content-Type` of JSON bodies.
pub const JSON: &str = "application/json";

/// A response before it is handed to pingora.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The body's media type.
    pub content_type: &'static str,
    /// The body.
    pub body: Vec<u8>,
    /// Extra headers (`Allow`, `Retry-After`, `WWW-Authenticate`, ...).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl Reply {
    /// `value` as JSON with `status`. A value that cannot be serialized
    /// (which the API's own types never are) gives a 500 JSON error
    /// instead of a panic.
    pub fn json(status: StatusCode, value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::with_body(status, JSON, body).no_store(),
            Err(e) => {
                tracing::warn!(error = %e, "admin response not serializable");
                Self::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }

    /// `{"error": message}` with `status`.
    pub fn error(status: StatusCode, message: &str) -> Self {
        let body = serde_json::to_vec(&ErrorBody { error: message })
            .unwrap_or_else(|_| br#"{"error":"internal error"}"#.to_vec());
        Self::with_body(status, JSON, body).no_store()
    }

    /// A body of any type.
    pub fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Self {
        Self {
            status,
            content_type,
            body,
            headers: Vec::new(),
        }
    }

    /// A response without a body (204, or a 200 to `HEAD`).
    pub fn empty(status: StatusCode) -> Self {
        Self::with_body(status, JSON, Vec::new())
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Adds `Cache-Control: no-store`.
    fn no_store(self) -> Self {
        self.header(CACHE_CONTROL, HeaderValue::from_static("no-store"))
    }

    /// The body as JSON, for tests.
    #[cfg(test)]
    pub fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The HTTP response; for `HEAD`, the body is left out but its length
    /// is still announced.
    pub fn into_response(self, head: bool) -> Response<Vec<u8>> {
        let mut builder = Response::builder()
            .status(self.status)
            .header(CONTENT_TYPE, self.content_type)
            .header(CONTENT_LENGTH, self.body.len());
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        let body = if head { Vec::new() } else { self.body };
        builder.body(body).unwrap_or_else(|_| {
            // Only invalid header parts fail, and every part above is typed.
            let mut fallback = Response::new(Vec::new());
            *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            fallback
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_json_objects_and_head_keeps_the_length_only() {
        let reply = Reply::error(StatusCode::NOT_FOUND, "no \"such\" profile");
        assert_eq!(reply.json_body()["error"], "no \"such\" profile");
        let response = reply.clone().into_response(true);
        assert!(response.body().is_empty());
        assert_eq!(
            response.headers()[CONTENT_LENGTH],
            reply.body.len().to_string()
        );
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    }

    #[test]
    fn unserializable_values_become_a_500_not_a_panic() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1);
        let reply = Reply::json(StatusCode::OK, &map);
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.json_body()["error"], "internal error");
    }
}
