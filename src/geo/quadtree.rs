//! Quadtree cells: the grid's squares, split where the training data is dense.
//!
//! The roots are the kept squares of the `spacing`° grid (`grid.rs`), and every point first
//! goes to its root as on the grid. A square holding more than `max_locations` training points
//! is split into four children of half its side, as long as that side is at least
//! `min_spacing`; children without land (by the grid's area rule) are dropped. A parent's
//! points go to the child they fall in (half-open, east and north on a shared edge), else to
//! the nearest kept child (moved). Splitting is decided per square from its own points, so the
//! order of work cannot change the result; the leaves are listed depth first, roots in grid
//! order and children south-west, north-west, south-east, north-east (column outer, as the grid).

use rayon::prelude::*;

use super::boundary::{BBox, Boundary, LatLon};
use super::classes::ClassPoint;
use super::clip::{Axis, clip_slab};
use super::convex::{Convex, nearest_land_points};
use super::error::GeoError;
use super::grid::AREA_TOLERANCE;
use super::ring::{Pt, open_ring, twice_signed_area};
use super::tessellation::{
    LandPiece, Locator, TileCell, Tiling, grid_with_points, land_from_pieces, square,
};

/// A square being split: where it is, its land as clipped rings, and its points.
struct Node {
    col: usize,
    row: usize,
    side: f64,
    bounds: BBox,
    /// (source polygon, is exterior, ring).
    pieces: Vec<LandPiece>,
    land_area: f64,
    /// (point index, moved).
    points: Vec<(u32, bool)>,
}

/// Cuts `boundary` into quadtree cells over `points`; see the module docs.
pub(crate) fn tile(
    boundary: &Boundary,
    spacing: f64,
    max_locations: usize,
    min_spacing: f64,
    points: &[ClassPoint],
) -> Result<Tiling, GeoError> {
    let (grid, roots_of) = grid_with_points(boundary, spacing, points)?;
    let kx = boundary.local_x_scale();
    let mut members: Vec<Vec<(u32, bool)>> = vec![Vec::new(); grid.cells.len()];
    for (i, &(k, moved)) in roots_of.iter().enumerate() {
        members[k].push((i as u32, moved));
    }
    let roots: Vec<Node> = grid
        .cells
        .into_iter()
        .zip(members)
        .map(|(c, points)| Node {
            col: c.col,
            row: c.row,
            side: spacing,
            bounds: c.bounds,
            pieces: c
                .land
                .0
                .iter()
                .enumerate()
                .flat_map(|(i, p)| {
                    std::iter::once((i, true, open_ring(p.exterior())))
                        .chain(p.interiors().iter().map(move |h| (i, false, open_ring(h))))
                })
                .collect(),
            land_area: c.land_area_deg2,
            points,
        })
        .collect();
    // Leaves per root, split in parallel: each root's subtree depends on its own points only.
    let split = Splitter {
        points,
        max_locations,
        min_side: min_spacing * (1.0 - 1e-9),
        kx,
    };
    let leaves: Vec<Node> = roots
        .into_par_iter()
        .flat_map_iter(|root| {
            let mut out = Vec::new();
            split.descend(root, &mut out);
            out
        })
        .collect();

    let mut assigned = vec![(0usize, false); points.len()];
    for (k, leaf) in leaves.iter().enumerate() {
        for &(i, moved) in &leaf.points {
            assigned[i as usize] = (k, moved);
        }
    }
    let squares: Vec<Convex> = leaves
        .iter()
        .map(|l| {
            let b = l.bounds;
            Convex::rect([b.min_lon, b.min_lat, b.max_lon, b.max_lat])
        })
        .collect();
    let clipped = clipped_centroids(boundary, &leaves, &squares, kx);
    let cells = leaves
        .into_iter()
        .zip(clipped)
        .map(|(l, (clipped, is_true_centroid))| TileCell {
            col: Some(l.col),
            row: Some(l.row),
            outline: square(l.bounds),
            geometric: l.bounds.center(),
            bounds: l.bounds,
            land_area_deg2: l.land_area,
            land: land_from_pieces(l.pieces),
            clipped,
            is_true_centroid,
        })
        .collect();
    Ok(Tiling {
        cells,
        assigned,
        locator: Locator::Plane {
            cells: squares,
            kx,
            projected: false,
        },
    })
}

struct Splitter<'a> {
    points: &'a [ClassPoint],
    max_locations: usize,
    min_side: f64,
    kx: f64,
}

impl Splitter<'_> {
    fn n_train(&self, node: &Node) -> usize {
        node.points
            .iter()
            .filter(|(i, _)| self.points[*i as usize].is_train)
            .count()
    }

    /// Appends the leaves of `node`'s subtree to `out`, in order.
    fn descend(&self, node: Node, out: &mut Vec<Node>) {
        let half = 0.5 * node.side;
        if self.n_train(&node) <= self.max_locations || half < self.min_side {
            out.push(node);
            return;
        }
        let mut children = children(&node);
        if children.is_empty() {
            out.push(node);
            return;
        }
        let squares: Vec<Convex> = children
            .iter()
            .map(|c| {
                let b = c.bounds;
                Convex::rect([b.min_lon, b.min_lat, b.max_lon, b.max_lat])
            })
            .collect();
        let mid = (node.bounds.min_lon + half, node.bounds.min_lat + half);
        for (i, moved) in node.points {
            let p = &self.points[i as usize];
            let quadrant = (usize::from(p.lon >= mid.0), usize::from(p.lat >= mid.1));
            let own = children
                .iter()
                .position(|c| (c.col - 2 * node.col, c.row - 2 * node.row) == quadrant);
            let (k, now_moved) = match own {
                Some(k) => (k, moved),
                None => {
                    let d = |k: usize| squares[k].dist2((p.lon, p.lat), self.kx);
                    let k = (0..children.len())
                        .min_by(|&a, &b| d(a).total_cmp(&d(b)))
                        .unwrap_or(0);
                    (k, true)
                }
            };
            children[k].points.push((i, now_moved));
        }
        for child in children {
            self.descend(child, out);
        }
    }
}

/// The kept children of `node` (land area above the grid's tolerance), in child order, with
/// their land clipped from the parent's and no points yet.
fn children(node: &Node) -> Vec<Node> {
    let half = 0.5 * node.side;
    let min_area = AREA_TOLERANCE * half * half;
    let (mut tmp, mut strip, mut piece) = (Vec::new(), Vec::new(), Vec::new());
    let mut out = Vec::new();
    for dc in 0..2 {
        for dr in 0..2 {
            let bounds = BBox {
                min_lon: node.bounds.min_lon + dc as f64 * half,
                min_lat: node.bounds.min_lat + dr as f64 * half,
                max_lon: if dc == 0 {
                    node.bounds.min_lon + half
                } else {
                    node.bounds.max_lon
                },
                max_lat: if dr == 0 {
                    node.bounds.min_lat + half
                } else {
                    node.bounds.max_lat
                },
            };
            let mut pieces = Vec::new();
            let mut area = 0.0;
            for (polygon, is_exterior, ring) in &node.pieces {
                clip_slab(
                    ring,
                    Axis::X,
                    bounds.min_lon,
                    bounds.max_lon,
                    &mut tmp,
                    &mut strip,
                );
                if strip.len() < 3 {
                    continue;
                }
                clip_slab(
                    &strip,
                    Axis::Y,
                    bounds.min_lat,
                    bounds.max_lat,
                    &mut tmp,
                    &mut piece,
                );
                if piece.len() < 3 {
                    continue;
                }
                let a = 0.5 * twice_signed_area(&piece, (bounds.min_lon, bounds.min_lat)).abs();
                if a <= min_area {
                    continue;
                }
                area += if *is_exterior { a } else { -a };
                pieces.push((*polygon, *is_exterior, piece.clone()));
            }
            if area > min_area {
                out.push(Node {
                    col: 2 * node.col + dc,
                    row: 2 * node.row + dr,
                    side: half,
                    bounds,
                    pieces,
                    land_area: area,
                    points: Vec::new(),
                });
            }
        }
    }
    out
}

/// The clipped centroid of each leaf: its centre when on land, else the nearest land point in
/// the square (the grid's rule, with squares of any size).
fn clipped_centroids(
    boundary: &Boundary,
    leaves: &[Node],
    squares: &[Convex],
    kx: f64,
) -> Vec<(LatLon, bool)> {
    let mut result: Vec<(LatLon, bool)> = leaves
        .iter()
        .map(|l| {
            let m = l.bounds.center();
            (m, boundary.contains(m.lat, m.lon))
        })
        .collect();
    let off: Vec<usize> = (0..leaves.len()).filter(|&k| !result[k].1).collect();
    let cells: Vec<&Convex> = off.iter().map(|&k| &squares[k]).collect();
    let centres: Vec<Pt> = off
        .iter()
        .map(|&k| (result[k].0.lon, result[k].0.lat))
        .collect();
    let found = nearest_land_points(
        boundary.rings().map(|(_, _, r)| r.pts.as_slice()),
        &cells,
        &centres,
        kx,
        |p| boundary.contains(p.1, p.0),
    );
    for (&k, near) in off.iter().zip(found) {
        let b = leaves[k].bounds;
        let (lon, lat) = match near {
            Some((_, p)) => p,
            None => {
                let m = b.center();
                let (lat, lon) = boundary.nearest_point(m.lat, m.lon);
                (lon, lat)
            }
        };
        // Interpolation may land 1 ulp outside the square; the clamp keeps "inside" exact.
        result[k].0 = LatLon {
            lat: lat.clamp(b.min_lat, b.max_lat),
            lon: lon.clamp(b.min_lon, b.max_lon),
        };
    }
    result
}
