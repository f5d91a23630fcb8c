//! Where a cell "is": the three centroid definitions a class can be predicted at.
//!
//! * geometric: the centre of the square (for clusters, the centroid of the cell's land);
//! * clipped: the geometric centroid when it is on land, else the nearest point of the
//!   cell's land;
//! * weighted: the mean of the training points in the cell (computed with the classes, since it
//!   depends on the point split).
//!
//! "Nearest" is measured in the boundary's local equirectangular plane (x = lon·cos(lat_mid),
//! y = lat). The clipped centroid is computed from the boundary's own edges rather than the
//! clipped cell polygons, because the clipped rings contain zero-width bridges along the cell
//! edges that are not land and must never be returned as a nearest point.
//!
//! This file computes the grid's clipped centroids; quadtree and cluster cells use
//! `convex::nearest_land_points`, the same rule for any convex cell (measured in the projected
//! plane for clusters).

use serde::{Deserialize, Serialize};

use super::boundary::{BBox, Boundary, LatLon};
use super::clip::Axis;
use super::grid::{GridCell, GridSpec};
use super::ring::nearest_on_segment;

/// Which centroid a class is predicted at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CentroidMode {
    /// Centre of the square cell, wherever it lies.
    Geometric,
    /// Centre of the cell if on land, else the nearest land point inside the cell.
    Clipped,
    /// Mean latitude/longitude of the cell's training points.
    Weighted,
}

/// Clipped centroid of each cell, with whether it is the true centre (`true`) or the nearest
/// land point to it (`false`).
pub(crate) fn clipped_centroids(
    boundary: &Boundary,
    spec: &GridSpec,
    cells: &[GridCell],
) -> Vec<(LatLon, bool)> {
    let kx = boundary.local_x_scale();
    let mut result: Vec<(LatLon, bool)> = cells
        .iter()
        .map(|c| {
            let m = c.bounds.center();
            (m, boundary.contains(m.lat, m.lon))
        })
        .collect();

    // Off-land cells, by grid slot, with their best candidate so far (squared distance, lon, lat).
    let mut need = vec![u32::MAX; spec.nx * spec.ny];
    let mut best: Vec<(f64, (f64, f64))> = Vec::new();
    let mut best_cell: Vec<usize> = Vec::new();
    for (k, (cell, (_, on_land))) in cells.iter().zip(&result).enumerate() {
        if *on_land {
            continue;
        }
        need[cell.col * spec.ny + cell.row] = best.len() as u32;
        best_cell.push(k);
        // Land crossing a side: the side's midpoint is the nearest point of that side.
        let b = &cell.bounds;
        let m = b.center();
        let half = 0.5 * spec.spacing;
        let mut cand = (f64::INFINITY, (m.lon, m.lat));
        for (lon, lat, d) in [
            (b.min_lon, m.lat, half * kx),
            (b.max_lon, m.lat, half * kx),
            (m.lon, b.min_lat, half),
            (m.lon, b.max_lat, half),
        ] {
            if d * d < cand.0 && boundary.contains(lat, lon) {
                cand = (d * d, (lon, lat));
            }
        }
        best.push(cand);
    }
    if best.is_empty() {
        return result;
    }

    // Land boundary inside the cell: every edge, clipped to each off-land cell it may touch.
    for (_, _, ring) in boundary.rings() {
        for (a, b) in ring.edges() {
            let (c0, c1) = spec.span(Axis::X, a.0.min(b.0), a.0.max(b.0));
            let (r0, r1) = spec.span(Axis::Y, a.1.min(b.1), a.1.max(b.1));
            for col in c0..=c1 {
                for row in r0..=r1 {
                    let n = need[col * spec.ny + row];
                    if n == u32::MAX {
                        continue;
                    }
                    let n = n as usize;
                    let bounds = &cells[best_cell[n]].bounds;
                    if let Some((t0, t1)) = clip_segment(a, b, bounds) {
                        let m = bounds.center();
                        let cand = nearest_on_segment((m.lon, m.lat), a, b, kx, t0, t1);
                        if cand.0 < best[n].0 {
                            best[n] = cand;
                        }
                    }
                }
            }
        }
    }

    for (n, (d2, (lon, lat))) in best.into_iter().enumerate() {
        let k = best_cell[n];
        let b = &cells[k].bounds;
        if d2.is_finite() {
            // Interpolation may land 1 ulp outside the cell; the clamp keeps "inside" exact.
            result[k].0 = LatLon {
                lat: lat.clamp(b.min_lat, b.max_lat),
                lon: lon.clamp(b.min_lon, b.max_lon),
            };
        } else {
            // Unreachable for a cell with positive land area; fall back to the nearest land
            // point of the whole boundary, pulled into the cell.
            let m = b.center();
            let (lat, lon) = boundary.nearest_point(m.lat, m.lon);
            result[k].0 = LatLon {
                lat: lat.clamp(b.min_lat, b.max_lat),
                lon: lon.clamp(b.min_lon, b.max_lon),
            };
        }
    }
    result
}

/// Liang–Barsky: the parameter range of segment `a`–`b` inside the closed box, if any.
fn clip_segment(a: (f64, f64), b: (f64, f64), bx: &BBox) -> Option<(f64, f64)> {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [
        (-dx, a.0 - bx.min_lon),
        (dx, bx.max_lon - a.0),
        (-dy, a.1 - bx.min_lat),
        (dy, bx.max_lat - a.1),
    ] {
        if p == 0.0 {
            if q < 0.0 {
                return None;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
        }
    }
    (t0 <= t1).then_some((t0, t1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liang_barsky_clips_to_the_box() {
        let bx = BBox {
            min_lon: 0.0,
            min_lat: 0.0,
            max_lon: 1.0,
            max_lat: 1.0,
        };
        assert_eq!(
            clip_segment((-1.0, 0.5), (3.0, 0.5), &bx),
            Some((0.25, 0.5))
        );
        assert_eq!(clip_segment((2.0, 2.0), (3.0, 0.5), &bx), None);
        assert_eq!(clip_segment((0.2, 0.2), (0.3, 0.3), &bx), Some((0.0, 1.0)));
    }

    #[test]
    fn centroid_mode_serialises_lowercase() {
        let json = serde_json::to_string(&[
            CentroidMode::Geometric,
            CentroidMode::Clipped,
            CentroidMode::Weighted,
        ]);
        assert_eq!(
            json.ok().as_deref(),
            Some(r#"["geometric","clipped","weighted"]"#)
        );
        let back: Result<CentroidMode, _> = serde_json::from_str(r#""clipped""#);
        assert_eq!(back.ok(), Some(CentroidMode::Clipped));
    }
}
