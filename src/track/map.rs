//! Map pictures (PNG): locations over the boundary, and the class cells with their centroids.
//!
//! Longitude is scaled by cos(mid latitude) so shapes are not stretched. No text is drawn
//! (no font is bundled); the legend is fixed and documented in README.md:
//! land is light grey, cells that are classes are outlined in dark blue and cells that
//! are not are outlined in light grey; geometric centroids are grey crosses, clipped
//! centroids red dots, weighted centroids blue dots; locations are small dots, green for
//! train, orange for val, purple for test. On error maps each test location is a dot at
//! its true position joined by a line to its prediction, both coloured from green (0 km)
//! through yellow to red (at or beyond the map's 90th-percentile error).

use std::path::Path;

use geo::{Coord, LineString, MultiPolygon};
use plotters::prelude::*;

/// Colour of a location dot, by split index (train, val, test).
const SPLIT_COLOURS: [RGBColor; 3] = [
    RGBColor(46, 139, 87),
    RGBColor(255, 140, 0),
    RGBColor(128, 0, 128),
];
const LAND: RGBColor = RGBColor(225, 225, 225);
const COAST: RGBColor = RGBColor(120, 120, 120);
const CLASS_CELL: RGBColor = RGBColor(25, 25, 112);
const OTHER_CELL: RGBColor = RGBColor(190, 190, 190);
const WIDTH: u32 = 1200;

/// A point to draw, with its split index (0 train, 1 val, 2 test).
#[derive(Clone, Copy, Debug)]
pub struct MapPoint {
    /// Degrees north.
    pub lat: f64,
    /// Degrees east.
    pub lon: f64,
    /// 0 train, 1 val, 2 test.
    pub split: usize,
}

/// A cell to draw.
#[derive(Clone, Debug)]
pub struct MapCell {
    /// Its outline, (lon, lat), open.
    pub outline: Vec<(f64, f64)>,
    /// Whether it is a class.
    pub is_class: bool,
    /// Geometric centroid (lat, lon).
    pub geometric: (f64, f64),
    /// Clipped centroid (lat, lon).
    pub clipped: (f64, f64),
    /// Weighted centroid (lat, lon), when the cell has train locations.
    pub weighted: Option<(f64, f64)>,
}

/// A prediction to draw: the true position, the predicted one and the error.
#[derive(Clone, Copy, Debug)]
pub struct ErrorLine {
    /// True (lat, lon).
    pub truth: (f64, f64),
    /// Predicted (lat, lon).
    pub predicted: (f64, f64),
    /// Haversine error in km.
    pub error_km: f64,
}

/// Why a map could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("drawing {path}: {message}")]
pub struct MapError {
    path: String,
    message: String,
}

/// Draws `points` over `land`.
///
/// # Errors
/// When the PNG cannot be written.
pub fn draw_locations(
    path: &Path,
    land: &MultiPolygon<f64>,
    points: &[MapPoint],
) -> Result<(), MapError> {
    draw(path, land, &[], points, &[])
}

/// Draws each prediction's error over `land`.
///
/// # Errors
/// When the PNG cannot be written.
pub fn draw_errors(
    path: &Path,
    land: &MultiPolygon<f64>,
    errors: &[ErrorLine],
) -> Result<(), MapError> {
    draw(path, land, &[], &[], errors)
}

/// Green → yellow → red as `t` goes 0 → 1.
fn heat(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let (r, g) = if t < 0.5 {
        (2.0 * t, 1.0)
    } else {
        (1.0, 2.0 * (1.0 - t))
    };
    RGBColor((r * 220.0) as u8, (g * 180.0) as u8, 40)
}

/// Draws the class grid, its centroids and `points` over `land`.
///
/// # Errors
/// When the PNG cannot be written.
pub fn draw_classes(
    path: &Path,
    land: &MultiPolygon<f64>,
    cells: &[MapCell],
    points: &[MapPoint],
) -> Result<(), MapError> {
    draw(path, land, cells, points, &[])
}

fn draw(
    path: &Path,
    land: &MultiPolygon<f64>,
    cells: &[MapCell],
    points: &[MapPoint],
    errors: &[ErrorLine],
) -> Result<(), MapError> {
    let fail = |e: &dyn std::fmt::Display| MapError {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let (mut x0, mut y0, mut x1, mut y1) = (
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    );
    let mut extend = |x: f64, y: f64| {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    };
    for c in land.0.iter().flat_map(|p| p.exterior().coords()) {
        extend(c.x, c.y);
    }
    for &(x, y) in cells.iter().flat_map(|c| &c.outline) {
        extend(x, y);
    }
    for p in points {
        extend(p.lon, p.lat);
    }
    for e in errors {
        extend(e.truth.1, e.truth.0);
        extend(e.predicted.1, e.predicted.0);
    }
    if !(x0.is_finite() && y0.is_finite()) {
        return Err(fail(&"nothing to draw"));
    }
    let pad = 0.02 * (x1 - x0).max(y1 - y0).max(1e-6);
    let (x0, x1, y0, y1) = (x0 - pad, x1 + pad, y0 - pad, y1 + pad);
    let aspect = ((y0 + y1) / 2.0).to_radians().cos().max(0.05);
    let height =
        ((f64::from(WIDTH) * (y1 - y0) / ((x1 - x0) * aspect)).round() as u32).clamp(200, 4000);

    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .margin(10)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| fail(&e))?;
    let ring = |ls: &LineString<f64>| {
        ls.coords()
            .map(|c: &Coord<f64>| (c.x, c.y))
            .collect::<Vec<_>>()
    };
    for poly in &land.0 {
        chart
            .draw_series(std::iter::once(Polygon::new(
                ring(poly.exterior()),
                LAND.filled(),
            )))
            .map_err(|e| fail(&e))?;
        for hole in poly.interiors() {
            chart
                .draw_series(std::iter::once(Polygon::new(ring(hole), WHITE.filled())))
                .map_err(|e| fail(&e))?;
        }
        chart
            .draw_series(std::iter::once(PathElement::new(
                ring(poly.exterior()),
                COAST,
            )))
            .map_err(|e| fail(&e))?;
    }
    for cell in cells {
        let mut outline = cell.outline.clone();
        if let Some(&first) = outline.first() {
            outline.push(first);
        }
        let colour = if cell.is_class {
            CLASS_CELL
        } else {
            OTHER_CELL
        };
        chart
            .draw_series(std::iter::once(PathElement::new(outline, colour)))
            .map_err(|e| fail(&e))?;
    }
    for (i, colour) in SPLIT_COLOURS.iter().enumerate() {
        chart
            .draw_series(
                points
                    .iter()
                    .filter(|p| p.split == i)
                    .map(|p| Circle::new((p.lon, p.lat), 1, colour.filled())),
            )
            .map_err(|e| fail(&e))?;
    }
    chart
        .draw_series(
            cells
                .iter()
                .map(|c| Cross::new((c.geometric.1, c.geometric.0), 4, RGBColor(90, 90, 90))),
        )
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(
            cells
                .iter()
                .map(|c| Circle::new((c.clipped.1, c.clipped.0), 4, RED.filled())),
        )
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(
            cells
                .iter()
                .filter_map(|c| c.weighted)
                .map(|(lat, lon)| Circle::new((lon, lat), 4, BLUE.filled())),
        )
        .map_err(|e| fail(&e))?;
    let mut sorted: Vec<f64> = errors.iter().map(|e| e.error_km).collect();
    sorted.sort_by(f64::total_cmp);
    let scale = sorted
        .get(sorted.len() * 9 / 10)
        .copied()
        .unwrap_or(1.0)
        .max(1e-9);
    for e in errors {
        let colour = heat(e.error_km / scale);
        let (t, p) = ((e.truth.1, e.truth.0), (e.predicted.1, e.predicted.0));
        chart
            .draw_series(std::iter::once(PathElement::new(vec![t, p], colour)))
            .map_err(|e| fail(&e))?;
        chart
            .draw_series(std::iter::once(Circle::new(t, 2, colour.filled())))
            .map_err(|e| fail(&e))?;
    }
    root.present().map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo::polygon;

    #[test]
    fn a_map_is_a_png_with_the_land_aspect() {
        let dir = tempfile::tempdir().unwrap();
        let land = MultiPolygon(vec![
            polygon![(x: 13.0, y: 42.0), (x: 19.0, y: 42.0), (x: 19.0, y: 46.0), (x: 13.0, y: 46.0)],
        ]);
        let path = dir.path().join("m.png");
        let points = [MapPoint {
            lat: 45.0,
            lon: 15.0,
            split: 0,
        }];
        draw_locations(&path, &land, &points).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
