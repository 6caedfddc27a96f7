//! The sample application's endpoint classes and what each one costs.
//!
//! Every path maps to one class, so any trace can be replayed against the app:
//! `/healthz` is free, `/api/search*` is CPU-heavy, `/api/export*` streams a
//! large body, other `/api/*` paths are cheap reads, paths that look like static
//! files (by extension or a `/static/`, `/images/` prefix) are served almost
//! instantly, and everything else is a cheap HTML page. Sizes are drawn from a
//! hash of the path, so one path always has one size, as on a real site.

use std::time::Duration;

use super::body::CHUNK_BYTES;
use crate::trace::mix64;

/// How much longer than asked a slot is held per request, on average. tokio's
/// timer fires on 1 ms ticks, rounding sleeps up; with the synthetic mix the app
/// served 1,588 requests/s at saturation against 1,633 predicted without this
/// term (16 slots, measured on the two-core development machine), i.e. about
/// 0.3 ms more per request.
const TIMER_OVERHEAD: Duration = Duration::from_micros(300);

/// An endpoint class of the sample application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    /// `GET /healthz`: no slot, no service time.
    Health = 0,
    /// Cheap reads under `/api/`.
    Read = 1,
    /// `/api/search*`: the expensive endpoint.
    Search = 2,
    /// `/api/export*`: a large body streamed while holding a slot.
    Export = 3,
    /// Static files: images, scripts, stylesheets.
    Static = 4,
    /// Any other path: a cheap HTML page.
    Page = 5,
}

impl Route {
    /// Every class, in discriminant order.
    pub const ALL: [Route; 6] = [
        Route::Health,
        Route::Read,
        Route::Search,
        Route::Export,
        Route::Static,
        Route::Page,
    ];

    /// The class serving `path` (the path part of a request target, query allowed).
    pub fn classify(path: &str) -> Route {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        if path == "/healthz" {
            Route::Health
        } else if path.starts_with("/api/search") {
            Route::Search
        } else if path.starts_with("/api/export") {
            Route::Export
        } else if path.starts_with("/api/") {
            Route::Read
        } else if path.starts_with("/static/")
            || path.starts_with("/images/")
            || static_kind(path).is_some()
        {
            Route::Static
        } else {
            Route::Page
        }
    }

    /// A short lowercase name for reports (`read`, `search`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Route::Health => "health",
            Route::Read => "read",
            Route::Search => "search",
            Route::Export => "export",
            Route::Static => "static",
            Route::Page => "page",
        }
    }

    /// A representative path of this class, for synthetic load.
    pub fn example_path(self, item: u64) -> String {
        match self {
            Route::Health => "/healthz".to_owned(),
            Route::Read => format!("/api/items/{item}"),
            Route::Search => format!("/api/search?q=term{}", item % 500),
            Route::Export => format!("/api/export?report={}", item % 20),
            Route::Static => match item % 3 {
                0 => format!("/static/img/{}.png", item % 200),
                1 => format!("/static/app.{}.js", item % 5),
                _ => "/static/site.css".to_owned(),
            },
            Route::Page => format!("/pages/{}", item % 1_000),
        }
    }

    /// The Content-Type the app answers with for `path` in this class.
    pub(crate) fn content_type(self, path: &str) -> &'static str {
        match self {
            Route::Static => static_kind(path).map_or("application/octet-stream", |k| k.mime),
            Route::Page => "text/html; charset=utf-8",
            _ => "text/plain; charset=utf-8",
        }
    }
}

/// What a static file extension implies: its MIME type and a size range in bytes.
struct StaticKind {
    mime: &'static str,
    min_bytes: usize,
    max_bytes: usize,
}

/// The static file kind of `path` by extension, if it has a known one.
fn static_kind(path: &str) -> Option<StaticKind> {
    let (_, ext) = path.rsplit_once('.')?;
    let kind = |mime, min_bytes, max_bytes| {
        Some(StaticKind {
            mime,
            min_bytes,
            max_bytes,
        })
    };
    match ext.to_ascii_lowercase().as_str() {
        "gif" => kind("image/gif", 100, 12_000),
        "png" => kind("image/png", 500, 60_000),
        "jpg" | "jpeg" => kind("image/jpeg", 2_000, 60_000),
        "ico" => kind("image/x-icon", 300, 4_000),
        "svg" => kind("image/svg+xml", 400, 10_000),
        "css" => kind("text/css", 1_000, 30_000),
        "js" => kind("text/javascript", 2_000, 60_000),
        "woff" | "woff2" => kind("font/woff2", 10_000, 60_000),
        "txt" | "xml" => kind("text/plain", 100, 8_000),
        _ => None,
    }
}

/// Service time range of one class: uniform in `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceTime {
    /// Shortest service time.
    pub min: Duration,
    /// Longest service time; a `max` below `min` is read as `min`.
    pub max: Duration,
}

impl ServiceTime {
    /// A range from `min_ms` to `max_ms` milliseconds.
    pub const fn millis(min_ms: u64, max_ms: u64) -> Self {
        Self {
            min: Duration::from_millis(min_ms),
            max: Duration::from_millis(max_ms),
        }
    }

    /// The mean of the range.
    pub fn mean(&self) -> Duration {
        (self.min + self.max.max(self.min)) / 2
    }

    /// The time picked by the uniform `draw`.
    fn pick(&self, draw: u64) -> Duration {
        let span = self.max.saturating_sub(self.min);
        let span_us = u64::try_from(span.as_micros()).unwrap_or(u64::MAX);
        self.min
            + Duration::from_micros(if span_us == 0 {
                0
            } else {
                draw % (span_us + 1)
            })
    }
}

/// What each endpoint class costs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteCosts {
    /// Cheap reads. Default 2-5 ms.
    pub read: ServiceTime,
    /// Searches. Default 30-50 ms.
    pub search: ServiceTime,
    /// Time before an export starts streaming. Default 5-10 ms.
    pub export_setup: ServiceTime,
    /// Static files. Default 0.5-1.5 ms.
    pub static_file: ServiceTime,
    /// HTML pages (and any unknown path). Default 3-6 ms.
    pub page: ServiceTime,
    /// Export body sizes in bytes, uniform in the range. Default 1-4 MiB.
    pub export_bytes_range: (u64, u64),
    /// Export streaming rate in bytes/s; 0 streams unpaced. Default 64 MiB/s,
    /// so a default export holds its slot 16-64 ms while streaming.
    pub export_bytes_per_sec: u64,
}

impl Default for RouteCosts {
    fn default() -> Self {
        Self {
            read: ServiceTime::millis(2, 5),
            search: ServiceTime::millis(30, 50),
            export_setup: ServiceTime::millis(5, 10),
            static_file: ServiceTime {
                min: Duration::from_micros(500),
                max: Duration::from_micros(1_500),
            },
            page: ServiceTime::millis(3, 6),
            export_bytes_range: (1 << 20, 4 << 20),
            export_bytes_per_sec: 64 << 20,
        }
    }
}

impl RouteCosts {
    /// The traffic mix [`RouteCosts::capacity_rps`] assumes: shares of requests
    /// per class, close to what the synthetic workload sends.
    pub const REFERENCE_MIX: [(Route, f64); 5] = [
        (Route::Read, 0.40),
        (Route::Search, 0.15),
        (Route::Export, 0.01),
        (Route::Static, 0.30),
        (Route::Page, 0.14),
    ];

    /// A fixed `/healthz` cost of zero, else the class's range picked by `draw`.
    pub(crate) fn service_time(&self, route: Route, draw: u64) -> Duration {
        self.range(route)
            .map_or(Duration::ZERO, |range| range.pick(draw))
    }

    /// The service time range of a class; `None` for `/healthz`.
    fn range(&self, route: Route) -> Option<ServiceTime> {
        match route {
            Route::Health => None,
            Route::Read => Some(self.read),
            Route::Search => Some(self.search),
            Route::Export => Some(self.export_setup),
            Route::Static => Some(self.static_file),
            Route::Page => Some(self.page),
        }
    }

    /// Mean time a request of `route` holds a slot, export streaming and timer
    /// overhead (about 0.3 ms) included; zero for `/healthz`.
    pub fn mean_slot_time(&self, route: Route) -> Duration {
        let Some(range) = self.range(route) else {
            return Duration::ZERO;
        };
        let base = range.mean() + TIMER_OVERHEAD;
        if route != Route::Export || self.export_bytes_per_sec == 0 {
            return base;
        }
        let (lo, hi) = self.export_bytes_range;
        let mean_bytes = (lo + hi.max(lo)) as f64 / 2.0;
        base + Duration::from_secs_f64(mean_bytes / self.export_bytes_per_sec as f64)
    }

    /// Requests/s that `workers` slots sustain for [`RouteCosts::REFERENCE_MIX`].
    pub fn capacity_rps(&self, workers: usize) -> f64 {
        self.capacity_rps_for(workers, &Self::REFERENCE_MIX)
    }

    /// Requests/s that `workers` slots sustain for `mix` ((class, weight) pairs,
    /// weights not necessarily summing to 1): `workers / weighted mean slot time`.
    /// Infinite when the mix costs nothing (empty, or only `/healthz`).
    pub fn capacity_rps_for(&self, workers: usize, mix: &[(Route, f64)]) -> f64 {
        let total: f64 = mix.iter().map(|&(_, w)| w.max(0.0)).sum();
        let cost: f64 = mix
            .iter()
            .map(|&(r, w)| w.max(0.0) * self.mean_slot_time(r).as_secs_f64())
            .sum();
        if total <= 0.0 || cost <= 0.0 {
            return f64::INFINITY;
        }
        workers as f64 / (cost / total)
    }

    /// The size of an export picked by `draw`.
    pub(crate) fn export_bytes(&self, draw: u64) -> u64 {
        let (lo, hi) = self.export_bytes_range;
        lo + draw % (hi.saturating_sub(lo) + 1)
    }

    /// The body size in bytes of a non-export response for `path`; at most 64 KiB.
    pub(crate) fn body_bytes(&self, route: Route, path: &str) -> usize {
        let (lo, hi) = match route {
            Route::Health | Route::Export => (3, 3),
            Route::Read => (300, 2_000),
            Route::Search => (2_000, 8_000),
            Route::Page => (4_000, 24_000),
            Route::Static => {
                static_kind(path).map_or((500, 10_000), |k| (k.min_bytes, k.max_bytes))
            }
        };
        let hash = path.bytes().fold(0u64, |h, b| mix64(h ^ u64::from(b)));
        let size = lo + usize::try_from(hash % (hi - lo + 1) as u64).unwrap_or(0);
        size.min(CHUNK_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_expected_classes() {
        assert_eq!(Route::classify("/healthz"), Route::Health);
        assert_eq!(Route::classify("/api/search?q=x"), Route::Search);
        assert_eq!(Route::classify("/api/export"), Route::Export);
        assert_eq!(Route::classify("/api/items/7"), Route::Read);
        assert_eq!(Route::classify("/images/11104.gif"), Route::Static);
        assert_eq!(Route::classify("/blog/post.GIF?x"), Route::Static);
        assert_eq!(
            Route::classify("/english/individuals/player111503.htm"),
            Route::Page
        );
        assert_eq!(Route::classify("/"), Route::Page);
        for route in Route::ALL {
            assert_eq!(Route::classify(&route.example_path(42)), route);
        }
    }

    #[test]
    fn service_times_stay_in_range_and_sizes_are_stable_per_path() {
        let costs = RouteCosts::default();
        for draw in [0, 1, 7_777, u64::MAX] {
            let t = costs.service_time(Route::Search, draw);
            assert!(t >= Duration::from_millis(30) && t <= Duration::from_millis(50));
            let bytes = costs.export_bytes(draw);
            assert!((1 << 20..=4 << 20).contains(&bytes));
        }
        assert_eq!(costs.service_time(Route::Health, 5), Duration::ZERO);
        let size = costs.body_bytes(Route::Static, "/images/a.gif");
        assert_eq!(size, costs.body_bytes(Route::Static, "/images/a.gif"));
        assert!((100..=12_000).contains(&size));
    }

    #[test]
    fn capacity_is_workers_over_mean_slot_time() {
        let costs = RouteCosts::default();
        // Search only: 40 ms mean plus 0.3 ms timer overhead, 16 slots.
        let search_only = costs.capacity_rps_for(16, &[(Route::Search, 1.0)]);
        assert!((search_only - 16.0 / 0.0403).abs() < 1e-6, "{search_only}");
        // An export holds its slot 7.5 ms plus 2.5 MiB at 64 MiB/s (39.06 ms).
        let export = costs.mean_slot_time(Route::Export).as_secs_f64();
        assert!((export - 0.046_862_5).abs() < 1e-6, "{export}");
        assert!(costs.capacity_rps_for(4, &[]).is_infinite());
        let reference = costs.capacity_rps(16);
        assert!(reference > 1_000.0 && reference < 3_000.0, "{reference}");
    }
}
