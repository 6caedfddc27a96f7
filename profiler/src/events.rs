//! External events: campaigns, launches and outages that change demand in a
//! known window, so that forecasts can expect them instead of being
//! surprised.
//!
//! An [`Event`] names a window (`[start_ms, end_ms)`), a [`Scope`] (all
//! traffic, one cohort, or one route class) and, optionally, the expected
//! multiplier on demand. Events come from the config file or from
//! `POST /v1/events` (both deserialise [`Event`]) into an [`EventBook`], which
//! the forecaster consults for every series it forecasts
//! ([`EventBook::multiplier_at`]).
//!
//! Learning. While an event runs, the forecaster reports each series' actual
//! demand next to its forecast without events ([`EventBook::observe`]). When
//! the event has ended, [`EventBook::settle`] records the measured effect,
//! `sum(actual) / sum(forecast without this event)` over the window, under
//! the event's name and under its scope. The next event declared without a
//! multiplier expects what the last ones of the same name measured (a mean
//! that weighs the latest of them a third), else what events of the same
//! scope measured, else 1.
//!
//! Series and scopes. A series is identified by `(cohort, route)`: the total
//! is `(None, None)`, a cohort's is `(Some(c), None)`, a route class's is
//! `(None, Some(r))`. An event applies to every series its scope covers (an
//! `All` event to all of them, a `Cohort(c)` event to series of cohort `c`),
//! and is measured on the one series that is exactly its scope, so that no
//! demand is counted twice. With overlapping events, each one's baseline is
//! the forecast times the other active events' multipliers, so the measured
//! effect is its own share (under the assumption that effects multiply).
//!
//! Not on the hot path: one `RwLock`, taken by the forecaster's tick, the
//! admin API and config reloads.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::cohort::CohortId;

mod book;
#[cfg(test)]
mod tests;

/// Most events pending or running at once.
pub const MAX_EVENTS: usize = 1_024;
/// Longest event name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Largest multiplier, declared or measured; measured effects are also
/// kept at or above `1 / MAX_MULTIPLIER`.
pub const MAX_MULTIPLIER: f64 = 1_000.0;
/// Names and scopes whose learned effects are kept (least recently updated
/// forgotten first).
const MAX_LEARNED: usize = 1_024;
/// Settled events kept for [`EventBook::history`].
const HISTORY: usize = 256;

/// Which demand an event affects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// All traffic.
    All,
    /// One cohort's users.
    Cohort(CohortId),
    /// One route class (0 to 7).
    Route(u8),
}

impl Scope {
    /// Whether this scope covers the series `(cohort, route)`.
    fn covers(self, cohort: Option<CohortId>, route: Option<u8>) -> bool {
        match self {
            Scope::All => true,
            Scope::Cohort(c) => cohort == Some(c),
            Scope::Route(r) => route == Some(r),
        }
    }

    /// Whether the series `(cohort, route)` is exactly this scope.
    fn is(self, cohort: Option<CohortId>, route: Option<u8>) -> bool {
        match self {
            Scope::All => cohort.is_none() && route.is_none(),
            Scope::Cohort(c) => cohort == Some(c) && route.is_none(),
            Scope::Route(r) => cohort.is_none() && route == Some(r),
        }
    }
}

/// A declared event; see the module docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// What it is ("spring-sale"); events with the same name learn from
    /// each other. 1 to 128 bytes.
    pub name: String,
    /// Start (ms, the profiler clock), inclusive.
    pub start_ms: u64,
    /// End (ms), exclusive; after `start_ms`.
    pub end_ms: u64,
    /// Which demand it affects.
    pub scope: Scope,
    /// Expected multiplier on demand while it runs (2.0 doubles it), in
    /// `(0, 1000]`; `None` to use what similar events measured.
    #[serde(default)]
    pub multiplier: Option<f64>,
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// The name is empty, longer than [`MAX_NAME_LEN`], or holds control
    /// characters.
    #[error("name: event name must be 1 to {MAX_NAME_LEN} bytes without control characters, got {len} bytes")]
    Name {
        /// The name's length in bytes.
        len: usize,
    },
    /// The window is empty or reversed.
    #[error("event {name:?} must end after it starts, got start {start_ms} end {end_ms}")]
    Window {
        /// The event's name.
        name: String,
        /// Its start.
        start_ms: u64,
        /// Its end.
        end_ms: u64,
    },
    /// The multiplier is not finite, not positive, or too large.
    #[error("event {name:?} multiplier must be above 0 and at most {MAX_MULTIPLIER}, got {value}")]
    Multiplier {
        /// The event's name.
        name: String,
        /// The value given.
        value: f64,
    },
    /// A route scope past the last route class.
    #[error("event {name:?} route class must be 0 to 7, got {route}")]
    Route {
        /// The event's name.
        name: String,
        /// The class given.
        route: u8,
    },
    /// [`MAX_EVENTS`] events are already pending or running.
    #[error("at most {MAX_EVENTS} events may be pending at once")]
    Full,
}

/// Identifies a declared event within its book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EventId(u64);

/// Where an event's expected multiplier comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MultiplierSource {
    /// Given with the event.
    Declared,
    /// Measured on earlier events of the same name.
    SameName,
    /// Measured on earlier events of the same scope.
    SameScope,
    /// Nothing known: 1.
    Default,
}

/// An event in force at some time, as [`EventBook::active_at`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActiveEvent {
    /// Its id.
    pub id: EventId,
    /// The event as declared.
    pub event: Event,
    /// The multiplier forecasts apply.
    pub multiplier: f64,
    /// Where that multiplier comes from.
    pub source: MultiplierSource,
}

/// What an event turned out to do, from [`EventBook::settle`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// Its id.
    pub id: EventId,
    /// The event as declared.
    pub event: Event,
    /// The multiplier forecasts applied.
    pub expected: f64,
    /// `actual / baseline` over the window, `None` if nothing was observed
    /// (or the baseline was 0); clamped to `[1/1000, 1000]`.
    pub measured: Option<f64>,
    /// Sum of actual demand observed on its series.
    pub actual: f64,
    /// Sum of the forecasts without it.
    pub baseline: f64,
}

/// A learned effect: the mean measured multiplier and how many events it
/// comes from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Learned {
    /// The multiplier to expect.
    pub multiplier: f64,
    /// Events measured.
    pub events: u32,
    /// Settling sequence number of the latest update (for eviction).
    updated: u64,
}

impl Learned {
    /// Folds in one measurement: a plain mean of the first three, then each
    /// new one weighs a third.
    fn update(previous: Option<Learned>, measured: f64, seq: u64) -> Learned {
        match previous {
            None => Learned {
                multiplier: measured,
                events: 1,
                updated: seq,
            },
            Some(l) => {
                let events = l.events.saturating_add(1);
                let weight = 1.0 / f64::from(events.min(3));
                Learned {
                    multiplier: l.multiplier + (measured - l.multiplier) * weight,
                    events,
                    updated: seq,
                }
            }
        }
    }
}

/// An event with its running sums.
#[derive(Debug, Clone)]
struct Entry {
    id: EventId,
    event: Event,
    actual: f64,
    baseline: f64,
    observed: u64,
}

#[derive(Debug, Default)]
struct Book {
    next_id: u64,
    settled: u64,
    events: Vec<Entry>,
    by_name: HashMap<String, Learned>,
    by_scope: HashMap<Scope, Learned>,
    history: VecDeque<Outcome>,
}

/// The events known to the proxy and what past ones measured; see the
/// module docs.
#[derive(Debug, Default)]
pub struct EventBook {
    book: RwLock<Book>,
}
