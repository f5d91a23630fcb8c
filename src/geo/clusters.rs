//! Clustered cells: k-means on the training points in the projected CRS, one Voronoi region
//! per cluster, clipped to the boundary.
//!
//! * **Clusters.** k-means++ seeding from `seed` (ChaCha8), then Lloyd iterations until no
//!   training point changes cluster, at most [`MAX_ITERATIONS`]. Distances, sums and ties
//!   (to the lower index) are evaluated in a fixed order, so the result does not depend on the
//!   number of threads.
//! * **Order.** Clusters are numbered by their centre, west to east (projected x, then y), so
//!   ids do not depend on the order k-means++ found them in.
//! * **Cells.** A cluster's cell is its Voronoi region in the projected plane, bounded by the
//!   boundary's projected bounding box padded by [`PAD`] of its size; its land is that region
//!   clipped to the boundary. A cluster whose region has no land is an error naming it.
//! * **Points.** Every point (train, val, test) goes to the nearest centre, which is the
//!   region containing it; a point outside the padded box is counted as moved.
//! * **Centroids.** The geometric centroid is the centroid of the cell's land; the clipped
//!   one is that point when on land, else the nearest land point of the cell, both measured in
//!   the projected plane.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::boundary::{BBox, Boundary, LatLon};
use super::classes::ClassPoint;
use super::convex::{BoxIndex, Convex, nearest_land_points};
use super::error::GeoError;
use super::grid::AREA_TOLERANCE;
use super::projection::Projection;
use super::ring::{Pt, bounds, twice_signed_area};
use super::tessellation::{LandPiece, Locator, TileCell, Tiling, land_from_pieces};

/// Lloyd iterations at most. Uniformly spread points converge slowly (100,000 on Croatia
/// still move centres by ~0.1 % of a cell after 50), and each iteration costs ~1.5 ms there.
pub const MAX_ITERATIONS: usize = 50;
/// Padding of the projected bounding box that bounds the Voronoi regions, as a fraction of
/// its larger side: room for street-view points just off a coarse coastline.
pub const PAD: f64 = 0.05;
/// Most clusters: building the Voronoi regions is quadratic in their number.
pub const MAX_CLUSTERS: usize = 10_000;
/// Longest piece of a Voronoi edge when its outline is taken back to lon/lat, where the
/// straight projected edge is slightly curved (in CRS units, metres for the usual CRSs).
const EDGE_STEP: f64 = 2_000.0;
/// Most pieces per edge.
const MAX_EDGE_STEPS: usize = 512;

fn d2(a: Pt, b: Pt) -> f64 {
    let (dx, dy) = (a.0 - b.0, a.1 - b.1);
    dx * dx + dy * dy
}

/// k-means++ seeding then Lloyd iterations over `xy`; centres sorted west to east. `None`
/// when `xy` has fewer than `k` distinct points.
pub(crate) fn kmeans(xy: &[Pt], k: usize, seed: u64) -> Option<Vec<Pt>> {
    if k == 0 || xy.len() < k {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut centres = Vec::with_capacity(k);
    centres.push(xy[rng.random_range(0..xy.len())]);
    let mut dist: Vec<f64> = xy.par_iter().map(|&p| d2(p, centres[0])).collect();
    while centres.len() < k {
        let total: f64 = dist.iter().sum();
        if total.is_nan() || total <= 0.0 {
            return None;
        }
        let target = rng.random::<f64>() * total;
        let mut acc = 0.0;
        let mut pick = None;
        for (i, &d) in dist.iter().enumerate() {
            acc += d;
            if d > 0.0 && acc > target {
                pick = Some(i);
                break;
            }
        }
        // Rounding can leave `acc` a hair under `target`: take the last candidate.
        let pick = pick.or_else(|| dist.iter().rposition(|&d| d > 0.0))?;
        let c = xy[pick];
        centres.push(c);
        dist.par_iter_mut()
            .zip(xy)
            .for_each(|(d, &p)| *d = d.min(d2(p, c)));
    }

    lloyd(xy, &mut centres);
    centres.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    Some(centres)
}

/// Per point in Hamerly's scheme: its cluster, an upper bound on the distance to that
/// centre and a lower bound on the distance to every other.
#[derive(Clone, Copy)]
struct Bounds {
    label: usize,
    upper: f64,
    lower: f64,
}

/// Nearest and second-nearest distance to the centres, nearest's ties to the lower index.
fn two_nearest(p: Pt, centres: &[Pt]) -> Bounds {
    let (mut d1, mut d2n, mut label) = (f64::INFINITY, f64::INFINITY, 0);
    for (k, &c) in centres.iter().enumerate() {
        let d = d2(p, c);
        if d < d1 {
            d2n = d1;
            d1 = d;
            label = k;
        } else if d < d2n {
            d2n = d;
        }
    }
    Bounds {
        label,
        upper: d1.sqrt(),
        lower: d2n.sqrt(),
    }
}

/// Lloyd iterations, each point's nearest centre found with Hamerly's bounds (which skip
/// the full scan for points that provably keep their cluster), until no point changes
/// cluster or [`MAX_ITERATIONS`]. An emptied cluster keeps its centre.
fn lloyd(xy: &[Pt], centres: &mut [Pt]) {
    let k = centres.len();
    let mut bounds: Vec<Bounds> = xy.par_iter().map(|&p| two_nearest(p, centres)).collect();
    for _ in 0..MAX_ITERATIONS {
        let mut sums = vec![(0.0f64, 0.0f64, 0usize); k];
        for (&p, b) in xy.iter().zip(&bounds) {
            let s = &mut sums[b.label];
            s.0 += p.0;
            s.1 += p.1;
            s.2 += 1;
        }
        let mut moved = vec![0.0f64; k];
        for ((c, s), m) in centres.iter_mut().zip(sums).zip(&mut moved) {
            if s.2 > 0 {
                let next = (s.0 / s.2 as f64, s.1 / s.2 as f64);
                *m = d2(*c, next).sqrt();
                *c = next;
            }
        }
        // Largest and second-largest move, for the lower bounds.
        let (mut m1, mut m2, mut arg) = (0.0f64, 0.0f64, usize::MAX);
        for (j, &m) in moved.iter().enumerate() {
            if m > m1 {
                m2 = m1;
                m1 = m;
                arg = j;
            } else if m > m2 {
                m2 = m;
            }
        }
        // Half the distance from each centre to its nearest other centre.
        let half_gap: Vec<f64> = (0..k)
            .map(|j| {
                let nearest = (0..k)
                    .filter(|&o| o != j)
                    .map(|o| d2(centres[j], centres[o]))
                    .fold(f64::INFINITY, f64::min);
                0.5 * nearest.sqrt()
            })
            .collect();
        let centres = &*centres;
        let changed: usize = bounds
            .par_iter_mut()
            .zip(xy)
            .map(|(b, &p)| {
                b.upper += moved[b.label];
                b.lower -= if b.label == arg { m2 } else { m1 };
                let bar = half_gap[b.label].max(b.lower);
                if b.upper <= bar {
                    return 0;
                }
                b.upper = d2(p, centres[b.label]).sqrt();
                if b.upper <= bar {
                    return 0;
                }
                let before = b.label;
                *b = two_nearest(p, centres);
                usize::from(b.label != before)
            })
            .sum();
        if changed == 0 {
            break;
        }
    }
}

/// The Voronoi region of each centre within `frame`.
fn voronoi(centres: &[Pt], frame: &Convex) -> Vec<Convex> {
    centres
        .par_iter()
        .enumerate()
        .map(|(i, &c)| {
            let mut others: Vec<(f64, usize)> = centres
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, &o)| (d2(c, o), j))
                .collect();
            others.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut region = frame.clone();
            for (dist2, j) in others {
                // A centre more than twice the region's radius away cannot cut it.
                let reach = region.pts().iter().map(|&v| d2(v, c)).fold(0.0, f64::max);
                if dist2 > 4.0 * reach || region.is_empty() {
                    break;
                }
                let o = centres[j];
                let mid = (0.5 * (c.0 + o.0), 0.5 * (c.1 + o.1));
                region = region.cut(mid, (o.0 - c.0, o.1 - c.1));
            }
            region
        })
        .collect()
}

/// Centroid of rings tagged exterior/hole, relative to `origin`; `None` without area.
fn land_centroid(pieces: &[LandPiece], origin: Pt) -> Option<Pt> {
    let (mut area, mut cx, mut cy) = (0.0, 0.0, 0.0);
    for (_, is_exterior, ring) in pieces {
        let n = ring.len();
        let (mut a2, mut sx, mut sy) = (0.0, 0.0, 0.0);
        for i in 0..n {
            let p = (ring[i].0 - origin.0, ring[i].1 - origin.1);
            let q = (
                ring[(i + 1) % n].0 - origin.0,
                ring[(i + 1) % n].1 - origin.1,
            );
            let w = p.0 * q.1 - q.0 * p.1;
            a2 += w;
            sx += (p.0 + q.0) * w;
            sy += (p.1 + q.1) * w;
        }
        if a2 == 0.0 {
            continue;
        }
        // The ring's centroid is (sx, sy) / (3·a2) whatever its orientation; weight it by its
        // unsigned area, negative for holes.
        let weight = if *is_exterior { a2.abs() } else { -a2.abs() };
        area += weight;
        cx += weight * sx / (3.0 * a2);
        cy += weight * sy / (3.0 * a2);
    }
    (area > 0.0).then(|| (origin.0 + cx / area, origin.1 + cy / area))
}

/// Cuts `boundary` into the Voronoi regions of `k` clusters of the training points.
pub(crate) fn tile(
    boundary: &Boundary,
    k: usize,
    seed: u64,
    points: &[ClassPoint],
    points_xy: &[Pt],
    projection: &dyn Projection,
) -> Result<Tiling, GeoError> {
    let train: Vec<Pt> = points
        .iter()
        .zip(points_xy)
        .filter(|(p, _)| p.is_train)
        .map(|(_, &xy)| xy)
        .collect();
    let too_many = || GeoError::TooManyClusters {
        cells: k,
        train: train.len(),
    };
    if k > MAX_CLUSTERS || k > train.len() {
        return Err(too_many());
    }
    let centres = kmeans(&train, k, seed).ok_or_else(too_many)?;

    // The boundary's rings in the projected plane.
    let mut rings: Vec<(usize, bool, Vec<Pt>, [f64; 4])> = Vec::new();
    for (polygon, is_exterior, ring) in boundary.rings() {
        let mut pts = ring.pts.clone();
        projection.forward(&mut pts)?;
        let bb = bounds(pts.iter().copied());
        rings.push((polygon, is_exterior, pts, bb));
    }
    let extent = bounds(
        rings
            .iter()
            .flat_map(|r| [(r.3[0], r.3[1]), (r.3[2], r.3[3])]),
    );
    let pad = PAD * (extent[2] - extent[0]).max(extent[3] - extent[1]);
    let frame = Convex::rect([
        extent[0] - pad,
        extent[1] - pad,
        extent[2] + pad,
        extent[3] + pad,
    ]);
    let regions = voronoi(&centres, &frame);

    // Land of each region, in the projected plane.
    let lands: Vec<(Vec<LandPiece>, f64)> = regions
        .par_iter()
        .map(|region| {
            let rb = region.bbox();
            let min_area = AREA_TOLERANCE * (rb[2] - rb[0]) * (rb[3] - rb[1]);
            let (mut tmp, mut out) = (Vec::new(), Vec::new());
            let mut pieces = Vec::new();
            let mut area = 0.0;
            for (polygon, is_exterior, ring, bb) in &rings {
                if bb[2] < rb[0] || bb[0] > rb[2] || bb[3] < rb[1] || bb[1] > rb[3] {
                    continue;
                }
                region.clip_ring(ring, &mut tmp, &mut out);
                if out.len() < 3 {
                    continue;
                }
                let a = 0.5 * twice_signed_area(&out, region.pts()[0]).abs();
                if a <= min_area {
                    continue;
                }
                area += if *is_exterior { a } else { -a };
                pieces.push((*polygon, *is_exterior, out.clone()));
            }
            (pieces, if area > min_area { area } else { 0.0 })
        })
        .collect();
    let mut geometric_xy = Vec::with_capacity(k);
    for (i, (pieces, area)) in lands.iter().enumerate() {
        let centroid = (*area > 0.0)
            .then(|| land_centroid(pieces, regions[i].pts()[0]))
            .flatten();
        let Some(c) = centroid else {
            let mut at = [centres[i]];
            projection.inverse(&mut at)?;
            return Err(GeoError::ClusterWithoutLand {
                cluster: i,
                lat: at[0].1,
                lon: at[0].0,
            });
        };
        geometric_xy.push(c);
    }

    // Clipped centroids: the land centroid, or the nearest land point of the cell to it.
    let on_land = |p: Pt| {
        let mut q = [p];
        projection.inverse(&mut q).is_ok() && boundary.contains(q[0].1, q[0].0)
    };
    let mut clipped_xy = geometric_xy.clone();
    let mut is_true = vec![true; k];
    let off: Vec<usize> = (0..k).filter(|&i| !on_land(geometric_xy[i])).collect();
    let off_cells: Vec<&Convex> = off.iter().map(|&i| &regions[i]).collect();
    let off_centres: Vec<Pt> = off.iter().map(|&i| geometric_xy[i]).collect();
    let found = nearest_land_points(
        rings.iter().map(|r| r.2.as_slice()),
        &off_cells,
        &off_centres,
        1.0,
        on_land,
    );
    for (&i, near) in off.iter().zip(found) {
        is_true[i] = false;
        if let Some((_, p)) = near {
            clipped_xy[i] = p;
        }
    }

    // Everything back to lon/lat in one call per kind.
    let mut centroids: Vec<Pt> = geometric_xy.iter().chain(&clipped_xy).copied().collect();
    projection.inverse(&mut centroids)?;
    let (geometric, clipped) = centroids.split_at(k);
    let mut cells = Vec::with_capacity(k);
    for (i, ((pieces, _), region)) in lands.into_iter().zip(&regions).enumerate() {
        let mut outline = densify(region.pts());
        projection.inverse(&mut outline)?;
        let mut land_pieces = Vec::with_capacity(pieces.len());
        let mut land_area_deg2 = 0.0;
        for (polygon, is_exterior, mut ring) in pieces {
            projection.inverse(&mut ring)?;
            let a = 0.5 * twice_signed_area(&ring, ring[0]).abs();
            land_area_deg2 += if is_exterior { a } else { -a };
            land_pieces.push((polygon, is_exterior, ring));
        }
        let b = bounds(outline.iter().copied());
        let at = |p: Pt| LatLon { lat: p.1, lon: p.0 };
        cells.push(TileCell {
            col: None,
            row: None,
            bounds: BBox {
                min_lon: b[0],
                min_lat: b[1],
                max_lon: b[2],
                max_lat: b[3],
            },
            outline,
            land: land_from_pieces(land_pieces),
            land_area_deg2,
            geometric: at(geometric[i]),
            clipped: at(clipped[i]),
            is_true_centroid: is_true[i],
        });
    }

    // Every point to its nearest centre (its Voronoi region).
    let centre_boxes: Vec<[f64; 4]> = centres.iter().map(|c| [c.0, c.1, c.0, c.1]).collect();
    let index = BoxIndex::new(&centre_boxes);
    let assigned = points_xy
        .par_iter()
        .map(|&p| {
            let c = index
                .nearest(p, 1.0, |j| d2(p, centres[j as usize]))
                .unwrap_or(0) as usize;
            (c, !frame.contains(p))
        })
        .collect();
    Ok(Tiling {
        cells,
        assigned,
        locator: Locator::Plane {
            cells: regions,
            kx: 1.0,
            projected: true,
        },
    })
}

/// The ring with each edge cut into pieces of at most [`EDGE_STEP`].
fn densify(ring: &[Pt]) -> Vec<Pt> {
    let n = ring.len();
    let mut out = Vec::with_capacity(n * 4);
    for i in 0..n {
        let (a, b) = (ring[i], ring[(i + 1) % n]);
        let steps = ((d2(a, b).sqrt() / EDGE_STEP).ceil() as usize).clamp(1, MAX_EDGE_STEPS);
        for s in 0..steps {
            let t = s as f64 / steps as f64;
            out.push((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Index of the nearest centre, ties to the lower index.
    fn nearest_centre(p: Pt, centres: &[Pt]) -> usize {
        let mut best = (f64::INFINITY, 0);
        for (k, &c) in centres.iter().enumerate() {
            let d = d2(p, c);
            if d < best.0 {
                best = (d, k);
            }
        }
        best.1
    }

    #[test]
    fn kmeans_finds_separated_groups_and_orders_them_west_to_east() {
        let mut xy = Vec::new();
        for &(cx, cy) in &[(100.0, 0.0), (0.0, 0.0), (50.0, 80.0)] {
            for i in 0..20 {
                let a = i as f64 * 0.7;
                xy.push((cx + a.cos(), cy + a.sin()));
            }
        }
        let c = kmeans(&xy, 3, 7).expect("enough points");
        assert_eq!(c.len(), 3);
        for (got, want) in c.iter().zip([(0.0, 0.0), (50.0, 80.0), (100.0, 0.0)]) {
            assert!(d2(*got, want) < 0.5, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn kmeans_is_deterministic_and_refuses_too_few_distinct_points() {
        let xy: Vec<Pt> = (0..500)
            .map(|i| (((i * 37) % 101) as f64, ((i * 53) % 89) as f64))
            .collect();
        assert_eq!(kmeans(&xy, 12, 1), kmeans(&xy, 12, 1));
        assert_ne!(kmeans(&xy, 12, 1), kmeans(&xy, 12, 2));
        let same = vec![(1.0, 1.0); 10];
        assert_eq!(kmeans(&same, 2, 0), None);
        assert_eq!(kmeans(&xy[..3], 4, 0), None);
    }

    #[test]
    fn voronoi_regions_tile_the_frame_and_contain_their_centres() {
        let centres = [(1.0, 1.0), (3.0, 1.0), (2.0, 3.0), (0.5, 3.5)];
        let frame = Convex::rect([0.0, 0.0, 4.0, 4.0]);
        let regions = voronoi(&centres, &frame);
        let total: f64 = regions
            .iter()
            .map(|r| 0.5 * twice_signed_area(r.pts(), (0.0, 0.0)))
            .sum();
        assert!((total - 16.0).abs() < 1e-9, "{total}");
        for (r, &c) in regions.iter().zip(&centres) {
            assert!(r.contains(c));
        }
        // A point belongs to the region of its nearest centre.
        for i in 0..40 {
            for j in 0..40 {
                let p = (0.05 + 0.1 * i as f64, 0.05 + 0.1 * j as f64);
                let k = nearest_centre(p, &centres);
                assert!(regions[k].dist2(p, 1.0) < 1e-18, "{p:?} not in region {k}");
            }
        }
    }

    #[test]
    fn land_centroid_of_a_square_with_a_hole() {
        let outer = vec![(0.0, 0.0), (4.0, 0.0), (4.0, 4.0), (0.0, 4.0)];
        // A clockwise hole in the east half: the centroid moves west.
        let hole = vec![(2.0, 1.0), (2.0, 3.0), (3.0, 3.0), (3.0, 1.0)];
        let c = land_centroid(&[(0, true, outer), (0, false, hole)], (0.0, 0.0)).unwrap();
        // (16·2 − 2·2.5) / 14 along x; y stays 2.
        assert!(
            (c.0 - 27.0 / 14.0).abs() < 1e-12 && (c.1 - 2.0).abs() < 1e-12,
            "{c:?}"
        );
    }
}
