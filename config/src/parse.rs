//! YAML text to the raw layer, with parser errors turned into one-line
//! `FILE:LINE:COLUMN: message` errors.
//!
//! The parser is serde-saphyr with YAML 1.2 booleans only (`strict_booleans`):
//! under YAML 1.1, `no`, `on` and `y` silently become booleans, which is how a
//! country code `NO` or a plan named `on` turns into `false`. Here such words
//! stay strings, and a boolean key given `yes` is told to write `true`.

use std::borrow::Cow;

use serde_saphyr::localizer::Localizer;
use serde_saphyr::{Location, MessageFormatter, UserMessageFormatter};

use crate::error::{one_line, ConfigError, Position};
use crate::raw::RawConfig;

/// Longest parser message kept, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Parser phrases replaced by ones that say what to write.
const REWORDINGS: [(&str, &str); 3] = [
    (
        "expected sequence start",
        "expected a list (- item lines or [a, b])",
    ),
    (
        "expected mapping start",
        "expected a mapping (key: value lines or {k: v})",
    ),
    (
        "expected string scalar",
        "expected a single text value, not a list or mapping (quote text starting with [ or {)",
    ),
];

/// Parses `text` into the raw layer. Only the first syntax error is
/// reported: after it the parser cannot know what the rest means.
pub(crate) fn parse(text: &str, file: &str) -> Result<RawConfig, ConfigError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        // `.inf` and `.nan` reach the validator, which names the key they were given to.
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<RawConfig>(text, options).map_err(|error| {
        let at = error
            .location()
            .map_or(Position::START, |l| Position::from_location(&l));
        ConfigError::Syntax {
            file: file.to_owned(),
            at,
            message: message(&error),
        }
    })
}

/// The parser's user-facing wording, without its own "at line X" suffix
/// (the position is already in front) and on a single line.
fn message(error: &serde_saphyr::Error) -> String {
    let options = serde_saphyr::render_options! {
        formatter: &PlainFormatter,
        snippets: serde_saphyr::SnippetMode::Off,
    };
    let text = error.render_with_options(options);
    // serde lists no alternatives for a mapping that takes no keys; say so.
    let text = match text.strip_suffix(", expected one of ") {
        Some(head) => format!("{head}; this mapping takes no keys"),
        None => text,
    };
    // The parser speaks of YAML events; say what to write instead.
    let mut text = text;
    for (parser, ours) in REWORDINGS {
        text = text.replace(parser, ours);
    }
    // A repeated key may be an API key from the key table: point at it, but
    // never print it.
    if text.starts_with("duplicate mapping key") {
        text = "duplicate key: it already appears earlier in this mapping".to_owned();
    }
    one_line(&text, MAX_MESSAGE_CHARS)
}

/// serde-saphyr's user formatter, minus location suffixes.
struct PlainFormatter;

impl MessageFormatter for PlainFormatter {
    fn localizer(&self) -> &dyn Localizer {
        &NoLocation
    }

    fn format_message<'a>(&self, err: &'a serde_saphyr::Error) -> Cow<'a, str> {
        UserMessageFormatter.format_message(err)
    }
}

/// The default English wording, except that positions are left out.
struct NoLocation;

impl Localizer for NoLocation {
    fn attach_location<'b>(&self, base: Cow<'b, str>, _location: Location) -> Cow<'b, str> {
        base
    }

    fn alias_defined_at(&self, _defined: Location) -> String {
        String::new()
    }

    fn alias_used_at(&self, _used: Location) -> String {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syntax_error(text: &str) -> (Position, String) {
        match parse(text, "t.yaml") {
            Err(ConfigError::Syntax { at, message, .. }) => (at, message),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn unclosed_flow_list_reports_where_it_opened() {
        let (at, message) = syntax_error("tiers: [ {name: a}\n");
        assert_eq!(at, Position { line: 1, column: 8 });
        assert!(message.contains("unclosed"), "{message}");
        assert!(
            !message.contains("at line"),
            "position must not be repeated: {message}"
        );
    }

    #[test]
    fn unknown_key_is_a_syntax_error_at_the_key() {
        let (at, message) = syntax_error("listen: \"127.0.0.1:1\"\nlisten_addr: x\n");
        assert_eq!(at, Position { line: 2, column: 1 });
        assert!(message.contains("unknown field `listen_addr`"), "{message}");
    }

    #[test]
    fn yaml11_booleans_stay_strings() {
        let raw = parse("default_tier: no\n", "t.yaml").expect("parses");
        assert_eq!(raw.default_tier.map(|v| v.value), Some("no".to_owned()));
    }

    #[test]
    fn empty_mapping_only_types_say_they_take_no_keys() {
        let text = "identity:\n  sources:\n    - client_ip: { port: 1 }\n";
        let (at, message) = syntax_error(text);
        assert_eq!(at.line, 3);
        assert!(message.ends_with("this mapping takes no keys"), "{message}");
    }

    #[test]
    fn duplicate_api_keys_are_reported_without_their_value() {
        let text = "identity:\n  sources:\n    - api_key:\n        keys:\n          \"k_live_x\": { user: a }\n          \"k_live_x\": { user: b }\n";
        let (at, message) = syntax_error(text);
        assert_eq!(
            at,
            Position {
                line: 6,
                column: 11
            }
        );
        assert!(!message.contains("k_live_x"), "{message}");
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let (at, message) = syntax_error("default_tier: a\ndefault_tier: b\n");
        assert_eq!(at.line, 2);
        assert!(message.starts_with("duplicate key"), "{message}");
    }
}
