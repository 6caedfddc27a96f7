//! Admission under saturation: how many requests may be at the backend at
//! once, and whose request goes next when that many already are.
//!
//! Two pure parts, both driven by the caller's clock and free of I/O so they
//! can be tested on simulated time:
//!
//! - [`ConcurrencyLimit`]: an adaptive limit in the style of gradient
//!   controllers. While latency stays near the lowest seen, the limit grows;
//!   when it rises (the backend queues internally) the limit shrinks in
//!   proportion. An optional hard cap bounds it from above.
//! - [`FairQueue`]: the order in which waiting requests are let in: weighted
//!   fair queueing across tiers (virtual time advances by `1 / weight` per
//!   admission), plus a guaranteed minimum share for tiers that configure one,
//!   so no tier starves however heavy the others are.
//!
//! The proxy wraps these in an async gate; only the waiting path takes a
//! lock, the unsaturated path is a single atomic add there.

mod fair_queue;
mod limit;

pub use fair_queue::{FairQueue, QueueFull, TierShare};
pub use limit::{ConcurrencyLimit, LimitSettings};
