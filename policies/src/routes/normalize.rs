//! Path normalisation before route classification.
//!
//! Backends usually decode and normalise a path before routing it, so
//! `/%65xport`, `//export` and `/x/../export` all reach the export handler.
//! If the classifier saw the raw text, a client could dodge a route's cost by
//! spelling the path differently. So the classifier sees the path the way a
//! backend would: percent-decoded (where the result is UTF-8), repeated
//! slashes collapsed, `.` and `..` segments resolved (never above the root),
//! and the query string ignored. The request sent upstream is unchanged.
//!
//! The common case (nothing to decode or resolve) borrows and does not
//! allocate.

use std::borrow::Cow;

/// The path as a backend would route it. See the module docs.
pub fn normalize(path: &str) -> Cow<'_, str> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    if !needs_work(path) {
        return Cow::Borrowed(path);
    }
    let decoded = percent_decode(path);
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (decoded.ends_with('/') && !segments.is_empty()) {
        out.push('/');
    }
    Cow::Owned(out)
}

/// Whether anything in `path` could change under normalisation.
fn needs_work(path: &str) -> bool {
    path.contains('%') || path.contains("//") || path.contains("/.") || !path.starts_with('/')
}

/// Decodes `%XX` escapes; an escape that is malformed, or a result that is
/// not UTF-8, is kept as written.
fn percent_decode(path: &str) -> Cow<'_, str> {
    if !path.contains('%') {
        return Cow::Borrowed(path);
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_or(Cow::Borrowed(path), Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_borrowed_unchanged() {
        assert!(matches!(normalize("/export/a"), Cow::Borrowed("/export/a")));
        assert_eq!(normalize("/export/a?x=/../b"), "/export/a");
    }

    #[test]
    fn disguised_paths_normalise_to_the_real_route() {
        for disguised in [
            "/%65xport/a",
            "//export/a",
            "/x/../export/a",
            "/./export/./a",
            "/../../export/a",
        ] {
            assert_eq!(normalize(disguised), "/export/a", "{disguised}");
        }
    }

    #[test]
    fn edge_cases_stay_sane() {
        assert_eq!(normalize("/.."), "/");
        assert_eq!(normalize("/a/b/"), "/a/b/");
        assert_eq!(normalize("/bad%zzescape"), "/bad%zzescape");
        assert_eq!(normalize("/%ff"), "/%ff");
        assert_eq!(normalize("*"), "/*");
    }
}
