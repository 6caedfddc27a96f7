//! The event book: validation, scopes, overlaps, and learning an effect
//! from one event for the next.

use super::*;

const HOUR: u64 = 3_600_000;

fn event(name: &str, start_ms: u64, end_ms: u64, scope: Scope, multiplier: Option<f64>) -> Event {
    Event {
        name: name.to_owned(),
        start_ms,
        end_ms,
        scope,
        multiplier,
    }
}

fn cohort(i: u8) -> CohortId {
    CohortId::new(i).unwrap()
}

#[test]
fn bad_events_are_refused_with_a_reason() {
    let book = EventBook::new();
    let err = |e: Event| book.declare(e).unwrap_err().to_string();
    assert_eq!(
        err(event("", 0, 1, Scope::All, None)),
        "name: event name must be 1 to 128 bytes without control characters, got 0 bytes"
    );
    assert_eq!(
        err(event("sale", 5, 5, Scope::All, None)),
        "event \"sale\" must end after it starts, got start 5 end 5"
    );
    assert!(err(event("sale", 0, 1, Scope::All, Some(0.0))).contains("multiplier"));
    assert!(err(event("sale", 0, 1, Scope::All, Some(f64::NAN))).contains("multiplier"));
    assert!(err(event("sale", 0, 1, Scope::Route(8), None)).contains("route class"));
    assert!(book.is_empty());
}

#[test]
fn multipliers_apply_inside_the_window_to_the_series_their_scope_covers() {
    let book = EventBook::new();
    book.declare(event("launch", HOUR, 2 * HOUR, Scope::All, Some(2.0)))
        .unwrap();
    book.declare(event(
        "promo",
        HOUR,
        3 * HOUR,
        Scope::Cohort(cohort(1)),
        Some(1.5),
    ))
    .unwrap();
    book.declare(event("export", 0, 10 * HOUR, Scope::Route(3), Some(3.0)))
        .unwrap();

    assert_eq!(book.multiplier_at(HOUR - 1, None, None), 1.0);
    assert_eq!(book.multiplier_at(HOUR, None, None), 2.0);
    assert_eq!(book.multiplier_at(HOUR, Some(cohort(1)), None), 3.0);
    assert_eq!(book.multiplier_at(HOUR, Some(cohort(2)), None), 2.0);
    assert_eq!(
        book.multiplier_at(2 * HOUR, Some(cohort(1)), None),
        1.5,
        "end is exclusive"
    );
    assert_eq!(book.multiplier_at(5 * HOUR, None, Some(3)), 3.0);
    assert_eq!(book.active_at(HOUR).len(), 3);
}

#[test]
fn a_measured_effect_becomes_the_expectation_for_the_next_event_of_that_name() {
    let book = EventBook::new();
    let first = book
        .declare(event("newsletter", 0, HOUR, Scope::All, None))
        .unwrap();
    assert_eq!(book.multiplier_at(0, None, None), 1.0, "nothing known yet");

    // Demand ran at 2.5 times the forecast during the window; the per-cohort
    // series (not the event's own) are not counted.
    for minute in 0..60 {
        book.observe(minute * 60_000, None, None, 250.0, 100.0);
        book.observe(minute * 60_000, Some(cohort(0)), None, 999.0, 1.0);
    }
    assert!(book.settle(HOUR - 1).is_empty(), "still running");
    let outcomes = book.settle(HOUR);
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].id, first);
    assert_eq!(outcomes[0].measured, Some(2.5));
    assert_eq!(outcomes[0].expected, 1.0);
    assert!(book.is_empty());

    let next = event("newsletter", 24 * HOUR, 25 * HOUR, Scope::All, None);
    book.declare(next).unwrap();
    assert_eq!(book.multiplier_at(24 * HOUR, None, None), 2.5);
    let active = book.active_at(24 * HOUR);
    assert_eq!(active[0].source, MultiplierSource::SameName);

    // Another name with the same scope borrows the scope's effect; a
    // declared multiplier always wins.
    book.declare(event("other", 30 * HOUR, 31 * HOUR, Scope::All, None))
        .unwrap();
    assert_eq!(book.multiplier_at(30 * HOUR, None, None), 2.5);
    assert_eq!(
        book.active_at(30 * HOUR)[0].source,
        MultiplierSource::SameScope
    );
    book.declare(event("fixed", 40 * HOUR, 41 * HOUR, Scope::All, Some(1.2)))
        .unwrap();
    assert_eq!(book.multiplier_at(40 * HOUR, None, None), 1.2);
}

#[test]
fn learned_effects_average_the_first_events_then_weigh_the_latest_a_third() {
    let book = EventBook::new();
    for (i, ratio) in [2.0, 4.0, 3.0, 6.0].into_iter().enumerate() {
        let start = i as u64 * 10 * HOUR;
        book.declare(event("sale", start, start + HOUR, Scope::Route(2), None))
            .unwrap();
        book.observe(start, None, Some(2), ratio * 10.0, 10.0);
        book.settle(start + HOUR);
    }
    // 2, then mean 3, then mean 3, then 3 + (6 - 3) / 3 = 4.
    let learned = book.learned("sale").unwrap();
    assert_eq!((learned.multiplier, learned.events), (4.0, 4));
    assert_eq!(
        book.learned_for_scope(Scope::Route(2)).unwrap().multiplier,
        4.0
    );
    assert_eq!(book.history().len(), 4);
}

#[test]
fn overlapping_events_each_measure_their_own_share() {
    let book = EventBook::new();
    // A known doubling (declared) overlaps a sale of unknown effect; the
    // actual demand is 6 times the plain forecast, so the sale did 3x.
    book.declare(event("outage-recovery", 0, HOUR, Scope::All, Some(2.0)))
        .unwrap();
    book.declare(event("sale", 0, HOUR, Scope::All, None))
        .unwrap();
    book.observe(0, None, None, 600.0, 100.0);
    let outcomes = book.settle(HOUR);
    let sale = outcomes.iter().find(|o| o.event.name == "sale").unwrap();
    assert_eq!(sale.measured, Some(6.0 / 2.0));
}

#[test]
fn unobserved_or_cancelled_events_teach_nothing() {
    let book = EventBook::new();
    book.declare(event("quiet", 0, HOUR, Scope::All, None))
        .unwrap();
    let gone = book
        .declare(event("gone", 0, HOUR, Scope::All, None))
        .unwrap();
    assert!(book.cancel(gone));
    assert!(!book.cancel(gone));
    book.observe(0, None, None, f64::NAN, 1.0);
    let outcomes = book.settle(HOUR);
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].measured, None);
    assert!(book.learned("quiet").is_none());
}

#[test]
fn the_book_holds_a_bounded_number_of_events() {
    let book = EventBook::new();
    for i in 0..MAX_EVENTS as u64 {
        book.declare(event("e", i, i + 1, Scope::All, None))
            .unwrap();
    }
    assert_eq!(
        book.declare(event("e", 0, 1, Scope::All, None)),
        Err(EventError::Full)
    );
    book.settle(u64::MAX);
    assert!(book.is_empty());
}

#[test]
fn events_read_from_json_as_posted_to_the_api() {
    let posted = r#"{"name": "spring-sale", "start_ms": 1000, "end_ms": 5000,
                     "scope": {"cohort": 2}, "multiplier": 1.8}"#;
    let e: Event = serde_json::from_str(posted).unwrap();
    assert_eq!(
        e,
        event(
            "spring-sale",
            1_000,
            5_000,
            Scope::Cohort(cohort(2)),
            Some(1.8)
        )
    );
    let all: Event =
        serde_json::from_str(r#"{"name":"x","start_ms":0,"end_ms":1,"scope":"all"}"#).unwrap();
    assert_eq!((all.scope, all.multiplier), (Scope::All, None));
    let bad = r#"{"name":"x","start_ms":0,"end_ms":1,"scope":"all","extra":1}"#;
    assert!(
        serde_json::from_str::<Event>(bad).is_err(),
        "unknown fields are refused"
    );
    let bad_cohort = r#"{"name":"x","start_ms":0,"end_ms":1,"scope":{"cohort":9}}"#;
    assert!(serde_json::from_str::<Event>(bad_cohort).is_err());
}

#[test]
fn control_characters_in_names_are_refused_and_overlaps_are_bounded() {
    let book = EventBook::new();
    let bad = event("sale\nforged log line", 0, 10, Scope::All, Some(2.0));
    assert!(book.declare(bad).is_err());
    for _ in 0..5 {
        book.declare(event("pile", 0, 10, Scope::All, Some(1000.0)))
            .expect("valid");
    }
    assert_eq!(book.multiplier_at(5, None, None), MAX_MULTIPLIER);
}
