//! The table's configuration: how many users, for how long, and the shape
//! of each user's windows. The config crate maps the YAML `profiler:` section
//! onto it; [`TableConfig::user_shape`] is the validation step, so an invalid
//! value is reported before any table is built.

use crate::user::UserShape;
use crate::window::WindowError;

/// Sizing of the table and of each user's windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// Most users tracked at once. At least 1. Default 100 000 (about
    /// 90 MB of user state at the default window).
    pub max_users: usize,
    /// A user with no arrival or response for longer than this (ms) may be
    /// evicted. At least the window span (`bucket_ms * buckets`), so that an
    /// evicted user has nothing left in the window. Default 10 minutes.
    pub idle_timeout_ms: u64,
    /// Width of one request-window bucket (ms). At least 1. Default 1 000.
    pub bucket_ms: u64,
    /// Buckets in the request window, 1 to 10 000. Default 60.
    pub buckets: u32,
    /// A pause longer than this (ms) starts a new session. Default 30 min.
    pub session_gap_ms: u64,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            max_users: 100_000,
            idle_timeout_ms: 10 * 60 * 1_000,
            bucket_ms: 1_000,
            buckets: 60,
            session_gap_ms: UserShape::DEFAULT_SESSION_GAP_MS,
        }
    }
}

impl TableConfig {
    /// Checks every field and returns the per-user shape they describe.
    ///
    /// # Errors
    /// The first invalid field, as a [`TableConfigError`].
    pub fn user_shape(&self) -> Result<UserShape, TableConfigError> {
        if self.max_users == 0 {
            return Err(TableConfigError::ZeroMaxUsers);
        }
        let shape = UserShape::new(self.bucket_ms, self.buckets, self.session_gap_ms)?;
        let window_ms = shape.requests().span_ms();
        if self.idle_timeout_ms < window_ms {
            return Err(TableConfigError::IdleTimeoutShorterThanWindow {
                idle_timeout_ms: self.idle_timeout_ms,
                window_ms,
            });
        }
        Ok(shape)
    }
}

/// Why a [`TableConfig`] is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableConfigError {
    /// `max_users` is 0.
    #[error("max_users must be at least 1, got 0")]
    ZeroMaxUsers,
    /// `bucket_ms` or `buckets` is out of range.
    #[error("invalid window: {0}")]
    Window(#[from] WindowError),
    /// `idle_timeout_ms` is shorter than the window.
    #[error(
        "idle_timeout_ms must be at least the window span ({window_ms} ms), \
         got {idle_timeout_ms}: users would be evicted with counts still in the window"
    )]
    IdleTimeoutShorterThanWindow {
        /// The configured timeout.
        idle_timeout_ms: u64,
        /// `bucket_ms * buckets`.
        window_ms: u64,
    },
}
