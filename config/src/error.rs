//! Config errors, each pinned to `FILE:LINE:COLUMN`.
//!
//! `headroom check` prints one line per problem in the form editors and CI
//! annotators already understand (`path:line:col: message`), so an operator
//! can jump straight to the bad key. Syntax errors stop parsing, so at most
//! one is reported; semantic errors are collected so a single run shows every
//! problem in the file.

use std::fmt;

/// A 1-based position in a config file.
///
/// Problems with no better anchor (a required key that is missing from the
/// top level, an unreadable file) are reported at `1:1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Line number, starting at 1.
    pub line: u64,
    /// Column number in characters, starting at 1.
    pub column: u64,
}

impl Position {
    /// The start of the file, used when nothing more precise is known.
    pub const START: Position = Position { line: 1, column: 1 };

    /// A position from a parser location; unknown (zero) parts become 1.
    pub(crate) fn from_location(location: &serde_saphyr::Location) -> Self {
        Position {
            line: location.line().max(1),
            column: location.column().max(1),
        }
    }
}

/// One problem found in a config file.
///
/// `Display` renders exactly one line: `FILE:LINE:COLUMN: message`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all; reported at `1:1`.
    #[error("{file}:1:1: cannot read config file: {reason}")]
    Read {
        /// The file as the caller named it.
        file: String,
        /// The operating system's reason.
        reason: String,
    },
    /// The text is not YAML, or its shape does not fit the schema (unknown
    /// key, list where a mapping belongs, duplicate key). Parsing stops here.
    #[error("{file}:{}:{}: {message}", at.line, at.column)]
    Syntax {
        /// The file (or origin name) the text came from.
        file: String,
        /// Where the parser stopped.
        at: Position,
        /// The parser's description, on one line.
        message: String,
    },
    /// A well-formed value that breaks a rule: out of range, unknown tier,
    /// missing key file, and so on.
    #[error("{file}:{}:{}: {key}: {message}", at.line, at.column)]
    Invalid {
        /// The file (or origin name) the text came from.
        file: String,
        /// Where the offending value (or its enclosing mapping) starts.
        at: Position,
        /// Dotted path of the key, like `tiers[1].requests_per_second`.
        key: String,
        /// What was wrong and what was expected.
        message: String,
    },
}

impl ConfigError {
    /// Where the problem is; `1:1` for an unreadable file.
    #[must_use]
    pub fn position(&self) -> Position {
        match self {
            ConfigError::Read { .. } => Position::START,
            ConfigError::Syntax { at, .. } | ConfigError::Invalid { at, .. } => *at,
        }
    }

    /// The dotted key path, for semantic errors only.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }
}

/// Every problem found in one config file, in file order (never empty).
///
/// `Display` prints one [`ConfigError`] per line, with no trailing newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Wraps the collected errors, sorted by position (stable, so two problems
    /// at one spot keep the order they were found in).
    ///
    /// Callers guarantee `errors` is non-empty; an empty list would render as
    /// nothing and look like success.
    pub(crate) fn new(mut errors: Vec<ConfigError>) -> Self {
        debug_assert!(
            !errors.is_empty(),
            "ConfigErrors must hold at least one error"
        );
        errors.sort_by_key(ConfigError::position);
        ConfigErrors { errors }
    }

    /// The individual errors, in file order.
    #[must_use]
    pub fn errors(&self) -> &[ConfigError] {
        &self.errors
    }

    /// One rendered `FILE:LINE:COLUMN: message` line per error.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.errors.iter().map(ToString::to_string).collect()
    }

    /// How many errors there are (at least 1).
    #[must_use]
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a `ConfigErrors` holds at least one error.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

/// Makes text safe for a one-line message: control characters (newlines,
/// tabs, escape codes) are escaped, and long text is cut to `max_chars`
/// with a trailing `...`.
pub(crate) fn one_line(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars + 8));
    for (count, c) in text.chars().enumerate() {
        if count == max_chars {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(line: u64, column: u64, key: &str) -> ConfigError {
        ConfigError::Invalid {
            file: "x.yaml".into(),
            at: Position { line, column },
            key: key.into(),
            message: "bad".into(),
        }
    }

    #[test]
    fn errors_render_one_line_each_in_file_order() {
        let errors = ConfigErrors::new(vec![invalid(9, 3, "b"), invalid(2, 7, "a")]);
        assert_eq!(
            errors.lines(),
            vec!["x.yaml:2:7: a: bad", "x.yaml:9:3: b: bad"]
        );
        assert_eq!(errors.to_string(), "x.yaml:2:7: a: bad\nx.yaml:9:3: b: bad");
        assert_eq!(errors.len(), 2);
    }

    #[test]
    fn read_errors_point_at_the_start_of_the_file() {
        let error = ConfigError::Read {
            file: "gone.yaml".into(),
            reason: "not found".into(),
        };
        assert_eq!(
            error.to_string(),
            "gone.yaml:1:1: cannot read config file: not found"
        );
        assert_eq!(error.position(), Position::START);
    }

    #[test]
    fn one_line_escapes_control_characters_and_truncates() {
        assert_eq!(one_line("a\nb\tc", 80), "a\\nb\\tc");
        assert_eq!(one_line("abcdef", 3), "abc...");
        assert_eq!(one_line("abc", 3), "abc");
    }
}
