//! Map projections from WGS84 longitude/latitude to a projected CRS, behind one small trait.
//!
//! The default backend is pure-Rust `proj4rs` (no system libraries, parallel over chunks);
//! the optional `proj` feature adds the PROJ C library as a second backend, used to cross-check
//! the first. Both accept `EPSG:<code>` (case-insensitive) and `+proj=...` strings and take
//! degrees in, metres out (degrees out for a geographic target CRS).

use proj4rs::Proj;
use rayon::prelude::*;

use super::error::ProjectionError;

/// A transformation between WGS84 (lon°, lat°) and one projected CRS.
pub trait Projection: Send + Sync {
    /// The CRS string this projection was created from, as given.
    fn crs(&self) -> &str;
    /// Transforms `(lon°, lat°)` in place to `(x, y)` in CRS units. On error the slice is left
    /// partially transformed.
    fn forward(&self, pts: &mut [(f64, f64)]) -> Result<(), ProjectionError>;
    /// Transforms `(x, y)` in place back to `(lon°, lat°)`. On error the slice is left
    /// partially transformed.
    fn inverse(&self, pts: &mut [(f64, f64)]) -> Result<(), ProjectionError>;
}

/// The pure-Rust (proj4rs) projection for `crs`, e.g. `"EPSG:3766"` or `"+proj=utm +zone=33"`.
pub fn projection(crs: &str) -> Result<Box<dyn Projection>, ProjectionError> {
    Ok(Box::new(Proj4rsProjection::new(crs)?))
}

/// A parsed CRS string.
enum CrsSpec<'a> {
    Epsg(u32),
    ProjString(&'a str),
}

fn parse_crs(crs: &str) -> Result<CrsSpec<'_>, ProjectionError> {
    let s = crs.trim();
    if s.starts_with('+') {
        return Ok(CrsSpec::ProjString(s));
    }
    match s.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("EPSG:") => s[5..]
            .trim()
            .parse::<u32>()
            .map(CrsSpec::Epsg)
            .map_err(|_| ProjectionError::Invalid {
                crs: crs.to_owned(),
                reason: "the EPSG code is not a whole number".into(),
            }),
        _ => Err(ProjectionError::Unsupported {
            crs: crs.to_owned(),
        }),
    }
}

/// Points per rayon task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 4096;

struct Proj4rsProjection {
    crs: String,
    wgs84: Proj,
    target: Proj,
    target_is_geographic: bool,
}

impl Proj4rsProjection {
    fn new(crs: &str) -> Result<Self, ProjectionError> {
        let invalid = |e: proj4rs::errors::Error| ProjectionError::Invalid {
            crs: crs.to_owned(),
            reason: e.to_string(),
        };
        let target = match parse_crs(crs)? {
            CrsSpec::Epsg(code) => u16::try_from(code)
                .map_err(|_| proj4rs::errors::Error::ProjectionNotFound)
                .and_then(Proj::from_epsg_code)
                .map_err(|e| match e {
                    proj4rs::errors::Error::ProjectionNotFound => ProjectionError::UnknownEpsg {
                        crs: crs.to_owned(),
                        backend: "proj4rs",
                    },
                    other => invalid(other),
                })?,
            CrsSpec::ProjString(s) => Proj::from_proj_string(s).map_err(invalid)?,
        };
        let wgs84 =
            Proj::from_proj_string("+proj=longlat +datum=WGS84 +no_defs").map_err(invalid)?;
        let target_is_geographic = target.is_latlong();
        Ok(Self {
            crs: crs.to_owned(),
            wgs84,
            target,
            target_is_geographic,
        })
    }

    fn run(&self, pts: &mut [(f64, f64)], forward: bool) -> Result<(), ProjectionError> {
        let (src, dst) = if forward {
            (&self.wgs84, &self.target)
        } else {
            (&self.target, &self.wgs84)
        };
        // proj4rs works in radians on geographic CRSs.
        let (rad_in, deg_out) = if forward {
            (true, self.target_is_geographic)
        } else {
            (self.target_is_geographic, true)
        };
        let one = |p: &mut (f64, f64)| -> Result<(), ProjectionError> {
            let given = *p;
            let fail = |reason: String| ProjectionError::Transform {
                crs: self.crs.clone(),
                direction: if forward { "to" } else { "from" },
                x: given.0,
                y: given.1,
                reason,
            };
            // proj4rs passes NaN through (and may produce it out of domain): make it an error.
            if !(given.0.is_finite() && given.1.is_finite()) {
                return Err(fail("the coordinate is not a finite number".into()));
            }
            let mut q = if rad_in {
                (given.0.to_radians(), given.1.to_radians())
            } else {
                given
            };
            proj4rs::transform::transform(src, dst, &mut q).map_err(|e| fail(e.to_string()))?;
            if !(q.0.is_finite() && q.1.is_finite()) {
                return Err(fail(
                    "the result is not finite (outside the projection's domain?)".into(),
                ));
            }
            *p = if deg_out {
                (q.0.to_degrees(), q.1.to_degrees())
            } else {
                q
            };
            Ok(())
        };
        if pts.len() <= CHUNK {
            pts.iter_mut().try_for_each(one)
        } else {
            pts.par_chunks_mut(CHUNK)
                .try_for_each(|chunk| chunk.iter_mut().try_for_each(one))
        }
    }
}

impl Projection for Proj4rsProjection {
    fn crs(&self) -> &str {
        &self.crs
    }

    fn forward(&self, pts: &mut [(f64, f64)]) -> Result<(), ProjectionError> {
        self.run(pts, true)
    }

    fn inverse(&self, pts: &mut [(f64, f64)]) -> Result<(), ProjectionError> {
        self.run(pts, false)
    }
}

#[cfg(feature = "proj")]
pub use self::proj_backend::proj_projection;

#[cfg(feature = "proj")]
mod proj_backend {
    //! PROJ backend. A `proj::Proj` owns a PROJ context, which must not be shared between
    //! threads and is not `Send`; rather than asserting thread-safety with `unsafe`, this
    //! backend keeps only the CRS strings and builds the PROJ transformation per call
    //! (a few milliseconds), which is fine for its role as a cross-check.

    use super::{CrsSpec, Projection, ProjectionError, parse_crs};

    /// The PROJ-backed projection for `crs`; the string is validated immediately.
    pub fn proj_projection(crs: &str) -> Result<Box<dyn Projection>, ProjectionError> {
        let target = match parse_crs(crs)? {
            CrsSpec::Epsg(code) => {
                let target = format!("EPSG:{code}");
                // PROJ reports both an unknown code and a missing proj.db as "unknown error":
                // tell them apart by whether the database answers for WGS84.
                if proj::Proj::new(&target).is_err() {
                    return Err(if proj::Proj::new("EPSG:4326").is_ok() {
                        ProjectionError::UnknownEpsg {
                            crs: crs.to_owned(),
                            backend: "PROJ",
                        }
                    } else {
                        ProjectionError::Invalid {
                            crs: crs.to_owned(),
                            reason: "PROJ cannot read its database proj.db (set PROJ_DATA to \
                                     the directory holding it)"
                                .into(),
                        }
                    });
                }
                target
            }
            // PROJ only treats a proj string as a CRS with +type=crs.
            CrsSpec::ProjString(s) if s.contains("+type=crs") => s.to_owned(),
            CrsSpec::ProjString(s) => format!("{s} +type=crs"),
        };
        let p = ProjProjection {
            crs: crs.to_owned(),
            target,
        };
        p.transformer(true)?;
        Ok(Box::new(p))
    }

    struct ProjProjection {
        crs: String,
        target: String,
    }

    impl ProjProjection {
        fn transformer(&self, forward: bool) -> Result<proj::Proj, ProjectionError> {
            let (from, to) = if forward {
                ("EPSG:4326", self.target.as_str())
            } else {
                (self.target.as_str(), "EPSG:4326")
            };
            // new_known_crs normalises axis order to (lon, lat) / (easting, northing).
            proj::Proj::new_known_crs(from, to, None).map_err(|e| ProjectionError::Invalid {
                crs: self.crs.clone(),
                reason: e.to_string(),
            })
        }

        fn run(&self, pts: &mut [(f64, f64)], forward: bool) -> Result<(), ProjectionError> {
            let t = self.transformer(forward)?;
            for p in pts.iter_mut() {
                *p = t.convert(*p).map_err(|e| ProjectionError::Transform {
                    crs: self.crs.clone(),
                    direction: if forward { "to" } else { "from" },
                    x: p.0,
                    y: p.1,
                    reason: e.to_string(),
                })?;
            }
            Ok(())
        }
    }

    impl Projection for ProjProjection {
        fn crs(&self) -> &str {
            &self.crs
        }

        fn forward(&self, pts: &mut [(f64, f64)]) -> Result<(), ProjectionError> {
            self.run(pts, true)
        }

        fn inverse(&self, pts: &mut [(f64, f64)]) -> Result<(), ProjectionError> {
            self.run(pts, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (lat, lon) → (x, y) on EPSG:3766 (HTRS96 / Croatia LCC), reference values from the brief.
    const KNOWN_3766: [((f64, f64), (f64, f64)); 2] = [
        (
            (45.55222786237915, 18.53839695354916),
            (159131.43, 5531731.02),
        ),
        (
            (45.11632629078026, 14.82181715265881),
            (-132009.38, 5482666.10),
        ),
    ];

    fn croatia_grid() -> Vec<(f64, f64)> {
        let mut pts = Vec::new();
        for i in 0..=30 {
            for j in 0..=20 {
                pts.push((13.5 + 6.0 * i as f64 / 30.0, 42.4 + 4.2 * j as f64 / 20.0));
            }
        }
        pts
    }

    #[test]
    fn epsg_3766_matches_known_values_to_a_centimetre() {
        let p = projection("EPSG:3766").expect("EPSG:3766 is known");
        for ((lat, lon), (x, y)) in KNOWN_3766 {
            let mut pts = [(lon, lat)];
            p.forward(&mut pts).expect("inside the CRS area");
            assert!((pts[0].0 - x).abs() < 0.01, "x {} vs {x}", pts[0].0);
            assert!((pts[0].1 - y).abs() < 0.01, "y {} vs {y}", pts[0].1);
        }
    }

    #[test]
    fn forward_then_inverse_round_trips_within_a_nanodegree() {
        for crs in [
            "EPSG:3766",
            "epsg:3765",
            "+proj=utm +zone=33 +ellps=GRS80 +units=m",
        ] {
            let p = projection(crs).expect("known CRS");
            let orig = croatia_grid();
            let mut pts = orig.clone();
            p.forward(&mut pts).expect("forward");
            p.inverse(&mut pts).expect("inverse");
            for (a, b) in orig.iter().zip(&pts) {
                assert!(
                    (a.0 - b.0).abs() < 1e-9 && (a.1 - b.1).abs() < 1e-9,
                    "{crs}: {a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn large_inputs_are_transformed_in_parallel_chunks_identically() {
        let p = projection("EPSG:3766").expect("known CRS");
        let base = croatia_grid();
        let mut big: Vec<(f64, f64)> = base.iter().cycle().take(10 * CHUNK + 7).copied().collect();
        p.forward(&mut big).expect("forward");
        let mut small = base.clone();
        p.forward(&mut small).expect("forward");
        for (i, q) in big.iter().enumerate() {
            assert_eq!(*q, small[i % base.len()]);
        }
    }

    #[test]
    fn geographic_targets_return_degrees() {
        let p = projection("EPSG:4326").expect("known CRS");
        let mut pts = [(16.0, 45.0)];
        p.forward(&mut pts).expect("forward");
        assert!((pts[0].0 - 16.0).abs() < 1e-12 && (pts[0].1 - 45.0).abs() < 1e-12);
    }

    #[test]
    fn unknown_and_malformed_crs_strings_are_named_in_the_error() {
        let err = projection("EPSG:99999")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("EPSG:99999"), "{err}");
        let err = projection("EPSG:1")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("EPSG:1"), "{err}");
        let err = projection("HTRS96")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("HTRS96"), "{err}");
        let err = projection("+proj=nonsense")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("+proj=nonsense"), "{err}");
    }

    #[test]
    fn non_finite_input_is_an_error_naming_the_crs() {
        let p = projection("EPSG:3766").expect("known CRS");
        let mut pts = [(f64::NAN, 45.0)];
        let err = p
            .forward(&mut pts)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("EPSG:3766"), "{err}");
    }

    #[cfg(feature = "proj")]
    #[test]
    fn proj4rs_and_proj_agree_within_a_millimetre_over_croatia() {
        for crs in ["EPSG:3766", "EPSG:3765"] {
            let ours = projection(crs).expect("proj4rs knows it");
            let theirs = proj_projection(crs).expect("PROJ knows it");
            let mut a = croatia_grid();
            let mut b = a.clone();
            ours.forward(&mut a).expect("proj4rs forward");
            theirs.forward(&mut b).expect("PROJ forward");
            for (p, q) in a.iter().zip(&b) {
                assert!(
                    (p.0 - q.0).abs() < 1e-3 && (p.1 - q.1).abs() < 1e-3,
                    "{crs}: {p:?} vs {q:?}"
                );
            }
            theirs.inverse(&mut b).expect("PROJ inverse");
            for (p, q) in croatia_grid().iter().zip(&b) {
                assert!(
                    (p.0 - q.0).abs() < 1e-9 && (p.1 - q.1).abs() < 1e-9,
                    "{crs}: {p:?} vs {q:?}"
                );
            }
        }
    }

    #[cfg(feature = "proj")]
    #[test]
    fn proj_backend_matches_known_values_and_names_unknown_codes() {
        let p = proj_projection("epsg:3766").expect("PROJ knows EPSG:3766");
        for ((lat, lon), (x, y)) in KNOWN_3766 {
            let mut pts = [(lon, lat)];
            p.forward(&mut pts).expect("inside the CRS area");
            assert!(
                (pts[0].0 - x).abs() < 0.01 && (pts[0].1 - y).abs() < 0.01,
                "{pts:?}"
            );
        }
        let err = proj_projection("EPSG:99999")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("EPSG:99999"), "{err}");
    }
}
