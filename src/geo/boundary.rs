//! The region an experiment lives in: a country from the embedded Natural Earth data or any
//! GeoJSON polygon set.
//!
//! A `Boundary` owns the geometry as `MultiPolygon<f64>` (x = lon, y = lat) plus indexes for the
//! queries the rest of the crate needs often: containment (sampling, point checks), nearest
//! point on land (snapping), a content digest (cache keys) and the sea-facing edges (synthetic
//! views of the coast).

use std::fmt;
use std::path::Path;

use geo::{MultiPolygon, Polygon};
use geojson::{GeoJson, GeometryValue, PolygonType};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::GeoError;
use super::haversine::EARTH_RADIUS_KM;
use super::ring::{
    IndexedRing, Pt, closed_line_string, nearest_on_segment, open_ring, twice_signed_area,
};
use super::world;

/// A latitude/longitude pair in degrees.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatLon {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
}

/// An axis-aligned box in degrees.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    /// Western edge.
    pub min_lon: f64,
    /// Southern edge.
    pub min_lat: f64,
    /// Eastern edge.
    pub max_lon: f64,
    /// Northern edge.
    pub max_lat: f64,
}

impl BBox {
    /// Whether the point lies in the closed box.
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        lon >= self.min_lon && lon <= self.max_lon && lat >= self.min_lat && lat <= self.max_lat
    }

    /// Centre of the box.
    pub fn center(&self) -> LatLon {
        LatLon {
            lat: 0.5 * (self.min_lat + self.max_lat),
            lon: 0.5 * (self.min_lon + self.max_lon),
        }
    }
}

/// One polygon with indexed rings: containment is "in the exterior and in no hole".
#[derive(Debug, Clone)]
struct IndexedPolygon {
    exterior: IndexedRing,
    holes: Vec<IndexedRing>,
}

impl IndexedPolygon {
    fn contains(&self, x: f64, y: f64) -> bool {
        self.exterior.contains(x, y) && !self.holes.iter().any(|h| h.contains(x, y))
    }

    /// Rings with the side land lies on: `true` when land is left of the ring's direction.
    fn rings_with_land_side(&self) -> impl Iterator<Item = (&IndexedRing, bool)> {
        let ext_ccw = twice_signed_area(&self.exterior.pts, self.exterior.pts[0]) > 0.0;
        std::iter::once((&self.exterior, ext_ccw)).chain(
            self.holes
                .iter()
                .map(|h| (h, twice_signed_area(&h.pts, h.pts[0]) < 0.0)),
        )
    }
}

/// Distance of the probe point from a coastline edge used by [`Boundary::sea_edges`].
const SEA_PROBE_KM: f64 = 0.2;

/// A geographic region: polygons in degrees (x = lon, y = lat).
#[derive(Clone)]
pub struct Boundary {
    name: String,
    shape: MultiPolygon<f64>,
    polygons: Vec<IndexedPolygon>,
    bbox: BBox,
}

impl fmt::Debug for Boundary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let vertices: usize = self
            .polygons
            .iter()
            .map(|p| p.exterior.pts.len() + p.holes.iter().map(|h| h.pts.len()).sum::<usize>())
            .sum();
        f.debug_struct("Boundary")
            .field("name", &self.name)
            .field("polygons", &self.polygons.len())
            .field("vertices", &vertices)
            .field("bbox", &self.bbox)
            .finish()
    }
}

impl Boundary {
    /// Builds a boundary from polygons; rings with fewer than three distinct vertices are
    /// dropped (a polygon whose exterior is dropped goes entirely).
    ///
    /// Fails with [`GeoError::NoPolygon`] when nothing is left.
    pub fn from_polygons(
        name: impl Into<String>,
        polygons: impl IntoIterator<Item = Polygon<f64>>,
    ) -> Result<Self, GeoError> {
        let name = name.into();
        let usable = |ls: &geo::LineString<f64>| {
            let mut pts = open_ring(ls);
            pts.dedup();
            (pts.len() >= 3 && pts.iter().all(|p| p.0.is_finite() && p.1.is_finite()))
                .then_some(pts)
        };
        let mut indexed = Vec::new();
        let mut kept = Vec::new();
        for polygon in polygons {
            let Some(ext) = usable(polygon.exterior()) else {
                continue;
            };
            let holes: Vec<Vec<(f64, f64)>> =
                polygon.interiors().iter().filter_map(usable).collect();
            kept.push(Polygon::new(
                closed_line_string(&ext),
                holes.iter().map(|h| closed_line_string(h)).collect(),
            ));
            indexed.push(IndexedPolygon {
                exterior: IndexedRing::new(ext),
                holes: holes.into_iter().map(IndexedRing::new).collect(),
            });
        }
        if indexed.is_empty() {
            return Err(GeoError::NoPolygon { name });
        }
        let bbox = indexed.iter().fold(
            BBox {
                min_lon: f64::INFINITY,
                min_lat: f64::INFINITY,
                max_lon: f64::NEG_INFINITY,
                max_lat: f64::NEG_INFINITY,
            },
            |b, p| {
                let e = &p.exterior.bbox;
                BBox {
                    min_lon: b.min_lon.min(e[0]),
                    min_lat: b.min_lat.min(e[1]),
                    max_lon: b.max_lon.max(e[2]),
                    max_lat: b.max_lat.max(e[3]),
                }
            },
        );
        Ok(Self {
            name,
            shape: MultiPolygon(kept),
            polygons: indexed,
            bbox,
        })
    }

    /// The country with this ISO 3166-1 alpha-2 code (case-insensitive), from the Natural Earth
    /// 1:10m polygons embedded by `world-data` (stored as `f32`, widened to `f64` here).
    pub fn from_iso(code: &str) -> Result<Self, GeoError> {
        let Some(country) = world::country(code) else {
            return Err(GeoError::UnknownCountry {
                code: code.to_owned(),
                suggestion: world::suggest_country(code),
            });
        };
        let polygons = country.polygons.iter().map(|p| {
            let widen = |ls: &geo::LineString<f32>| {
                ls.0.iter()
                    .map(|c| geo::Coord {
                        x: f64::from(c.x),
                        y: f64::from(c.y),
                    })
                    .collect::<geo::LineString<f64>>()
            };
            Polygon::new(
                widen(p.exterior()),
                p.interiors().iter().map(widen).collect(),
            )
        });
        Self::from_polygons(country.iso_a2.clone(), polygons)
    }

    /// Polygons of a GeoJSON file: a bare geometry, a Feature or a FeatureCollection. Every
    /// Polygon and MultiPolygon (also inside GeometryCollections) is kept as a separate polygon;
    /// other geometry types are ignored. The name is the path as given.
    pub fn from_geojson_file(path: impl AsRef<Path>) -> Result<Self, GeoError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| GeoError::ReadGeoJson {
            path: path.to_owned(),
            source,
        })?;
        let geojson: GeoJson = text.parse().map_err(|source| GeoError::ParseGeoJson {
            path: path.to_owned(),
            source,
        })?;
        let mut raw: Vec<&PolygonType> = Vec::new();
        match &geojson {
            GeoJson::Geometry(g) => collect_polygons(&g.value, &mut raw),
            GeoJson::Feature(f) => {
                if let Some(g) = &f.geometry {
                    collect_polygons(&g.value, &mut raw)
                }
            }
            GeoJson::FeatureCollection(fc) => {
                for g in fc.features.iter().filter_map(|f| f.geometry.as_ref()) {
                    collect_polygons(&g.value, &mut raw)
                }
            }
        }
        let invalid = |reason: String| GeoError::InvalidGeoJson {
            path: path.to_owned(),
            reason,
        };
        let mut polygons = Vec::with_capacity(raw.len());
        for rings in raw {
            let mut converted = Vec::with_capacity(rings.len());
            for ring in rings {
                let mut coords = Vec::with_capacity(ring.len());
                for pos in ring {
                    match pos.as_slice() {
                        [x, y, ..] => coords.push(geo::Coord { x: *x, y: *y }),
                        other => {
                            return Err(invalid(format!(
                                "a position has {} coordinate(s), expected at least 2",
                                other.len()
                            )));
                        }
                    }
                }
                converted.push(geo::LineString(coords));
            }
            let mut rings = converted.into_iter();
            if let Some(exterior) = rings.next() {
                polygons.push(Polygon::new(exterior, rings.collect()));
            }
        }
        Self::from_polygons(path.display().to_string(), polygons)
    }

    /// Resolves a boundary spec: exactly two ASCII letters (any case) are an ISO country code,
    /// anything else is a GeoJSON path, relative to `base_dir` unless absolute.
    pub fn resolve(spec: &str, base_dir: &Path) -> Result<Self, GeoError> {
        let code = spec.trim();
        if code.len() == 2 && code.bytes().all(|b| b.is_ascii_alphabetic()) {
            Self::from_iso(code)
        } else {
            Self::from_geojson_file(base_dir.join(spec))
        }
    }

    /// Name: the ISO code for countries, the path for GeoJSON files.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The polygons (x = lon, y = lat), without degenerate rings.
    pub fn shape(&self) -> &MultiPolygon<f64> {
        &self.shape
    }

    /// Bounding box of all polygons.
    pub fn bbox(&self) -> BBox {
        self.bbox
    }

    /// Cosine of the bounding box's mid latitude: the x scale of the local equirectangular
    /// plane (x = lon·cos(lat_mid), y = lat) in which "nearest" is measured throughout.
    pub fn local_x_scale(&self) -> f64 {
        (0.5 * (self.bbox.min_lat + self.bbox.max_lat))
            .to_radians()
            .cos()
    }

    /// Whether the point lies inside a polygon and outside its holes. Points exactly on an
    /// edge may go either way.
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        self.bbox.contains(lat, lon) && self.polygons.iter().any(|p| p.contains(lon, lat))
    }

    /// Nearest point of the boundary's land to the point, in the local equirectangular plane
    /// (see [`Boundary::local_x_scale`]); a point already on land is returned unchanged.
    pub fn nearest_point(&self, lat: f64, lon: f64) -> (f64, f64) {
        if self.contains(lat, lon) {
            return (lat, lon);
        }
        let kx = self.local_x_scale();
        let mut best = (f64::INFINITY, (lon, lat));
        for polygon in &self.polygons {
            for ring in std::iter::once(&polygon.exterior).chain(&polygon.holes) {
                for (a, b) in ring.edges() {
                    let cand = nearest_on_segment((lon, lat), a, b, kx, 0.0, 1.0);
                    if cand.0 < best.0 {
                        best = cand;
                    }
                }
            }
        }
        (best.1.1, best.1.0)
    }

    /// Hex BLAKE3 digest of the geometry, for cache keys. It covers the vertex coordinates in
    /// order with their polygon/ring structure (little-endian counts and `f64` bits), not the
    /// name, so the same shape from world-data or a file with identical numbers hashes alike.
    pub fn digest(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(b"geoexp.geo.boundary.v1\0");
        h.update(&(self.polygons.len() as u64).to_le_bytes());
        for p in &self.polygons {
            h.update(&(1 + p.holes.len() as u64).to_le_bytes());
            for ring in std::iter::once(&p.exterior).chain(&p.holes) {
                h.update(&(ring.pts.len() as u64).to_le_bytes());
                for &(x, y) in &ring.pts {
                    // +0.0 folds -0.0 into 0.0: equal numbers must hash equally.
                    h.update(&(x + 0.0).to_le_bytes());
                    h.update(&(y + 0.0).to_le_bytes());
                }
            }
        }
        h.finalize().to_hex().to_string()
    }

    /// The point of `edges` (as returned by [`Boundary::sea_edges`]) nearest to (lat, lon),
    /// measured in this boundary's local plane, with its distance in km; `None` without edges.
    pub fn nearest_on_edges(
        &self,
        edges: &[[(f64, f64); 2]],
        lat: f64,
        lon: f64,
    ) -> Option<(f64, LatLon)> {
        let kx = self.local_x_scale();
        edges
            .iter()
            .map(|[(alat, alon), (blat, blon)]| {
                nearest_on_segment((lon, lat), (*alon, *alat), (*blon, *blat), kx, 0.0, 1.0)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(d2, (qlon, qlat))| {
                (
                    d2.sqrt().to_radians() * EARTH_RADIUS_KM,
                    LatLon {
                        lat: qlat,
                        lon: qlon,
                    },
                )
            })
    }

    /// Boundary edges that face the sea, as `[(lat, lon); 2]` endpoint pairs.
    ///
    /// An edge faces the sea when a probe 200 m outside its midpoint (along the outward
    /// normal, in the equirectangular plane at the midpoint's latitude) lies in no country
    /// polygon of the embedded world data; land borders put the probe inside the neighbour.
    /// The world data is used for GeoJSON boundaries too, so a custom region inside a country
    /// gets no sea edges along its inland sides.
    pub fn sea_edges(&self) -> Vec<[(f64, f64); 2]> {
        let probe_deg = (SEA_PROBE_KM / EARTH_RADIUS_KM).to_degrees();
        let edges: Vec<(Pt, Pt, bool)> = self
            .polygons
            .iter()
            .flat_map(|p| p.rings_with_land_side())
            .flat_map(|(ring, land_left)| ring.edges().map(move |(a, b)| (a, b, land_left)))
            .collect();
        edges
            .par_iter()
            .filter_map(|&(a, b, land_left)| {
                let mid = (0.5 * (a.0 + b.0), 0.5 * (a.1 + b.1));
                let kx = mid.1.to_radians().cos();
                let (dx, dy) = ((b.0 - a.0) * kx, b.1 - a.1);
                let len = dx.hypot(dy);
                if len == 0.0 || kx <= 0.0 {
                    return None;
                }
                // The right-hand normal is (dy, -dx); land on the left means outward is right.
                let side = if land_left { 1.0 } else { -1.0 };
                let (nx, ny) = (side * dy / len, -side * dx / len);
                let probe = (mid.0 + probe_deg * nx / kx, mid.1 + probe_deg * ny);
                (!world::on_land(probe.0, probe.1)).then_some([(a.1, a.0), (b.1, b.0)])
            })
            .collect()
    }

    /// Rings as indexed open vertex lists, for the grid and centroid code.
    pub(crate) fn rings(&self) -> impl Iterator<Item = (usize, bool, &IndexedRing)> {
        self.polygons.iter().enumerate().flat_map(|(i, p)| {
            std::iter::once((i, true, &p.exterior))
                .chain(p.holes.iter().map(move |h| (i, false, h)))
        })
    }
}

fn collect_polygons<'a>(value: &'a GeometryValue, out: &mut Vec<&'a PolygonType>) {
    match value {
        GeometryValue::Polygon { coordinates } => out.push(coordinates),
        GeometryValue::MultiPolygon { coordinates } => out.extend(coordinates.iter()),
        GeometryValue::GeometryCollection { geometries } => {
            for g in geometries {
                collect_polygons(&g.value, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::geo::hr_geojson;

    fn hr() -> Boundary {
        Boundary::from_iso("HR").expect("HR is embedded")
    }

    #[test]
    fn croatia_from_world_data_has_the_natural_earth_bbox() {
        let b = hr().bbox();
        assert!((b.min_lon - 13.5015).abs() < 1e-3, "{b:?}");
        assert!((b.max_lon - 19.4078).abs() < 1e-3, "{b:?}");
        assert!((b.min_lat - 42.4163).abs() < 1e-3, "{b:?}");
        assert!((b.max_lat - 46.5470).abs() < 1e-3, "{b:?}");
    }

    #[test]
    fn iso_codes_are_case_insensitive() {
        assert_eq!(
            Boundary::from_iso("hr").map(|b| b.digest()).ok(),
            Some(hr().digest())
        );
    }

    #[test]
    fn unknown_code_suggests_a_close_one() {
        let err = Boundary::from_iso("HRV").expect_err("HRV is alpha-3");
        let msg = err.to_string();
        assert!(
            msg.contains("\"HRV\"") && msg.contains("did you mean HR (Croatia)"),
            "{msg}"
        );
    }

    #[test]
    fn contains_cities_and_not_the_sea() {
        let b = hr();
        assert!(b.contains(45.8150, 15.9819)); // Zagreb
        assert!(b.contains(45.5550, 18.6955)); // Osijek
        assert!(b.contains(44.0406, 16.1966)); // Knin
        assert!(!b.contains(43.0, 15.0)); // open Adriatic
        assert!(!b.contains(46.0569, 14.5058)); // Ljubljana
        assert!(!b.contains(43.8563, 18.4131)); // Sarajevo
    }

    #[test]
    fn nearest_point_of_a_land_point_is_itself() {
        assert_eq!(hr().nearest_point(45.8150, 15.9819), (45.8150, 15.9819));
    }

    #[test]
    fn nearest_point_of_a_sea_point_is_on_the_coast_nearby() {
        let b = hr();
        let (lat, lon) = b.nearest_point(43.45, 16.0);
        assert!((lat - 43.45).abs() < 0.3 && (lon - 16.0).abs() < 0.5);
        // On the coast: the nearest point of land to itself (up to rounding) is itself.
        let (lat2, lon2) = b.nearest_point(lat, lon);
        assert!((lat - lat2).abs() < 1e-12 && (lon - lon2).abs() < 1e-12);
    }

    #[test]
    fn digest_is_stable_and_geometry_sensitive() {
        let a = hr();
        assert_eq!(a.digest(), hr().digest());
        assert_eq!(a.digest().len(), 64);
        let si = Boundary::from_iso("SI").expect("SI is embedded");
        assert_ne!(a.digest(), si.digest());
    }

    #[test]
    fn resolve_treats_two_letters_as_a_code_and_the_rest_as_a_path() {
        let base = Path::new("/nonexistent-base");
        assert_eq!(
            Boundary::resolve("hr", base)
                .map(|b| b.name().to_owned())
                .ok(),
            Some("HR".into())
        );
        match Boundary::resolve("HRV.geojson", base) {
            Err(GeoError::ReadGeoJson { path, .. }) => {
                assert_eq!(path, base.join("HRV.geojson"))
            }
            other => panic!("expected a read error, got {other:?}"),
        }
    }

    #[test]
    fn geojson_without_polygons_is_rejected_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("geoexp-geo-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("points.geojson");
        std::fs::write(&path, r#"{"type":"Point","coordinates":[16.0,45.0]}"#).expect("write");
        let err = Boundary::from_geojson_file(&path).expect_err("no polygon");
        assert!(err.to_string().contains("points.geojson"), "{err}");
        let bad = dir.join("bad.geojson");
        std::fs::write(&bad, "{not json").expect("write");
        let err = Boundary::from_geojson_file(&bad).expect_err("bad json");
        assert!(
            matches!(err, GeoError::ParseGeoJson { .. }) && err.to_string().contains("bad.geojson")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn geojson_file_matches_world_data_up_to_f32_rounding() {
        let Some(path) = hr_geojson() else {
            return;
        };
        let file = Boundary::from_geojson_file(&path).expect("reference file parses");
        let world = hr();
        assert_eq!(file.shape().0.len(), world.shape().0.len());
        let (fb, wb) = (file.bbox(), world.bbox());
        assert!((fb.min_lon - wb.min_lon).abs() < 1e-5 && (fb.max_lat - wb.max_lat).abs() < 1e-5);
    }

    #[test]
    fn sea_edges_follow_the_coast_and_not_land_borders() {
        let b = hr();
        let sea = b.sea_edges();
        assert!(!sea.is_empty());
        let mid = |e: &[(f64, f64); 2]| (0.5 * (e[0].0 + e[1].0), 0.5 * (e[0].1 + e[1].1));
        // Nothing along the northern border with Hungary/Slovenia (inland, north of 45.3°N
        // and east of 15°E).
        assert!(
            sea.iter()
                .map(mid)
                .all(|(lat, lon)| !(lat > 45.6 && lon > 15.0))
        );
        // The coast near Split faces the sea.
        assert!(
            sea.iter()
                .map(mid)
                .any(|(lat, lon)| (lat - 43.5).abs() < 0.1 && (lon - 16.45).abs() < 0.2)
        );
    }
}
