//! From labelled points to geolocation classes.
//!
//! The boundary is cut into cells by one of three schemes (`tessellation.rs`: a square grid,
//! a quadtree over it, or k-means clusters with Voronoi cells). Every cell that receives at
//! least `min_locations` training points becomes a class; class ids are dense and follow the
//! cell index. Each point gets a cell (the one it falls in, else the nearest: real
//! street-view points lie a few km outside the coarse 1:10m coastlines and borders) and a
//! class (its cell's, else the nearest class cell's: cells holding only validation/test
//! points, or too few training points, are not classes). Centroids and points are projected
//! once, and the min-max scaling for regression targets is fitted on training points only,
//! like everything else derived from data here: no validation/test leakage.

use geo::MultiPolygon;
use serde::{Deserialize, Serialize};

use super::boundary::{BBox, Boundary, LatLon};
use super::centroids::CentroidMode;
use super::error::GeoError;
use super::projection::Projection;
use super::tessellation::{CellSpec, tile};

/// A labelled point to be assigned a class.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClassPoint {
    /// Latitude in degrees.
    pub lat: f64,
    /// Longitude in degrees.
    pub lon: f64,
    /// Whether the point belongs to the training split; only these shape classes, weighted
    /// centroids and the scaling.
    pub is_train: bool,
}

/// Min-max scaling of projected coordinates to `[0, 1]`, fitted on training points.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MinMaxScaling {
    /// Smallest x.
    pub x_min: f64,
    /// Largest x.
    pub x_max: f64,
    /// Smallest y.
    pub y_min: f64,
    /// Largest y.
    pub y_max: f64,
}

impl MinMaxScaling {
    /// Fits the extent of `xy`; `None` when it is empty.
    pub fn fit(xy: impl IntoIterator<Item = (f64, f64)>) -> Option<Self> {
        xy.into_iter().fold(None, |acc, (x, y)| {
            Some(match acc {
                None => Self {
                    x_min: x,
                    x_max: x,
                    y_min: y,
                    y_max: y,
                },
                Some(s) => Self {
                    x_min: s.x_min.min(x),
                    x_max: s.x_max.max(x),
                    y_min: s.y_min.min(y),
                    y_max: s.y_max.max(y),
                },
            })
        })
    }

    // A zero range (one training point, or all on a line) scales by 1 instead of dividing by
    // zero, as scikit-learn's MinMaxScaler does.
    fn ranges(&self) -> (f64, f64) {
        let r = |lo: f64, hi: f64| if hi > lo { hi - lo } else { 1.0 };
        (r(self.x_min, self.x_max), r(self.y_min, self.y_max))
    }

    /// Projected `(x, y)` to scaled coordinates (training points land in `[0, 1]`).
    pub fn scale(&self, (x, y): (f64, f64)) -> (f64, f64) {
        let (rx, ry) = self.ranges();
        ((x - self.x_min) / rx, (y - self.y_min) / ry)
    }

    /// Scaled coordinates back to projected `(x, y)`.
    pub fn unscale(&self, (sx, sy): (f64, f64)) -> (f64, f64) {
        let (rx, ry) = self.ranges();
        (self.x_min + sx * rx, self.y_min + sy * ry)
    }
}

/// A cell with its centroids and, when it holds enough training points, its class.
#[derive(Clone, Debug)]
pub struct Cell {
    /// Cell index (position in [`ClassTable::cells`]).
    pub index: usize,
    /// Column (longitude index) at the cell's own size, counted from the grid's west edge
    /// (grid and quadtree; `None` for clusters).
    pub col: Option<usize>,
    /// Row (latitude index) at the cell's own size (grid and quadtree).
    pub row: Option<usize>,
    /// Bounds of [`Cell::outline`] in degrees.
    pub bounds: BBox,
    /// The cell's shape, `(lon, lat)`, open and counter-clockwise: the square, or the Voronoi
    /// region (its edges followed in lon/lat). Points inside it belong to the cell.
    pub outline: Vec<(f64, f64)>,
    /// Land area inside the cell, in square degrees.
    pub land_area_deg2: f64,
    /// Centre of the square; for clusters, the centroid of the cell's land.
    pub geometric: LatLon,
    /// The geometric centroid if on land, else the nearest land point inside the cell.
    pub clipped: LatLon,
    /// Whether `clipped` is the centre itself.
    pub is_true_centroid: bool,
    /// Mean of the cell's training points; `None` without any.
    pub weighted: Option<LatLon>,
    /// Number of training points assigned to the cell.
    pub n_train: usize,
    /// Number of all points assigned to the cell.
    pub n_points: usize,
    /// Class id, when the cell holds at least `min_locations` training points.
    pub class: Option<usize>,
    /// `geometric` projected.
    pub geometric_xy: (f64, f64),
    /// `clipped` projected.
    pub clipped_xy: (f64, f64),
    /// `weighted` projected.
    pub weighted_xy: Option<(f64, f64)>,
    /// The boundary's land inside the cell, for maps.
    pub land: MultiPolygon<f64>,
}

impl Cell {
    /// The centroid selected by `mode` (`None` only for `Weighted` without training points).
    pub fn centroid(&self, mode: CentroidMode) -> Option<LatLon> {
        match mode {
            CentroidMode::Geometric => Some(self.geometric),
            CentroidMode::Clipped => Some(self.clipped),
            CentroidMode::Weighted => self.weighted,
        }
    }

    /// The projected centroid selected by `mode`.
    pub fn centroid_xy(&self, mode: CentroidMode) -> Option<(f64, f64)> {
        match mode {
            CentroidMode::Geometric => Some(self.geometric_xy),
            CentroidMode::Clipped => Some(self.clipped_xy),
            CentroidMode::Weighted => self.weighted_xy,
        }
    }
}

/// Where one input point went.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointAssignment {
    /// Cell index.
    pub cell: usize,
    /// Class id.
    pub class: usize,
    /// The point lies in no kept cell and was given the nearest one.
    pub moved: bool,
    /// The point's cell is not a class and the class is the nearest class cell's.
    pub class_from_neighbour: bool,
    /// The point projected.
    pub xy: (f64, f64),
}

/// Classes, cells and point assignments for one boundary, cell spec, split and projection.
#[derive(Clone, Debug)]
pub struct ClassTable {
    /// How the cells were made.
    pub spec: CellSpec,
    /// Centroid a class is predicted at.
    pub mode: CentroidMode,
    /// CRS of all `*_xy` coordinates.
    pub crs: String,
    /// Kept cells in cell-index order.
    pub cells: Vec<Cell>,
    /// Class id → cell index; increasing.
    pub class_cells: Vec<usize>,
    /// One entry per input point, in input order.
    pub points: Vec<PointAssignment>,
    /// Scaling fitted on the training points' projected coordinates.
    pub scaling: MinMaxScaling,
    /// Points outside every cell, moved to the nearest one.
    pub moved: usize,
    /// Points whose cell is not a class, given the nearest class.
    pub without_class: usize,
}

impl ClassTable {
    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_cells.len()
    }

    /// The cell of class `class`; panics when `class >= num_classes()` like slice indexing.
    pub fn class_cell(&self, class: usize) -> &Cell {
        &self.cells[self.class_cells[class]]
    }

    /// Prediction centroid of every class, by [`ClassTable::mode`].
    pub fn class_centroids(&self) -> Vec<LatLon> {
        self.class_cells
            .iter()
            .map(|&c| {
                let cell = &self.cells[c];
                // Always Some: a class has training points, hence a weighted centroid.
                cell.centroid(self.mode).unwrap_or(cell.geometric)
            })
            .collect()
    }

    /// Projected prediction centroid of every class, by [`ClassTable::mode`].
    pub fn class_centroids_xy(&self) -> Vec<(f64, f64)> {
        self.class_cells
            .iter()
            .map(|&c| {
                let cell = &self.cells[c];
                cell.centroid_xy(self.mode).unwrap_or(cell.geometric_xy)
            })
            .collect()
    }
}

/// Builds the classes for `points` over `boundary` with the cells of `spec`, predicting at
/// the centroid chosen by `mode` and projecting with `projection`.
///
/// On the grid, points are assigned by grid arithmetic: a point exactly on an edge between
/// two cells goes to the cell east of / north of it (see [`super::GridSpec::locate`]). Fewer
/// than two classes is not an error here; the caller decides what it can train on.
///
/// # Errors
/// Invalid spacing, a non-finite point coordinate, no training point, no cell, no cell with
/// `min_locations` training points, clusters that cannot be made, or a projection failure.
pub fn create_classes(
    boundary: &Boundary,
    spec: &CellSpec,
    points: &[ClassPoint],
    mode: CentroidMode,
    projection: &dyn Projection,
) -> Result<ClassTable, GeoError> {
    if let Some((index, p)) = points
        .iter()
        .enumerate()
        .find(|(_, p)| !(p.lat.is_finite() && p.lon.is_finite()))
    {
        return Err(GeoError::InvalidPoint {
            index,
            lat: p.lat,
            lon: p.lon,
        });
    }
    if !points.iter().any(|p| p.is_train) {
        return Err(GeoError::NoTrainPoints);
    }
    let mut points_xy: Vec<(f64, f64)> = points.iter().map(|p| (p.lon, p.lat)).collect();
    projection.forward(&mut points_xy)?;
    let tiling = tile(boundary, spec.scheme, points, &points_xy, projection)?;
    let kx = boundary.local_x_scale();

    // Training statistics per cell; classes are the cells with enough training points.
    let ncells = tiling.cells.len();
    let mut n_train = vec![0usize; ncells];
    let mut n_points = vec![0usize; ncells];
    let mut sums = vec![(0.0f64, 0.0f64); ncells];
    for (p, &(k, _)) in points.iter().zip(&tiling.assigned) {
        n_points[k] += 1;
        if p.is_train {
            n_train[k] += 1;
            sums[k].0 += p.lat;
            sums[k].1 += p.lon;
        }
    }
    let min_locations = spec.min_locations.max(1);
    let is_class: Vec<bool> = n_train.iter().map(|&n| n >= min_locations).collect();
    let mut class_of_cell = vec![None; ncells];
    let mut class_cells = Vec::new();
    for k in (0..ncells).filter(|&k| is_class[k]) {
        class_of_cell[k] = Some(class_cells.len());
        class_cells.push(k);
    }
    if class_cells.is_empty() {
        return Err(GeoError::NoClasses { min_locations });
    }

    // Class of each point: its cell's, else the nearest class cell's.
    let wanted: Vec<bool> = tiling
        .assigned
        .iter()
        .map(|&(k, _)| class_of_cell[k].is_none())
        .collect();
    let neighbour = tiling.nearest_among(&is_class, points, &points_xy, kx, &wanted);

    let weighted: Vec<Option<LatLon>> = (0..ncells)
        .map(|k| {
            (n_train[k] > 0).then(|| LatLon {
                lat: sums[k].0 / n_train[k] as f64,
                lon: sums[k].1 / n_train[k] as f64,
            })
        })
        .collect();

    // One projection call for all centroids: (lon, lat) in, (x, y) out.
    let mut xy: Vec<(f64, f64)> = Vec::with_capacity(3 * ncells);
    xy.extend(
        tiling
            .cells
            .iter()
            .map(|c| (c.geometric.lon, c.geometric.lat)),
    );
    xy.extend(tiling.cells.iter().map(|c| (c.clipped.lon, c.clipped.lat)));
    xy.extend(weighted.iter().flatten().map(|c| (c.lon, c.lat)));
    projection.forward(&mut xy)?;
    let (geometric_xy, rest) = xy.split_at(ncells);
    let (clipped_xy, weighted_xy) = rest.split_at(ncells);

    let scaling = MinMaxScaling::fit(
        points
            .iter()
            .zip(&points_xy)
            .filter(|(p, _)| p.is_train)
            .map(|(_, &q)| q),
    )
    .ok_or(GeoError::NoTrainPoints)?;

    let mut moved = 0;
    let mut without_class = 0;
    let mut assignments = Vec::with_capacity(points.len());
    for ((&(cell, was_moved), near), &q) in tiling.assigned.iter().zip(&neighbour).zip(&points_xy) {
        let (class, from_neighbour) = match class_of_cell[cell] {
            Some(class) => (class, false),
            // Some class exists, so the search finds one.
            None => (near.and_then(|k| class_of_cell[k]).unwrap_or(0), true),
        };
        moved += usize::from(was_moved);
        without_class += usize::from(from_neighbour);
        assignments.push(PointAssignment {
            cell,
            class,
            moved: was_moved,
            class_from_neighbour: from_neighbour,
            xy: q,
        });
    }

    let mut weighted_xy = weighted_xy.iter();
    let cells = tiling
        .cells
        .into_iter()
        .enumerate()
        .map(|(k, c)| Cell {
            index: k,
            col: c.col,
            row: c.row,
            bounds: c.bounds,
            outline: c.outline,
            land_area_deg2: c.land_area_deg2,
            geometric: c.geometric,
            clipped: c.clipped,
            is_true_centroid: c.is_true_centroid,
            weighted: weighted[k],
            n_train: n_train[k],
            n_points: n_points[k],
            class: class_of_cell[k],
            geometric_xy: geometric_xy[k],
            clipped_xy: clipped_xy[k],
            weighted_xy: weighted[k].and_then(|_| weighted_xy.next().copied()),
            land: c.land,
        })
        .collect();

    Ok(ClassTable {
        spec: *spec,
        mode,
        crs: projection.crs().to_owned(),
        cells,
        class_cells,
        points: assignments,
        scaling,
        moved,
        without_class,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use geo::{LineString, Polygon};

    use super::*;
    use crate::geo::projection::projection;

    pub(crate) fn poly(coords: &[(f64, f64)]) -> Polygon<f64> {
        Polygon::new(LineString::from(coords.to_vec()), vec![])
    }

    /// 2°×2° square at (15–17 E, 44–46 N): with 0.5° spacing, a 4×4 grid, every cell kept.
    pub(crate) fn square() -> Boundary {
        Boundary::from_polygons(
            "square",
            [poly(&[
                (15.0, 44.0),
                (17.0, 44.0),
                (17.0, 46.0),
                (15.0, 46.0),
            ])],
        )
        .expect("valid polygon")
    }

    /// The square without its north-east quarter: cells with col ≥ 2 and row ≥ 2 are not kept.
    pub(crate) fn ell() -> Boundary {
        Boundary::from_polygons(
            "ell",
            [poly(&[
                (15.0, 44.0),
                (17.0, 44.0),
                (17.0, 45.0),
                (16.0, 45.0),
                (16.0, 46.0),
                (15.0, 46.0),
            ])],
        )
        .expect("valid polygon")
    }

    pub(crate) fn pt(lat: f64, lon: f64, is_train: bool) -> ClassPoint {
        ClassPoint { lat, lon, is_train }
    }

    fn run(b: &Boundary, points: &[ClassPoint], mode: CentroidMode) -> ClassTable {
        let p = projection("EPSG:3766").expect("known CRS");
        create_classes(b, &CellSpec::grid(0.5), points, mode, p.as_ref()).expect("valid input")
    }

    fn cell_at(t: &ClassTable, col: usize, row: usize) -> &Cell {
        t.cells
            .iter()
            .find(|c| (c.col, c.row) == (Some(col), Some(row)))
            .expect("kept cell")
    }

    #[test]
    fn weighted_centroids_use_train_points_only() {
        let points = [
            pt(44.1, 15.1, true),
            pt(44.3, 15.3, true),
            pt(44.49, 15.49, false),
        ];
        let t = run(&square(), &points, CentroidMode::Weighted);
        let w = cell_at(&t, 0, 0).weighted.expect("cell has train points");
        assert!(
            (w.lat - 44.2).abs() < 1e-12 && (w.lon - 15.2).abs() < 1e-12,
            "{w:?}"
        );
        assert_eq!(t.class_centroids(), vec![w]);
    }

    #[test]
    fn a_cell_with_only_val_points_is_not_a_class_and_its_points_get_the_nearest_class() {
        let points = [
            pt(44.2, 15.2, true),
            pt(45.8, 16.8, true),
            pt(44.2, 15.7, false),
        ];
        let t = run(&square(), &points, CentroidMode::Geometric);
        let val_cell = cell_at(&t, 1, 0);
        assert_eq!(val_cell.class, None);
        assert_eq!(val_cell.n_points, 1);
        assert_eq!(t.points[2].cell, val_cell.index);
        assert_eq!(t.points[2].class, cell_at(&t, 0, 0).class.expect("a class"));
        assert!(t.points[2].class_from_neighbour);
        assert_eq!(t.without_class, 1);
        assert_eq!(t.num_classes(), 2);
    }

    #[test]
    fn a_point_outside_the_boundary_is_moved_to_the_nearest_kept_cell_and_counted() {
        // In the missing quarter: 0.9° of longitude (≈0.64° in the local plane at 45° N) from
        // cell (1, 3), 0.9° of latitude from cell (3, 1). And one south of the whole grid.
        let points = [
            pt(44.2, 15.2, true),
            pt(45.9, 16.9, false),
            pt(43.0, 15.2, true),
        ];
        let t = run(&ell(), &points, CentroidMode::Clipped);
        assert!(
            t.cells
                .iter()
                .all(|c| c.col.unwrap() < 2 || c.row.unwrap() < 2),
            "the missing quarter is not kept"
        );
        assert_eq!(t.points[1].cell, cell_at(&t, 1, 3).index);
        assert!(t.points[1].moved);
        assert_eq!(t.points[2].cell, cell_at(&t, 0, 0).index);
        assert!(t.points[2].moved && !t.points[0].moved);
        assert_eq!(t.moved, 2);
    }

    #[test]
    fn class_ids_are_dense_and_ordered_by_cell_index() {
        let points: Vec<ClassPoint> = [
            (45.7, 16.7),
            (44.2, 15.2),
            (45.2, 15.7),
            (44.7, 16.2),
            (45.8, 15.1),
        ]
        .iter()
        .map(|&(lat, lon)| pt(lat, lon, true))
        .collect();
        let t = run(&square(), &points, CentroidMode::Geometric);
        assert_eq!(t.num_classes(), 5);
        assert!(t.class_cells.windows(2).all(|w| w[0] < w[1]));
        for (class, &cell) in t.class_cells.iter().enumerate() {
            assert_eq!(t.cells[cell].class, Some(class));
        }
        let with_class: Vec<usize> = t.cells.iter().filter_map(|c| c.class).collect();
        assert_eq!(with_class, (0..5).collect::<Vec<_>>());
        assert!(t.cells.iter().enumerate().all(|(i, c)| c.index == i));
        assert!(
            t.cells
                .windows(2)
                .all(|w| (w[0].col, w[0].row) < (w[1].col, w[1].row))
        );
    }

    #[test]
    fn clipped_centroid_of_an_off_land_cell_lies_on_land_and_inside_the_cell() {
        let hr = Boundary::from_iso("HR").expect("HR is embedded");
        let t = run(&hr, &[pt(45.815, 15.9819, true)], CentroidMode::Clipped);
        let kx = hr.local_x_scale();
        let off_land: Vec<&Cell> = t.cells.iter().filter(|c| !c.is_true_centroid).collect();
        assert!(
            off_land.len() > 5,
            "coastal and border cells have off-land centres"
        );
        for c in off_land {
            let (g, p) = (c.geometric, c.clipped);
            assert!(!hr.contains(g.lat, g.lon));
            assert!(
                c.bounds.contains(p.lat, p.lon),
                "{p:?} outside {:?}",
                c.bounds
            );
            let snapped = hr.nearest_point(p.lat, p.lon);
            assert!(
                (snapped.0 - p.lat).abs() < 1e-9 && (snapped.1 - p.lon).abs() < 1e-9,
                "{p:?} not on land"
            );
            // No sampled land point of the cell is closer to the centre.
            let d = |lat: f64, lon: f64| ((lon - g.lon) * kx).hypot(lat - g.lat);
            let best = d(p.lat, p.lon);
            for i in 0..=40 {
                for j in 0..=40 {
                    let lon = c.bounds.min_lon + 0.5 * i as f64 / 40.0;
                    let lat = c.bounds.min_lat + 0.5 * j as f64 / 40.0;
                    if hr.contains(lat, lon) {
                        assert!(d(lat, lon) >= best - 1e-12, "({lat}, {lon}) beats {p:?}");
                    }
                }
            }
        }
        for c in t.cells.iter().filter(|c| c.is_true_centroid) {
            assert_eq!(c.clipped, c.geometric);
        }
    }

    #[test]
    fn geometric_centroid_is_the_square_centre() {
        let t = run(&ell(), &[pt(44.2, 15.2, true)], CentroidMode::Geometric);
        for c in &t.cells {
            let b = c.bounds;
            assert!((c.geometric.lat - (b.min_lat + 0.25)).abs() < 1e-12);
            assert!((c.geometric.lon - (b.min_lon + 0.25)).abs() < 1e-12);
            assert!(
                (b.max_lon - b.min_lon - 0.5).abs() < 1e-12
                    && (b.max_lat - b.min_lat - 0.5).abs() < 1e-12
            );
        }
        assert_eq!(
            t.class_centroids()[0],
            LatLon {
                lat: 44.25,
                lon: 15.25
            }
        );
    }

    #[test]
    fn scaling_is_fitted_on_train_points_only() {
        let points = [
            pt(44.2, 15.2, true),
            pt(45.7, 16.3, true),
            pt(45.9, 16.9, false),
            pt(44.01, 15.01, false),
        ];
        let t = run(&square(), &points, CentroidMode::Clipped);
        let (a, b) = (t.points[0].xy, t.points[1].xy);
        let expected = MinMaxScaling {
            x_min: a.0.min(b.0),
            x_max: a.0.max(b.0),
            y_min: a.1.min(b.1),
            y_max: a.1.max(b.1),
        };
        assert_eq!(t.scaling, expected);
        let s = t.scaling.scale(a);
        assert!((0.0..=1.0).contains(&s.0) && (0.0..=1.0).contains(&s.1));
        let back = t.scaling.unscale(s);
        assert!((back.0 - a.0).abs() < 1e-6 && (back.1 - a.1).abs() < 1e-6);
    }

    #[test]
    fn projected_coordinates_match_the_projection() {
        let points = [pt(44.2, 15.2, true), pt(45.7, 16.3, false)];
        let t = run(&square(), &points, CentroidMode::Weighted);
        let p = projection("EPSG:3766").expect("known CRS");
        let mut xy = [(15.2, 44.2), (16.3, 45.7), (15.25, 44.25)];
        p.forward(&mut xy).expect("inside the CRS area");
        assert_eq!(t.points[0].xy, xy[0]);
        assert_eq!(t.points[1].xy, xy[1]);
        let c = t.class_cell(0);
        assert_eq!(c.geometric_xy, xy[2]);
        assert_eq!(c.weighted_xy, Some(xy[0]));
        assert_eq!(t.class_centroids_xy(), vec![xy[0]]);
        assert_eq!(t.crs, "EPSG:3766");
    }

    #[test]
    fn missing_train_points_and_bad_coordinates_are_errors() {
        let p = projection("EPSG:3766").expect("known CRS");
        let b = square();
        let only_val = [pt(44.2, 15.2, false)];
        let err = create_classes(
            &b,
            &CellSpec::grid(0.5),
            &only_val,
            CentroidMode::Clipped,
            p.as_ref(),
        )
        .err();
        assert!(matches!(err, Some(GeoError::NoTrainPoints)), "{err:?}");
        let nan = [pt(44.2, 15.2, true), pt(f64::NAN, 15.2, false)];
        let err = create_classes(
            &b,
            &CellSpec::grid(0.5),
            &nan,
            CentroidMode::Clipped,
            p.as_ref(),
        )
        .err();
        assert!(
            matches!(err, Some(GeoError::InvalidPoint { index: 1, .. })),
            "{err:?}"
        );
        let train = [pt(44.2, 15.2, true)];
        let err = create_classes(
            &b,
            &CellSpec::grid(-1.0),
            &train,
            CentroidMode::Clipped,
            p.as_ref(),
        )
        .err();
        assert!(
            matches!(err, Some(GeoError::InvalidSpacing { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn a_boundary_without_area_keeps_no_cell() {
        let p = projection("EPSG:3766").expect("known CRS");
        let flat =
            Boundary::from_polygons("flat", [poly(&[(15.0, 44.0), (16.0, 44.5), (17.0, 45.0)])])
                .expect("three distinct vertices");
        let err = create_classes(
            &flat,
            &CellSpec::grid(0.5),
            &[pt(44.5, 16.0, true)],
            CentroidMode::Clipped,
            p.as_ref(),
        )
        .err();
        assert!(matches!(err, Some(GeoError::NoCells { .. })), "{err:?}");
    }
}
