//! The numbers a user is clustered on, and how they are put on one scale.
//!
//! [`BehaviourFeatures`] is a plain record (rate, bytes per response, session
//! length, route-class mix, active hours, attributes) built from a tracked
//! user or by hand. For clustering it becomes a fixed-length vector: heavy-
//! tailed quantities are logged, attributes are one-hot encoded, and a
//! [`Standardiser`] fitted on the sample centres every column and scales each
//! *block* of columns (a scalar, the route mix, the hours, one attribute) so
//! that the block's total variance equals its weight. Scaling blocks rather
//! than columns keeps a rarely used route class from being blown up into a
//! dimension of its own, and gives every kind of evidence a fixed say in the
//! distance: the route mix counts double, everything else once.

use headroom_config::Device;

use crate::activity::ROUTE_CLASSES;
use crate::cohort::signature::HOUR_BINS;
use crate::user::UserWindows;

/// Distinct values of each categorical attribute; codes from this value on
/// share the last one-hot column.
pub const ATTRIBUTE_VALUES: usize = 8;

/// A user's categorical attributes as small codes. 0 means unknown; the
/// meaning of other codes is the caller's (see
/// [`CohortNames`](crate::cohort::CohortNames) to name them), except for
/// [`UserAttributes::device_code`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct UserAttributes {
    /// Role code (e.g. index of the role in the config), 0 = unknown.
    pub role: u8,
    /// Location code (e.g. index of a country), 0 = unknown.
    pub location: u8,
    /// Device code from [`UserAttributes::device_code`], 0 = unknown.
    pub device: u8,
}

impl UserAttributes {
    /// The device code of a device class: desktop 1, mobile 2, bot 3,
    /// other 4 (0 stays "unknown", for users never classified).
    pub fn device_code(device: Device) -> u8 {
        match device {
            Device::Desktop => 1,
            Device::Mobile => 2,
            Device::Bot => 3,
            Device::Other => 4,
        }
    }
}

/// What a user is clustered on; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BehaviourFeatures {
    /// Long-run request rate: arrivals since first seen per minute from
    /// first to last activity (at least one minute).
    pub requests_per_min: f64,
    /// Moving average of `log2(1 + bytes)` per successful response, `None`
    /// without one (imputed with the sample mean when clustering).
    pub log2_bytes: Option<f64>,
    /// Length of the current session so far, in minutes.
    pub session_min: f64,
    /// Share of arrivals per route class (decayed long-run counts).
    pub route_mix: [f64; ROUTE_CLASSES],
    /// Share of active minutes per three-hour bin of the UTC day.
    pub hour_mix: [f64; HOUR_BINS],
    /// Categorical attributes.
    pub attributes: UserAttributes,
}

impl BehaviourFeatures {
    /// The features of a tracked user, `None` if the user never arrived.
    /// Reads the user's sessions and signature (a handful of atomic loads).
    pub fn from_user(user: &UserWindows, attributes: UserAttributes) -> Option<Self> {
        let requests = user.requests_total();
        let sessions = user.sessions();
        let (first, last) = (sessions.first_seen_ms()?, sessions.last_seen_ms()?);
        if requests == 0 {
            return None;
        }
        let span_min = (last.saturating_sub(first) as f64 / 60_000.0).max(1.0);
        let session_ms = sessions
            .session_start_ms()
            .map_or(0, |start| last.saturating_sub(start));
        let signature = user.signature().load();
        Some(Self {
            requests_per_min: requests as f64 / span_min,
            log2_bytes: signature.log2_bytes(),
            session_min: session_ms as f64 / 60_000.0,
            route_mix: signature.route_mix(),
            hour_mix: signature.hour_mix(),
            attributes,
        })
    }
}

/// Length of the clustering vector.
pub(crate) const DIMS: usize = 3 + ROUTE_CLASSES + HOUR_BINS + 3 * ATTRIBUTE_VALUES;

/// A clustering vector (raw or standardised).
pub(crate) type Vector = [f64; DIMS];

/// Column of `ln(1 + requests_per_min)`.
pub(crate) const RATE: usize = 0;
/// Column of `log2_bytes` (NaN when unknown in a raw vector).
pub(crate) const BYTES: usize = 1;
/// Column of `ln(1 + session_min)`.
pub(crate) const SESSION: usize = 2;
/// First column of the route mix.
pub(crate) const ROUTES: usize = 3;
/// First column of the hour mix.
pub(crate) const HOURS: usize = ROUTES + ROUTE_CLASSES;
/// First column of each attribute's one-hot block: role, location, device.
pub(crate) const ROLE: usize = HOURS + HOUR_BINS;
pub(crate) const LOCATION: usize = ROLE + ATTRIBUTE_VALUES;
pub(crate) const DEVICE: usize = LOCATION + ATTRIBUTE_VALUES;

/// (first column, columns, weight) of every block.
const BLOCKS: [(usize, usize, f64); 8] = [
    (RATE, 1, 1.0),
    (BYTES, 1, 1.0),
    (SESSION, 1, 1.0),
    (ROUTES, ROUTE_CLASSES, 2.0),
    (HOURS, HOUR_BINS, 1.0),
    (ROLE, ATTRIBUTE_VALUES, 1.0),
    (LOCATION, ATTRIBUTE_VALUES, 1.0),
    (DEVICE, ATTRIBUTE_VALUES, 1.0),
];

/// The raw (unscaled) vector of `f`, NaN in [`BYTES`] when unknown.
pub(crate) fn raw_vector(f: &BehaviourFeatures) -> Vector {
    let mut v = [0.0; DIMS];
    v[RATE] = f.requests_per_min.max(0.0).ln_1p();
    v[BYTES] = f.log2_bytes.unwrap_or(f64::NAN);
    v[SESSION] = f.session_min.max(0.0).ln_1p();
    v[ROUTES..ROUTES + ROUTE_CLASSES].copy_from_slice(&f.route_mix);
    v[HOURS..HOURS + HOUR_BINS].copy_from_slice(&f.hour_mix);
    let code = |c: u8| usize::from(c).min(ATTRIBUTE_VALUES - 1);
    v[ROLE + code(f.attributes.role)] = 1.0;
    v[LOCATION + code(f.attributes.location)] = 1.0;
    v[DEVICE + code(f.attributes.device)] = 1.0;
    v
}

/// Per-column means and spreads of raw vectors, NaN entries left out.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColumnStats {
    /// Mean of each column (NaN for a column with no values).
    pub mean: Vector,
    /// Population variance of each column (0 with fewer than two values).
    pub variance: Vector,
}

impl ColumnStats {
    /// The statistics of `rows` (picked by `indices`, or all when `None`).
    pub(crate) fn of(rows: &[Vector], indices: Option<&[usize]>) -> Self {
        let mut sum = [0.0; DIMS];
        let mut sum_sq = [0.0; DIMS];
        let mut count = [0usize; DIMS];
        let mut visit = |row: &Vector| {
            for (j, &x) in row.iter().enumerate() {
                if x.is_finite() {
                    sum[j] += x;
                    sum_sq[j] += x * x;
                    count[j] += 1;
                }
            }
        };
        match indices {
            Some(indices) => indices.iter().for_each(|&i| visit(&rows[i])),
            None => rows.iter().for_each(&mut visit),
        }
        let mean = std::array::from_fn(|j| sum[j] / count[j] as f64);
        let variance = std::array::from_fn(|j| {
            if count[j] < 2 {
                return 0.0;
            }
            let m = sum[j] / count[j] as f64;
            (sum_sq[j] / count[j] as f64 - m * m).max(0.0)
        });
        Self { mean, variance }
    }
}

/// Centres columns and scales blocks; see the module docs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Standardiser {
    center: Vector,
    scale: Vector,
    weight: f64,
}

impl Standardiser {
    /// Fitted to `stats`: a block with (near) zero variance gets scale 0,
    /// so a column that never varies never influences a distance.
    pub(crate) fn fit(stats: &ColumnStats) -> Self {
        let mut scale = [0.0; DIMS];
        let mut weight = 0.0;
        for (first, len, w) in BLOCKS {
            let variance: f64 = stats.variance[first..first + len].iter().sum();
            if variance > 1e-12 {
                scale[first..first + len].fill((w / variance).sqrt());
                weight += w;
            }
        }
        let center = stats.mean.map(|m| if m.is_finite() { m } else { 0.0 });
        Self {
            center,
            scale,
            weight,
        }
    }

    /// The standardised form of a raw vector; NaN (unknown) entries map to
    /// the centre, i.e. 0.
    pub(crate) fn apply(&self, raw: &Vector) -> Vector {
        std::array::from_fn(|j| {
            let x = raw[j];
            if x.is_finite() {
                (x - self.center[j]) * self.scale[j]
            } else {
                0.0
            }
        })
    }

    /// Sum of the weights of the blocks that vary: the expected squared
    /// distance between two random standardised points is twice this.
    pub(crate) fn weight(&self) -> f64 {
        self.weight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(rate: f64, route: usize, device: u8) -> BehaviourFeatures {
        let mut route_mix = [0.0; ROUTE_CLASSES];
        route_mix[route] = 1.0;
        BehaviourFeatures {
            requests_per_min: rate,
            log2_bytes: None,
            session_min: 0.0,
            route_mix,
            hour_mix: [0.125; HOUR_BINS],
            attributes: UserAttributes {
                device,
                ..UserAttributes::default()
            },
        }
    }

    #[test]
    fn blocks_get_their_weight_and_constant_columns_get_none() {
        let rows: Vec<Vector> = (0..100)
            .map(|i| raw_vector(&features(f64::from(i), i as usize % 2, 1 + (i % 2) as u8)))
            .collect();
        let stats = ColumnStats::of(&rows, None);
        let s = Standardiser::fit(&stats);
        let z: Vec<Vector> = rows.iter().map(|r| s.apply(r)).collect();
        let zs = ColumnStats::of(&z, None);
        let block_var =
            |first: usize, len: usize| zs.variance[first..first + len].iter().sum::<f64>();
        assert!((block_var(RATE, 1) - 1.0).abs() < 1e-9);
        assert!((block_var(ROUTES, ROUTE_CLASSES) - 2.0).abs() < 1e-9);
        assert!((block_var(DEVICE, ATTRIBUTE_VALUES) - 1.0).abs() < 1e-9);
        assert_eq!(block_var(HOURS, HOUR_BINS), 0.0, "hours never vary");
        assert_eq!(block_var(BYTES, 1), 0.0, "bytes never known");
        assert_eq!(s.weight(), 1.0 + 2.0 + 1.0);
    }

    #[test]
    fn unknown_bytes_are_imputed_at_the_centre() {
        let mut known = features(1.0, 0, 0);
        known.log2_bytes = Some(10.0);
        let mut other = known;
        other.log2_bytes = Some(20.0);
        let rows = [
            raw_vector(&known),
            raw_vector(&other),
            raw_vector(&features(1.0, 0, 0)),
        ];
        let s = Standardiser::fit(&ColumnStats::of(&rows, None));
        assert_eq!(s.apply(&rows[2])[BYTES], 0.0);
        assert!(s.apply(&rows[0])[BYTES] < 0.0 && s.apply(&rows[1])[BYTES] > 0.0);
    }

    #[test]
    fn attribute_codes_past_the_last_share_its_column() {
        let mut f = features(0.0, 0, 200);
        f.attributes.role = 9;
        let v = raw_vector(&f);
        assert_eq!(v[DEVICE + ATTRIBUTE_VALUES - 1], 1.0);
        assert_eq!(v[ROLE + ATTRIBUTE_VALUES - 1], 1.0);
        assert_eq!(v[LOCATION], 1.0, "location 0 is its own value");
    }

    #[test]
    fn features_of_a_tracked_user_come_from_its_sessions_and_signature() {
        let user = UserWindows::new(&crate::UserShape::default());
        assert!(BehaviourFeatures::from_user(&user, UserAttributes::default()).is_none());
        let t0 = 7 * 3_600_000; // 07:00 UTC
        for i in 0..30u64 {
            user.record_arrival(t0 + i * 20_000, (i % 3) as u8, 0);
            user.record_response(t0 + i * 20_000 + 5, 200, 4_095, 1_000);
        }
        let f = BehaviourFeatures::from_user(&user, UserAttributes::default()).unwrap();
        // 30 arrivals from 07:00:00 to 07:09:40.
        assert!((f.requests_per_min - 30.0 / (580_005.0 / 60_000.0)).abs() < 1e-9);
        assert_eq!(f.log2_bytes, Some(12.0));
        assert!((f.route_mix[0] - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(f.hour_mix[2], 1.0);
        assert!((f.session_min - 580_005.0 / 60_000.0).abs() < 1e-9);
    }
}
