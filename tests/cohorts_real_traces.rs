//! Cohorts and next-action likelihoods on the real per-user traces in
//! `shared/traces`, read in place through `headroom::trace`.
//!
//! Each trace is replayed through the profiler's user table, cohort
//! clusterer and next-action model on simulated time
//! (`headroom_profiler::next_action::replay`): every 5 minutes each tracked
//! user gets a probability of taking each route class within 1, 5, 15 and
//! 60 minutes, from data before that moment only, and is scored against what
//! the log shows they did. The report (printed with `--nocapture`) gives the
//! Brier score of the calibrated model against the base rate's for every
//! class and horizon, the cohorts chosen and their names.
//!
//! Route classes are derived from the request, since the logs carry no
//! route configuration:
//! - 3 `download`: a response of 256 KiB or more, or an archive, binary,
//!   document or media file (`.zip .gz .tgz .tar .bz2 .jar .exe .deb .rpm
//!   .dmg .iso .pdf .mov .mp4 .mp3 .avi .wav .hqx .tif .tiff`);
//! - 2 `static`: images, styles, scripts, fonts, applets (`.gif .jpg .jpeg
//!   .png .ico .css .js .ttf .woff .woff2 .svg .swf .class`);
//! - 1 `page`: a directory, a path without extension, or `.html .htm .xhtml
//!   .shtml .php .asp`;
//! - 4 `feed`: `.xml .rss .atom .json .txt` or a query naming `rss`;
//! - 0 `other`: anything else (scripts such as `.pl`, source files, logs).
//!
//! Users are the log's clients; the device attribute comes from the
//! User-Agent (the Elastic log has one, the World Cup log does not).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;

use headroom::trace::{self, RequestTrace, Trace};
use headroom_policies::classify_user_agent;
use headroom_profiler::next_action::{replay, ActionEvent, ReplayConfig, ReplayReport};
use headroom_profiler::{CohortConfig, CohortNames, NextActionConfig, UserAttributes};

const ROUTE_NAMES: [&str; 5] = ["other", "page", "static", "download", "feed"];
const DOWNLOAD_BYTES: u64 = 256 * 1024;

fn read_requests(name: &str) -> RequestTrace {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/traces")
        .join(name);
    match trace::open(&path).expect("the shared trace is readable") {
        Trace::Requests(requests) => requests,
        Trace::Counts { format, .. } => panic!("{name} read as counts ({format:?})"),
    }
}

/// The route class of a request (path with its query); see the module docs.
fn route_class(target: &str, bytes: Option<u64>) -> u8 {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let file = path.rsplit('/').next().unwrap_or_default();
    let ext = file
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let download = [
        "zip", "gz", "tgz", "tar", "bz2", "jar", "exe", "deb", "rpm", "dmg", "iso", "pdf", "mov",
        "mp4", "mp3", "avi", "wav", "hqx", "tif", "tiff",
    ];
    let assets = [
        "gif", "jpg", "jpeg", "png", "ico", "css", "js", "ttf", "woff", "woff2", "svg", "swf",
        "class",
    ];
    let pages = ["html", "htm", "xhtml", "shtml", "php", "asp"];
    let feeds = ["xml", "rss", "atom", "json", "txt"];
    if bytes.unwrap_or(0) >= DOWNLOAD_BYTES || download.contains(&ext.as_str()) {
        3
    } else if assets.contains(&ext.as_str()) {
        2
    } else if feeds.contains(&ext.as_str()) || query.contains("rss") {
        4
    } else if file.is_empty() || ext.is_empty() || pages.contains(&ext.as_str()) {
        1
    } else {
        0
    }
}

fn user_key(client: &str) -> u64 {
    let mut h = DefaultHasher::new();
    client.hash(&mut h);
    h.finish()
}

/// The trace as profiler events, with each user's device.
fn events(trace: &RequestTrace) -> (Vec<ActionEvent>, HashMap<u64, UserAttributes>) {
    let mut attributes = HashMap::new();
    let events = trace
        .records
        .iter()
        .map(|r| {
            let user = user_key(&r.client);
            if let Some(ua) = &r.user_agent {
                attributes.entry(user).or_insert_with(|| UserAttributes {
                    device: UserAttributes::device_code(classify_user_agent(ua)),
                    ..UserAttributes::default()
                });
            }
            let class = route_class(&r.path, r.bytes);
            ActionEvent {
                t_ms: trace.start_unix_ms + r.t_ms,
                user,
                route_class: class,
                status: r.status.unwrap_or(0),
                bytes_out: r.bytes.unwrap_or(0),
            }
        })
        .collect();
    (events, attributes)
}

fn config() -> ReplayConfig {
    ReplayConfig {
        targets: vec![1, 2, 3],
        rebuild_every_ms: 2 * 3_600_000,
        model: NextActionConfig::default(),
        cohorts: CohortConfig {
            names: CohortNames {
                routes: ROUTE_NAMES.map(String::from).to_vec(),
                ..CohortNames::default()
            },
            ..CohortConfig::default()
        },
        ..ReplayConfig::default()
    }
}

fn print_report(name: &str, report: &ReplayReport) {
    eprintln!(
        "\n{name}: {} events, {} users, {:.1} h; cohorts chosen per re-clustering: {:?}",
        report.events,
        report.users,
        report.span_ms as f64 / 3_600_000.0,
        report.k_history
    );
    let set = &report.cohorts;
    eprintln!(
        "last clustering: k = {}, silhouette {:?}, silhouette by k {:?}",
        set.k(),
        set.silhouette.map(|s| (s * 1000.0).round() / 1000.0),
        set.silhouette_by_k
            .iter()
            .map(|(k, s)| (*k, (s * 1000.0).round() / 1000.0))
            .collect::<Vec<_>>()
    );
    for c in &set.cohorts {
        eprintln!(
            "  cohort {} {:<28} members {:>5}  req/min {:>6.2}  route mix {:?}",
            u8::from(c.id),
            c.name,
            c.members,
            c.mean_requests_per_min,
            c.route_mix[..5]
                .iter()
                .map(|m| (m * 100.0).round() / 100.0)
                .collect::<Vec<_>>()
        );
    }
    eprintln!(
        "  class     horizon  points  positives  base_rate  brier_base  brier_model   brier_raw  ece_model"
    );
    for s in &report.scores {
        eprintln!(
            "  {:<9} {:>5} min {:>7} {:>9} {:>10.4} {:>11.6} {:>12.6} {:>11.6} {:>10.4}",
            ROUTE_NAMES[usize::from(s.target)],
            s.horizon_ms / 60_000,
            s.points,
            s.positives,
            s.base_rate,
            s.brier_base,
            s.brier_calibrated,
            s.brier_raw,
            s.ece_calibrated
        );
    }
    let (base, raw, model) = report.pooled();
    eprintln!("  pooled: brier base {base:.6}, model {model:.6} (raw {raw:.6})");
}

/// Positives a class and horizon need before the model must beat the base
/// rate there: with fewer, a calibrated model that has learnt nothing
/// sits at the base rate, and small differences either way are noise.
const MIN_POSITIVES_TO_BEAT: u64 = 500;

/// The checks both traces must pass: calibrated likelihoods that beat the
/// base rate overall and wherever there is enough to learn from, and that
/// are never clearly worse than it anywhere.
fn check(report: &ReplayReport) {
    let (base, _, model) = report.pooled();
    assert!(
        model < base,
        "pooled Brier {model} not below base rate {base}"
    );
    for s in &report.scores {
        let name = ROUTE_NAMES[usize::from(s.target)];
        let minutes = s.horizon_ms / 60_000;
        if s.positives >= MIN_POSITIVES_TO_BEAT {
            assert!(
                s.brier_calibrated < s.brier_base,
                "{name} within {minutes} min: Brier {} not below base rate {}",
                s.brier_calibrated,
                s.brier_base
            );
        }
        assert!(
            s.brier_calibrated <= s.brier_base * 1.02,
            "{name} within {minutes} min: Brier {} worse than base rate {}",
            s.brier_calibrated,
            s.brier_base
        );
        assert!(s.ece_calibrated < 0.05, "miscalibrated: {s:?}");
    }
    assert!(report.cohorts.k() >= 1);
}

#[test]
fn next_action_beats_the_base_rate_on_the_elastic_apache_log() {
    let trace = read_requests("elastic_apache_logs.log");
    let (events, attributes) = events(&trace);
    let report = replay(&events, &attributes, &config()).expect("the replay runs");
    print_report("elastic_apache_logs.log", &report);
    assert_eq!(report.users, 1_753);
    check(&report);
}

#[test]
fn next_action_beats_the_base_rate_on_the_world_cup_sample() {
    let trace = read_requests("wc98_day6_sample.csv.gz");
    let (events, attributes) = events(&trace);
    assert!(
        attributes.is_empty(),
        "the World Cup log has no user agents"
    );
    let report = replay(&events, &attributes, &config()).expect("the replay runs");
    print_report("wc98_day6_sample.csv.gz", &report);
    assert_eq!(report.users, 17_506);
    check(&report);
}

#[test]
fn route_classes_follow_extension_and_size() {
    assert_eq!(route_class("/images/11104.gif", Some(508)), 2);
    assert_eq!(route_class("/english/frntpage.htm", Some(7_027)), 1);
    assert_eq!(route_class("/", None), 1);
    assert_eq!(route_class("/blog/geekery/", Some(100)), 1);
    assert_eq!(route_class("/files/logstash-1.1.0.jar", Some(100)), 3);
    assert_eq!(route_class("/images/huge.png", Some(DOWNLOAD_BYTES)), 3);
    assert_eq!(route_class("/robots.txt", Some(10)), 4);
    assert_eq!(route_class("/blog/?flav=rss20", Some(10)), 4);
    assert_eq!(route_class("/cgi-bin/script.pl", Some(10)), 0);
}
