//! The three ways of cutting a boundary into cells, and what each gives the classes code:
//! cell shapes with their land and centroids, every point's cell, and a way to find the
//! nearest of a subset of cells.
//!
//! * grid (`grid.rs`): `spacing`° squares; a point goes to the square it falls in, else to the
//!   nearest kept square.
//! * quadtree (`quadtree.rs`): the grid's squares, split while they hold too many training
//!   points.
//! * clusters (`clusters.rs`): k-means on the training points in the projected CRS, one
//!   Voronoi region per cluster.
//!
//! "Nearest" is measured in the boundary's local plane (x = lon·cos(lat_mid)) for squares and
//! in the projected CRS for clusters, the planes their cells are convex in.

use geo::{MultiPolygon, Polygon};

use super::boundary::{BBox, Boundary, LatLon};
use super::centroids::clipped_centroids;
use super::classes::ClassPoint;
use super::convex::{BoxIndex, Convex, nearest_in_rings};
use super::error::GeoError;
use super::grid::{Grid, GridSpec, land_grid};
use super::projection::Projection;
use super::ring::{Pt, closed_line_string};

/// How the boundary is cut into cells.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CellScheme {
    /// Squares of `spacing`° over the boundary's bounding box.
    Grid {
        /// Side in degrees.
        spacing: f64,
    },
    /// The grid's squares, each split into four while it holds more than `max_locations`
    /// training points and its children would be at least `min_spacing`° wide.
    Quadtree {
        /// Side of the root squares in degrees.
        spacing: f64,
        /// Most training points a square may keep without being split.
        max_locations: usize,
        /// Smallest side a split may create, in degrees.
        min_spacing: f64,
    },
    /// `cells` k-means clusters of the training points in the projected CRS; each cluster's
    /// cell is its Voronoi region.
    Clusters {
        /// Number of clusters.
        cells: usize,
        /// Seed of the k-means++ initialisation.
        seed: u64,
    },
}

impl CellScheme {
    /// `"grid"`, `"quadtree"` or `"clusters"`.
    pub fn kind(&self) -> &'static str {
        match self {
            CellScheme::Grid { .. } => "grid",
            CellScheme::Quadtree { .. } => "quadtree",
            CellScheme::Clusters { .. } => "clusters",
        }
    }
}

/// What makes cells and which of them are classes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CellSpec {
    /// How cells are cut.
    pub scheme: CellScheme,
    /// A cell is a class when it holds at least this many training points (at least 1).
    pub min_locations: usize,
}

impl CellSpec {
    /// The square grid, every cell with a training point a class.
    pub fn grid(spacing: f64) -> Self {
        Self {
            scheme: CellScheme::Grid { spacing },
            min_locations: 1,
        }
    }
}

/// One cell as a scheme made it.
#[derive(Clone, Debug)]
pub(crate) struct TileCell {
    /// Column and row at the cell's own size (squares only).
    pub col: Option<usize>,
    pub row: Option<usize>,
    /// Bounds of `outline`.
    pub bounds: BBox,
    /// The cell's shape in lon/lat, open and counter-clockwise: where its points lie.
    pub outline: Vec<Pt>,
    pub land: MultiPolygon<f64>,
    pub land_area_deg2: f64,
    pub geometric: LatLon,
    pub clipped: LatLon,
    pub is_true_centroid: bool,
}

/// How the nearest cell of a subset is found.
pub(crate) enum Locator {
    /// Squares of one grid: a ring search over grid slots.
    Grid(GridSpec),
    /// Convex cells in a plane: lon/lat (`projected: false`, x scaled by `kx`) or the
    /// projected CRS.
    Plane {
        cells: Vec<Convex>,
        kx: f64,
        projected: bool,
    },
}

/// A boundary cut into cells, with the cell of every point.
pub(crate) struct Tiling {
    pub cells: Vec<TileCell>,
    /// Per input point: its cell, and whether it lies outside every cell and was given the
    /// nearest one.
    pub assigned: Vec<(usize, bool)>,
    pub locator: Locator,
}

impl Tiling {
    /// For each point (`None` where `wanted` is false): the nearest cell among those with
    /// `keep`, ties to the lower index.
    pub(crate) fn nearest_among(
        &self,
        keep: &[bool],
        points: &[ClassPoint],
        points_xy: &[Pt],
        kx: f64,
        wanted: &[bool],
    ) -> Vec<Option<usize>> {
        use rayon::prelude::*;
        match &self.locator {
            Locator::Grid(spec) => {
                let mut table = vec![NONE; spec.nx * spec.ny];
                for (k, c) in self.cells.iter().enumerate() {
                    if let (true, Some(col), Some(row)) = (keep[k], c.col, c.row) {
                        table[col * spec.ny + row] = k as u32;
                    }
                }
                points
                    .par_iter()
                    .zip(wanted)
                    .map(|(p, &w)| {
                        w.then(|| nearest(spec, kx, &table, p.lat, p.lon))
                            .flatten()
                            .map(|k| k as usize)
                    })
                    .collect()
            }
            Locator::Plane {
                cells,
                kx: plane_kx,
                projected,
            } => {
                let ids: Vec<usize> = (0..cells.len()).filter(|&k| keep[k]).collect();
                if ids.is_empty() {
                    return vec![None; points.len()];
                }
                let boxes: Vec<[f64; 4]> = ids.iter().map(|&k| cells[k].bbox()).collect();
                let index = BoxIndex::new(&boxes);
                points
                    .par_iter()
                    .zip(points_xy)
                    .zip(wanted)
                    .map(|((p, &xy), &w)| {
                        if !w {
                            return None;
                        }
                        let q = if *projected { xy } else { (p.lon, p.lat) };
                        index
                            .nearest(q, *plane_kx, |i| cells[ids[i as usize]].dist2(q, *plane_kx))
                            .map(|i| ids[i as usize])
                    })
                    .collect()
            }
        }
    }
}

/// Cuts `boundary` by `scheme` and gives each point its cell.
pub(crate) fn tile(
    boundary: &Boundary,
    scheme: CellScheme,
    points: &[ClassPoint],
    points_xy: &[Pt],
    projection: &dyn Projection,
) -> Result<Tiling, GeoError> {
    match scheme {
        CellScheme::Grid { spacing } => grid_tiling(boundary, spacing, points),
        CellScheme::Quadtree {
            spacing,
            max_locations,
            min_spacing,
        } => super::quadtree::tile(boundary, spacing, max_locations, min_spacing, points),
        CellScheme::Clusters { cells, seed } => {
            super::clusters::tile(boundary, cells, seed, points, points_xy, projection)
        }
    }
}

/// The kept squares of the `spacing`° grid, and each point's square: the one it falls in (by
/// [`GridSpec::locate`]), else the nearest one (moved).
pub(crate) fn grid_with_points(
    boundary: &Boundary,
    spacing: f64,
    points: &[ClassPoint],
) -> Result<(Grid, Vec<(usize, bool)>), GeoError> {
    use rayon::prelude::*;
    let grid = land_grid(boundary, spacing)?;
    if grid.cells.is_empty() {
        return Err(GeoError::NoCells {
            name: boundary.name().to_owned(),
            spacing,
        });
    }
    let spec = grid.spec;
    let kx = boundary.local_x_scale();
    let mut cell_at = vec![NONE; spec.nx * spec.ny];
    for (k, c) in grid.cells.iter().enumerate() {
        cell_at[c.col * spec.ny + c.row] = k as u32;
    }
    let assigned = points
        .par_iter()
        .map(|p| {
            if let Some((i, j)) = spec.locate(p.lat, p.lon) {
                let k = cell_at[i * spec.ny + j];
                if k != NONE {
                    return (k as usize, false);
                }
            }
            // A kept cell exists, so the search finds one.
            let k = nearest(&spec, kx, &cell_at, p.lat, p.lon).unwrap_or(0);
            (k as usize, true)
        })
        .collect();
    Ok((grid, assigned))
}

fn grid_tiling(
    boundary: &Boundary,
    spacing: f64,
    points: &[ClassPoint],
) -> Result<Tiling, GeoError> {
    let (grid, assigned) = grid_with_points(boundary, spacing, points)?;
    let spec = grid.spec;
    let clipped = clipped_centroids(boundary, &spec, &grid.cells);
    let cells = grid
        .cells
        .into_iter()
        .zip(clipped)
        .map(|(c, (clipped, is_true_centroid))| TileCell {
            col: Some(c.col),
            row: Some(c.row),
            outline: square(c.bounds),
            geometric: c.bounds.center(),
            bounds: c.bounds,
            land: c.land,
            land_area_deg2: c.land_area_deg2,
            clipped,
            is_true_centroid,
        })
        .collect();
    Ok(Tiling {
        cells,
        assigned,
        locator: Locator::Grid(spec),
    })
}

/// A square's outline, counter-clockwise from the south-west corner.
pub(crate) fn square(b: BBox) -> Vec<Pt> {
    vec![
        (b.min_lon, b.min_lat),
        (b.max_lon, b.min_lat),
        (b.max_lon, b.max_lat),
        (b.min_lon, b.max_lat),
    ]
}

/// A clipped ring of land: (source polygon, is exterior, open ring).
pub(crate) type LandPiece = (usize, bool, Vec<Pt>);

/// Land polygons from clipped rings tagged (source polygon, is exterior), in source order: each
/// exterior ring starts a polygon and the holes of the same source polygon after it join it.
pub(crate) fn land_from_pieces(mut pieces: Vec<LandPiece>) -> MultiPolygon<f64> {
    pieces.sort_by_key(|p| (p.0, !p.1));
    let mut land: Vec<(usize, Polygon<f64>)> = Vec::new();
    for (polygon, is_exterior, ring) in pieces {
        let ring = closed_line_string(&ring);
        if is_exterior {
            land.push((polygon, Polygon::new(ring, Vec::new())));
        } else if let Some((_, current)) = land.last_mut().filter(|(p, _)| *p == polygon) {
            current.interiors_push(ring);
        }
    }
    MultiPolygon(land.into_iter().map(|(_, p)| p).collect())
}

const NONE: u32 = u32::MAX;

/// Nearest entry of `table` (grid slot → id, `NONE` for empty slots) to the point, by distance
/// from the point to the cell rectangle in the local plane (x scaled by `kx`); ties go to the
/// lower id.
pub(crate) fn nearest(spec: &GridSpec, kx: f64, table: &[u32], lat: f64, lon: f64) -> Option<u32> {
    let clamp = |v: f64, n: usize| (v.floor().max(0.0) as usize).min(n - 1);
    let centre = (
        clamp((lon - spec.min_lon) / spec.spacing, spec.nx),
        clamp((lat - spec.min_lat) / spec.spacing, spec.ny),
    );
    let slot = |i: usize, j: usize| {
        let id = table[i * spec.ny + j];
        (id != NONE).then(|| {
            let dx = (spec.col_edge(i) - lon)
                .max(lon - spec.col_edge(i + 1))
                .max(0.0)
                * kx;
            let dy = (spec.row_edge(j) - lat)
                .max(lat - spec.row_edge(j + 1))
                .max(0.0);
            (dx * dx + dy * dy, id)
        })
    };
    nearest_in_rings(centre, (spec.nx, spec.ny), spec.spacing * kx.min(1.0), slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_cell_ties_go_to_the_lower_index() {
        let spec = GridSpec {
            min_lon: 0.0,
            min_lat: 0.0,
            spacing: 1.0,
            nx: 3,
            ny: 1,
        };
        let table = [7, NONE, 3];
        // Centre of the empty middle cell: 0.5 from both neighbours.
        assert_eq!(nearest(&spec, 1.0, &table, 0.5, 1.5), Some(3));
        assert_eq!(nearest(&spec, 1.0, &table, 0.5, 1.4), Some(7));
    }

    #[test]
    fn ring_search_agrees_with_brute_force() {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..50 {
            let spec = GridSpec {
                min_lon: 13.0,
                min_lat: 42.0,
                spacing: rng.random_range(0.05..0.7),
                nx: rng.random_range(1..30),
                ny: rng.random_range(1..30),
            };
            let table: Vec<u32> = (0..spec.nx * spec.ny)
                .map(|k| if rng.random_bool(0.1) { k as u32 } else { NONE })
                .collect();
            let kx = 0.7;
            for _ in 0..100 {
                let lat = rng.random_range(40.0..48.0);
                let lon = rng.random_range(11.0..22.0);
                let brute = (0..spec.nx * spec.ny)
                    .filter(|&k| table[k] != NONE)
                    .map(|k| {
                        let b = spec.cell_bounds(k / spec.ny, k % spec.ny);
                        let dx = (b.min_lon - lon).max(lon - b.max_lon).max(0.0) * kx;
                        let dy = (b.min_lat - lat).max(lat - b.max_lat).max(0.0);
                        (dx * dx + dy * dy, table[k])
                    })
                    .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
                    .map(|(_, id)| id);
                assert_eq!(nearest(&spec, kx, &table, lat, lon), brute);
            }
        }
    }
}
