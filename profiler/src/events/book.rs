//! The [`EventBook`] operations: declare, consult, observe, settle.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{PoisonError, RwLockReadGuard, RwLockWriteGuard};

use crate::activity::ROUTE_CLASSES;
use crate::cohort::CohortId;
use crate::events::{
    ActiveEvent, Book, Entry, Event, EventBook, EventError, EventId, Learned, MultiplierSource,
    Outcome, Scope, HISTORY, MAX_EVENTS, MAX_LEARNED, MAX_MULTIPLIER, MAX_NAME_LEN,
};

impl Book {
    /// The multiplier forecasts apply for `event`, and where it comes from.
    fn expected(&self, event: &Event) -> (f64, MultiplierSource) {
        if let Some(m) = event.multiplier {
            (m, MultiplierSource::Declared)
        } else if let Some(l) = self.by_name.get(&event.name) {
            (l.multiplier, MultiplierSource::SameName)
        } else if let Some(l) = self.by_scope.get(&event.scope) {
            (l.multiplier, MultiplierSource::SameScope)
        } else {
            (1.0, MultiplierSource::Default)
        }
    }

    /// Entries in force at `t_ms` whose scope covers the series.
    fn covering(
        &self,
        t_ms: u64,
        cohort: Option<CohortId>,
        route: Option<u8>,
    ) -> impl Iterator<Item = &Entry> {
        self.events.iter().filter(move |e| {
            (e.event.start_ms..e.event.end_ms).contains(&t_ms)
                && e.event.scope.covers(cohort, route)
        })
    }
}

/// Checks one event.
fn validate(event: &Event) -> Result<(), EventError> {
    let name = || event.name.clone();
    // Names reach logs and JSON: no control characters (no forged log lines).
    if event.name.is_empty()
        || event.name.len() > MAX_NAME_LEN
        || event.name.chars().any(char::is_control)
    {
        return Err(EventError::Name {
            len: event.name.len(),
        });
    }
    if event.end_ms <= event.start_ms {
        return Err(EventError::Window {
            name: name(),
            start_ms: event.start_ms,
            end_ms: event.end_ms,
        });
    }
    if let Some(value) = event.multiplier {
        if !(value.is_finite() && value > 0.0 && value <= MAX_MULTIPLIER) {
            return Err(EventError::Multiplier {
                name: name(),
                value,
            });
        }
    }
    if let Scope::Route(route) = event.scope {
        if usize::from(route) >= ROUTE_CLASSES {
            return Err(EventError::Route {
                name: name(),
                route,
            });
        }
    }
    Ok(())
}

/// Stores a learned effect, forgetting the least recently updated one when
/// the map is full.
fn learn<K: Eq + Hash + Clone>(map: &mut HashMap<K, Learned>, key: &K, measured: f64, seq: u64) {
    if !map.contains_key(key) && map.len() >= MAX_LEARNED {
        let oldest = map
            .iter()
            .min_by_key(|(_, l)| l.updated)
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            map.remove(&oldest);
        }
    }
    let learned = Learned::update(map.get(key).copied(), measured, seq);
    map.insert(key.clone(), learned);
}

impl EventBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Book> {
        // A panic while holding the lock leaves plain data that is still
        // consistent enough to read: at worst one event's sums are partial.
        self.book.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Book> {
        self.book.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an event and returns its id. Declaring an event whose window is
    /// already over is allowed (it is settled, unmeasured, at the next
    /// [`Self::settle`]).
    ///
    /// # Errors
    /// An [`EventError`] naming what is wrong with the event, or
    /// [`EventError::Full`] when [`MAX_EVENTS`] are pending.
    pub fn declare(&self, event: Event) -> Result<EventId, EventError> {
        validate(&event)?;
        let mut book = self.write();
        if book.events.len() >= MAX_EVENTS {
            return Err(EventError::Full);
        }
        book.next_id += 1;
        let id = EventId(book.next_id);
        tracing::info!(
            event.id = id.0,
            event.name = %event.name,
            event.start_ms = event.start_ms,
            event.end_ms = event.end_ms,
            "event declared"
        );
        book.events.push(Entry {
            id,
            event,
            actual: 0.0,
            baseline: 0.0,
            observed: 0,
        });
        Ok(id)
    }

    /// Removes a pending or running event without measuring it; false if
    /// there is no such event.
    pub fn cancel(&self, id: EventId) -> bool {
        let mut book = self.write();
        let before = book.events.len();
        book.events.retain(|e| e.id != id);
        book.events.len() < before
    }

    /// The multiplier to apply at `t_ms` to the series `(cohort, route)`:
    /// the product of the expected multipliers of every event in force
    /// whose scope covers it; 1 when none does.
    pub fn multiplier_at(&self, t_ms: u64, cohort: Option<CohortId>, route: Option<u8>) -> f64 {
        let book = self.read();
        let product: f64 = book
            .covering(t_ms, cohort, route)
            .map(|e| book.expected(&e.event).0)
            .product();
        // Overlapping events multiply; past this range the product is a
        // pile-up of declarations (a retried POST), not a forecast.
        product.clamp(1.0 / MAX_MULTIPLIER, MAX_MULTIPLIER)
    }

    /// Every event in force at `t_ms`, with the multiplier it applies.
    pub fn active_at(&self, t_ms: u64) -> Vec<ActiveEvent> {
        let book = self.read();
        book.events
            .iter()
            .filter(|e| (e.event.start_ms..e.event.end_ms).contains(&t_ms))
            .map(|e| {
                let (multiplier, source) = book.expected(&e.event);
                ActiveEvent {
                    id: e.id,
                    event: e.event.clone(),
                    multiplier,
                    source,
                }
            })
            .collect()
    }

    /// Reports one bucket of the series `(cohort, route)` at `t_ms`: the
    /// `actual` demand and the `forecast` made for it without any event
    /// (both in the same unit, e.g. requests). Every event in force whose
    /// scope is exactly this series adds `actual` to its sums, and the
    /// forecast times the other covering events' multipliers to its
    /// baseline. Non-finite or negative values are ignored.
    pub fn observe(
        &self,
        t_ms: u64,
        cohort: Option<CohortId>,
        route: Option<u8>,
        actual: f64,
        forecast: f64,
    ) {
        if !(actual.is_finite() && forecast.is_finite() && actual >= 0.0 && forecast >= 0.0) {
            return;
        }
        let mut book = self.write();
        let covering: Vec<(EventId, f64)> = book
            .covering(t_ms, cohort, route)
            .map(|e| (e.id, book.expected(&e.event).0))
            .collect();
        for entry in book.events.iter_mut() {
            if !covering.iter().any(|(id, _)| *id == entry.id)
                || !entry.event.scope.is(cohort, route)
            {
                continue;
            }
            let others: f64 = covering
                .iter()
                .filter(|(id, _)| *id != entry.id)
                .map(|(_, m)| m)
                .product();
            entry.actual += actual;
            entry.baseline += forecast * others;
            entry.observed += 1;
        }
    }

    /// Settles every event that ended at or before `now_ms`: records its
    /// measured effect under its name and scope (when it was observed),
    /// removes it, and returns the outcomes.
    pub fn settle(&self, now_ms: u64) -> Vec<Outcome> {
        let mut book = self.write();
        let (ended, running): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut book.events)
            .into_iter()
            .partition(|e| e.event.end_ms <= now_ms);
        book.events = running;

        let mut outcomes = Vec::with_capacity(ended.len());
        for entry in ended {
            let expected = book.expected(&entry.event).0;
            let measured = (entry.observed > 0 && entry.baseline > 0.0).then(|| {
                (entry.actual / entry.baseline).clamp(1.0 / MAX_MULTIPLIER, MAX_MULTIPLIER)
            });
            if let Some(m) = measured {
                book.settled += 1;
                let seq = book.settled;
                learn(&mut book.by_name, &entry.event.name, m, seq);
                learn(&mut book.by_scope, &entry.event.scope, m, seq);
            }
            tracing::info!(
                event.id = entry.id.0,
                event.name = %entry.event.name,
                expected,
                measured = measured.unwrap_or(f64::NAN),
                "event settled"
            );
            let outcome = Outcome {
                id: entry.id,
                event: entry.event,
                expected,
                measured,
                actual: entry.actual,
                baseline: entry.baseline,
            };
            if book.history.len() == HISTORY {
                book.history.pop_front();
            }
            book.history.push_back(outcome.clone());
            outcomes.push(outcome);
        }
        outcomes
    }

    /// What events named `name` measured, if any has been settled.
    pub fn learned(&self, name: &str) -> Option<Learned> {
        self.read().by_name.get(name).copied()
    }

    /// What events of `scope` measured, if any has been settled.
    pub fn learned_for_scope(&self, scope: Scope) -> Option<Learned> {
        self.read().by_scope.get(&scope).copied()
    }

    /// The latest settled events, oldest first (at most 256).
    pub fn history(&self) -> Vec<Outcome> {
        self.read().history.iter().cloned().collect()
    }

    /// Events pending or running.
    pub fn len(&self) -> usize {
        self.read().events.len()
    }

    /// True when no event is pending or running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
