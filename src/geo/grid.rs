//! The square lat/lon grid over a boundary and the land part of each cell.
//!
//! Cells are `spacing`° squares with edges at `min_lon + i·spacing` and `min_lat + j·spacing`
//! from the boundary's bounding-box corner; a cell is kept when the boundary covers part of it
//! with positive area. Kept cells are numbered densely in (column, row) order, columns outer.
//! The land of each cell comes from clipping every ring to row strips and then to cells
//! (see `clip.rs`), so the work is about vertices × (rows + columns) rather than per cell.

use geo::{MultiPolygon, Polygon};
use serde::{Deserialize, Serialize};

use super::boundary::{BBox, Boundary};
use super::clip::{Axis, clip_slab};
use super::error::GeoError;
use super::ring::{closed_line_string, twice_signed_area};

/// Land area, relative to the cell area, at or below which an intersection counts as empty.
///
/// Exact arithmetic would need no tolerance ("area > 0"); this one only absorbs floating-point
/// noise. What it must reject are the zero-area pieces clipping leaves behind: a concave ring
/// clipped to a row strip is joined by bridges along the strip edge, and clipping those bridges
/// to the columns they cross yields degenerate rings in cells without land. On Natural Earth
/// Croatia their computed area is exactly 0 (keeping them would give 37/63/83/134/256 cells
/// instead of 36/58/82/131/236), while the smallest real land in a kept cell is ~3e-5 of the
/// cell at 0.1°. 1e-12 sits far from both, so the kept set does not depend on its exact value.
pub const AREA_TOLERANCE: f64 = 1e-12;

/// Where the grid lies: its south-west corner, cell size and extent.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GridSpec {
    /// Western edge of column 0 (the boundary bbox's west edge).
    pub min_lon: f64,
    /// Southern edge of row 0 (the boundary bbox's south edge).
    pub min_lat: f64,
    /// Cell size in degrees, along both axes.
    pub spacing: f64,
    /// Number of columns.
    pub nx: usize,
    /// Number of rows.
    pub ny: usize,
}

/// Grids beyond this many squares are refused before anything runs: a million squares is
/// about 1 s and 200 MB of class building (a finer grid over Croatia, 0.001°, was 34 s and
/// 5 GB), and more classes than any classifier head here is trained for.
pub const MAX_GRID_CELLS: usize = 1_000_000;

impl GridSpec {
    /// The grid of `spacing`° cells anchored at the south-west corner of `bbox` with just
    /// enough columns and rows to cover it.
    pub fn covering(bbox: BBox, spacing: f64) -> Result<Self, GeoError> {
        let invalid = |reason: String| GeoError::InvalidSpacing { spacing, reason };
        if !spacing.is_finite() || spacing <= 0.0 {
            return Err(invalid("it must be a positive number of degrees".into()));
        }
        let too_many = |squares: f64| {
            invalid(format!(
                "it makes {squares:.0} grid squares over the boundary's extent \
                 ({:.2}° × {:.2}°), more than the limit of {MAX_GRID_CELLS}; use a larger spacing",
                bbox.max_lon - bbox.min_lon,
                bbox.max_lat - bbox.min_lat
            ))
        };
        let cols = ((bbox.max_lon - bbox.min_lon) / spacing).ceil().max(1.0);
        let rows = ((bbox.max_lat - bbox.min_lat) / spacing).ceil().max(1.0);
        if cols * rows > MAX_GRID_CELLS as f64 {
            return Err(too_many(cols * rows));
        }
        let count = |lo: f64, hi: f64| -> Result<usize, GeoError> {
            let n = ((hi - lo) / spacing).ceil().max(1.0);
            let mut n = n as usize;
            // Division and multiplication round differently: make sure the last edge really
            // reaches the bbox so no land falls off the grid.
            while lo + n as f64 * spacing < hi {
                n += 1;
            }
            Ok(n)
        };
        let nx = count(bbox.min_lon, bbox.max_lon)?;
        let ny = count(bbox.min_lat, bbox.max_lat)?;
        if nx.saturating_mul(ny) > MAX_GRID_CELLS {
            return Err(too_many(nx.saturating_mul(ny) as f64));
        }
        Ok(Self {
            min_lon: bbox.min_lon,
            min_lat: bbox.min_lat,
            spacing,
            nx,
            ny,
        })
    }

    /// Longitude of the western edge of column `col` (`col == nx` gives the eastern edge).
    pub fn col_edge(&self, col: usize) -> f64 {
        self.min_lon + col as f64 * self.spacing
    }

    /// Latitude of the southern edge of row `row` (`row == ny` gives the northern edge).
    pub fn row_edge(&self, row: usize) -> f64 {
        self.min_lat + row as f64 * self.spacing
    }

    /// Bounds of cell (`col`, `row`).
    pub fn cell_bounds(&self, col: usize, row: usize) -> BBox {
        BBox {
            min_lon: self.col_edge(col),
            min_lat: self.row_edge(row),
            max_lon: self.col_edge(col + 1),
            max_lat: self.row_edge(row + 1),
        }
    }

    /// Column and row of the cell containing the point, or `None` outside the grid.
    ///
    /// Cells are half-open, `[west, east) × [south, north)` by `floor`: a point exactly on an
    /// edge between two cells goes to the cell east of / north of it (up to the rounding of
    /// `(lon - min_lon) / spacing`). Points on the grid's outer east or north edge are outside.
    pub fn locate(&self, lat: f64, lon: f64) -> Option<(usize, usize)> {
        let fx = ((lon - self.min_lon) / self.spacing).floor();
        let fy = ((lat - self.min_lat) / self.spacing).floor();
        // `!(x >= 0)` also rejects NaN.
        if !(fx >= 0.0 && fy >= 0.0) || fx >= self.nx as f64 || fy >= self.ny as f64 {
            return None;
        }
        Some((fx as usize, fy as usize))
    }

    /// Column/row range of cells whose closed bounds may touch `[lo, hi]` along `axis`,
    /// padded by one so that callers can filter exactly.
    pub(crate) fn span(&self, axis: Axis, lo: f64, hi: f64) -> (usize, usize) {
        let (origin, n) = match axis {
            Axis::X => (self.min_lon, self.nx),
            Axis::Y => (self.min_lat, self.ny),
        };
        let idx = |v: f64| ((v - origin) / self.spacing).floor();
        let a = (idx(lo) - 1.0).max(0.0);
        let b = (idx(hi) + 1.0).min(n as f64 - 1.0).max(0.0);
        (a as usize, (b as usize).max(a as usize))
    }
}

/// A kept cell: its position, bounds and the boundary's land inside it.
#[derive(Clone, Debug)]
pub struct GridCell {
    /// Column (longitude index).
    pub col: usize,
    /// Row (latitude index).
    pub row: usize,
    /// Cell bounds in degrees.
    pub bounds: BBox,
    /// Area of land in the cell, in square degrees (planar lon/lat).
    pub land_area_deg2: f64,
    /// The land in the cell. Pieces of one polygon that the clip splits apart stay one ring,
    /// joined by zero-width bridges along the cell edge: right for areas and drawing, not a
    /// valid OGC polygon.
    pub land: MultiPolygon<f64>,
}

/// The grid over a boundary and its kept cells, in cell-index order.
#[derive(Clone, Debug)]
pub struct Grid {
    /// Grid placement.
    pub spec: GridSpec,
    /// Kept cells; the position in this vector is the cell index.
    pub cells: Vec<GridCell>,
}

/// A ring clipped to one cell, tagged with where it came from.
struct Piece {
    slot: usize,
    polygon: usize,
    is_exterior: bool,
    ring: Vec<(f64, f64)>,
}

/// Builds the grid of `spacing`° cells over `boundary` and keeps every cell whose land area
/// exceeds [`AREA_TOLERANCE`] × cell area, in (column, row) order with columns outer.
pub fn land_grid(boundary: &Boundary, spacing: f64) -> Result<Grid, GeoError> {
    let spec = GridSpec::covering(boundary.bbox(), spacing)?;
    let slot = |col: usize, row: usize| col * spec.ny + row;
    let min_area = AREA_TOLERANCE * spacing * spacing;

    // Per slot: net land area, and clipped pieces as (polygon, is_exterior, ring).
    let mut area = vec![0.0f64; spec.nx * spec.ny];
    let mut pieces: Vec<Piece> = Vec::new();
    let (mut tmp, mut strip, mut piece) = (Vec::new(), Vec::new(), Vec::new());
    for (polygon, is_exterior, ring) in boundary.rings() {
        let (r0, r1) = spec.span(Axis::Y, ring.bbox[1], ring.bbox[3]);
        for row in r0..=r1 {
            clip_slab(
                &ring.pts,
                Axis::Y,
                spec.row_edge(row),
                spec.row_edge(row + 1),
                &mut tmp,
                &mut strip,
            );
            if strip.len() < 3 {
                continue;
            }
            let (lo, hi) = strip
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                    (lo.min(p.0), hi.max(p.0))
                });
            let (c0, c1) = spec.span(Axis::X, lo, hi);
            for col in c0..=c1 {
                clip_slab(
                    &strip,
                    Axis::X,
                    spec.col_edge(col),
                    spec.col_edge(col + 1),
                    &mut tmp,
                    &mut piece,
                );
                if piece.len() < 3 {
                    continue;
                }
                let origin = (spec.col_edge(col), spec.row_edge(row));
                let a = 0.5 * twice_signed_area(&piece, origin).abs();
                if a <= min_area {
                    continue;
                }
                area[slot(col, row)] += if is_exterior { a } else { -a };
                pieces.push(Piece {
                    slot: slot(col, row),
                    polygon,
                    is_exterior,
                    ring: piece.clone(),
                });
            }
        }
    }

    // Sorted by slot, then polygon, exterior first: each exterior piece starts a polygon and
    // the hole pieces that follow it belong to it.
    pieces.sort_by_key(|p| (p.slot, p.polygon, !p.is_exterior));
    let mut pieces = pieces.into_iter().peekable();
    let mut cells = Vec::new();
    for col in 0..spec.nx {
        for row in 0..spec.ny {
            let s = slot(col, row);
            let mut land: Vec<(usize, Polygon<f64>)> = Vec::new();
            while let Some(piece) = pieces.next_if(|p| p.slot == s) {
                let ring = closed_line_string(&piece.ring);
                if piece.is_exterior {
                    land.push((piece.polygon, Polygon::new(ring, Vec::new())));
                } else if let Some((_, current)) =
                    land.last_mut().filter(|(p, _)| *p == piece.polygon)
                {
                    current.interiors_push(ring);
                }
            }
            if area[s] > min_area {
                cells.push(GridCell {
                    col,
                    row,
                    bounds: spec.cell_bounds(col, row),
                    land_area_deg2: area[s],
                    land: MultiPolygon(land.into_iter().map(|(_, p)| p).collect()),
                });
            }
        }
    }
    Ok(Grid { spec, cells })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geo::hr_geojson;
    use crate::geo::ring::{open_ring, twice_signed_area};

    /// Natural Earth 1:10m Croatia: (spacing, kept cells) from the reference implementation.
    const HR_COUNTS: [(f64, usize); 5] = [(0.7, 36), (0.5, 58), (0.4, 82), (0.3, 131), (0.21, 236)];

    fn counts(b: &Boundary) -> Vec<(f64, usize)> {
        HR_COUNTS
            .iter()
            .map(|&(s, _)| (s, land_grid(b, s).map(|g| g.cells.len()).unwrap_or(0)))
            .collect()
    }

    #[test]
    fn world_data_croatia_gives_the_reference_cell_counts() {
        let hr = Boundary::from_iso("HR").expect("HR is embedded");
        assert_eq!(counts(&hr), HR_COUNTS);
    }

    #[test]
    fn geojson_croatia_gives_the_reference_cell_counts() {
        let Some(path) = hr_geojson() else {
            return;
        };
        let hr = Boundary::from_geojson_file(path).expect("reference file parses");
        assert_eq!(counts(&hr), HR_COUNTS);
    }

    #[test]
    fn cells_are_ordered_by_column_then_row() {
        let hr = Boundary::from_iso("HR").expect("HR is embedded");
        let g = land_grid(&hr, 0.3).expect("valid spacing");
        assert!(
            g.cells
                .windows(2)
                .all(|w| (w[0].col, w[0].row) < (w[1].col, w[1].row))
        );
        assert!(
            g.cells
                .iter()
                .all(|c| c.col < g.spec.nx && c.row < g.spec.ny)
        );
        assert!(g.spec.col_edge(g.spec.nx) >= hr.bbox().max_lon);
        assert!(g.spec.row_edge(g.spec.ny) >= hr.bbox().max_lat);
    }

    #[test]
    fn cell_land_areas_add_up_to_the_boundary_area() {
        let hr = Boundary::from_iso("HR").expect("HR is embedded");
        let total: f64 = hr
            .shape()
            .0
            .iter()
            .map(|p| {
                let ring_area = |ls| {
                    let r = open_ring(ls);
                    0.5 * twice_signed_area(&r, r[0]).abs()
                };
                ring_area(p.exterior()) - p.interiors().iter().map(ring_area).sum::<f64>()
            })
            .sum();
        for s in [0.5, 0.1] {
            let g = land_grid(&hr, s).expect("valid spacing");
            let sum: f64 = g.cells.iter().map(|c| c.land_area_deg2).sum();
            assert!((sum - total).abs() < 1e-9 * total, "{s}: {sum} vs {total}");
        }
    }

    #[test]
    fn cell_land_stays_inside_the_cell() {
        let hr = Boundary::from_iso("HR").expect("HR is embedded");
        let g = land_grid(&hr, 0.21).expect("valid spacing");
        for c in &g.cells {
            assert!(!c.land.0.is_empty());
            for p in &c.land.0 {
                for q in &p.exterior().0 {
                    assert!(c.bounds.contains(q.y, q.x), "{q:?} outside {:?}", c.bounds);
                }
            }
        }
    }

    #[test]
    fn points_on_an_edge_go_east_and_north() {
        let spec = GridSpec {
            min_lon: 10.0,
            min_lat: 40.0,
            spacing: 0.5,
            nx: 4,
            ny: 3,
        };
        assert_eq!(spec.locate(40.5, 10.5), Some((1, 1)));
        assert_eq!(spec.locate(40.0, 10.0), Some((0, 0)));
        assert_eq!(spec.locate(40.49, 10.99), Some((1, 0)));
        assert_eq!(spec.locate(41.5, 10.0), None, "outer north edge is outside");
        assert_eq!(spec.locate(39.99, 10.0), None);
        assert_eq!(spec.locate(f64::NAN, 10.0), None);
    }

    #[test]
    fn unusable_spacings_are_rejected() {
        let hr = Boundary::from_iso("HR").expect("HR is embedded");
        for s in [0.0, -0.5, f64::NAN, f64::INFINITY, 1e-9] {
            match land_grid(&hr, s) {
                Err(GeoError::InvalidSpacing { .. }) => {}
                other => panic!("{s}: expected InvalidSpacing, got {other:?}"),
            }
        }
    }
}
