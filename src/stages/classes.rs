//! The classes stage: grid cells over the boundary, their centroids, and each location's
//! cell, class and projected coordinates.
//!
//! Reads: `classes.{boundary, spacing, centroid, crs}`, the boundary's geometry digest, and
//! the dataset stage's `locations.csv`.
//! Writes: `classes.csv` (every kept cell), `rich_static.csv` (Lumen's enriched location
//! table plus `split` and `class`), `scaling.toml` (min-max scaling of projected
//! coordinates, fitted on train locations only) and `class_map.png`.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dataset::{LOCATIONS_FILE, Location, Split, read_locations};
use crate::experiment::{Centroid, Loaded};
use crate::geo::{Boundary, CentroidMode, ClassPoint, ClassTable, create_classes, projection};
use crate::graph::{Input, Outcome, Params, Stage, StageContext, StageError, params_of};
use crate::track::map::{MapCell, MapPoint, draw_classes};

use super::{BOUNDARY_INPUT, split_index};

/// Name of the stage.
pub const NAME: &str = "classes";
/// Every kept cell.
pub const CLASSES_FILE: &str = "classes.csv";
/// Lumen-compatible enriched locations.
pub const RICH_STATIC_FILE: &str = "rich_static.csv";
/// Min-max scaling of projected coordinates.
pub const SCALING_FILE: &str = "scaling.toml";
/// Map of cells and centroids.
pub const MAP_FILE: &str = "class_map.png";

#[derive(Clone, Debug, Serialize)]
struct ClassesParams {
    #[serde(rename = "classes.boundary")]
    boundary: String,
    #[serde(rename = "classes.spacing")]
    spacing: f64,
    #[serde(rename = "classes.centroid")]
    centroid: Centroid,
    #[serde(rename = "classes.crs")]
    crs: String,
}

/// Builds the class table.
pub struct ClassesStage {
    params: ClassesParams,
    boundary: Arc<Boundary>,
}

impl ClassesStage {
    /// The stage for `loaded`.
    pub fn new(loaded: &Loaded, boundary: Arc<Boundary>) -> ClassesStage {
        let c = &loaded.experiment.classes;
        ClassesStage {
            params: ClassesParams {
                boundary: c.boundary.clone(),
                spacing: c.spacing,
                centroid: c.centroid,
                crs: c.crs.trim().to_owned(),
            },
            boundary,
        }
    }
}

/// The geo module's name for a configured centroid kind.
pub fn centroid_mode(c: Centroid) -> CentroidMode {
    match c {
        Centroid::Geometric => CentroidMode::Geometric,
        Centroid::Clipped => CentroidMode::Clipped,
        Centroid::Weighted => CentroidMode::Weighted,
    }
}

impl Stage for ClassesStage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn upstream(&self) -> Vec<&'static str> {
        vec![super::dataset::NAME]
    }

    fn params(&self) -> Params {
        params_of(&self.params)
    }

    fn inputs(&self) -> Result<Vec<Input>, StageError> {
        Ok(vec![Input::Digest {
            label: BOUNDARY_INPUT.into(),
            digest: self.boundary.digest(),
        }])
    }

    fn run(&self, ctx: &StageContext<'_>) -> Result<Outcome, StageError> {
        let p = &self.params;
        let locations =
            read_locations(&ctx.upstream_dir(super::dataset::NAME)?.join(LOCATIONS_FILE))?;
        let points: Vec<ClassPoint> = locations
            .iter()
            .map(|l| ClassPoint {
                lat: l.latitude,
                lon: l.longitude,
                is_train: l.split == Split::Train,
            })
            .collect();
        let projection = projection(&p.crs)?;
        let table = create_classes(
            &self.boundary,
            p.spacing,
            &points,
            centroid_mode(p.centroid),
            projection.as_ref(),
        )?;
        if table.num_classes() < 2 {
            return Err(format!(
                "only {} grid cell(s) at spacing {} hold training locations; a classifier needs at least 2 classes (use a smaller classes.spacing or more data)",
                table.num_classes(),
                p.spacing
            )
            .into());
        }
        let out = ctx.out_dir();
        write_classes(&out.join(CLASSES_FILE), &table, &locations)?;
        write_rich_static(&out.join(RICH_STATIC_FILE), &table, &locations)?;
        let scaling = toml::to_string(&Scaling {
            crs: &p.crs,
            x_min: table.scaling.x_min,
            x_max: table.scaling.x_max,
            y_min: table.scaling.y_min,
            y_max: table.scaling.y_max,
        })?;
        std::fs::write(out.join(SCALING_FILE), scaling)?;
        draw_map(&out.join(MAP_FILE), &self.boundary, &table, &locations)?;
        if table.moved > 0 {
            tracing::info!(
                "{} location(s) lie outside every kept cell and were assigned to the nearest one",
                table.moved
            );
        }
        if table.without_class > 0 {
            tracing::info!(
                "{} val/test location(s) lie in cells without training locations and use the nearest class",
                table.without_class
            );
        }
        Ok(Outcome::default()
            .with("cells", table.cells.len())
            .with("classes", table.num_classes())
            .with("locations", locations.len())
            .with("moved_to_nearest_cell", table.moved)
            .with("without_own_class", table.without_class))
    }
}

#[derive(Serialize)]
struct Scaling<'a> {
    crs: &'a str,
    x_min: f64,
    x_max: f64,
    y_min: f64,
    y_max: f64,
}

/// `scaling.toml` read back: the CRS and the train-fitted min-max scaling.
#[derive(Clone, Debug, Deserialize)]
pub struct ScalingFile {
    /// Projected CRS.
    pub crs: String,
    /// Smallest train x.
    pub x_min: f64,
    /// Largest train x.
    pub x_max: f64,
    /// Smallest train y.
    pub y_min: f64,
    /// Largest train y.
    pub y_max: f64,
}

/// Reads a classes entry's `scaling.toml`.
///
/// # Errors
/// When the file cannot be read or parsed.
pub fn read_scaling(dir: &Path) -> Result<ScalingFile, StageError> {
    let path = dir.join(SCALING_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?)
}

/// Per class, `[lat, lon, x, y]` of its `mode` centroid, read from a classes entry.
///
/// # Errors
/// When `classes.csv` cannot be read, or a class lacks that centroid.
pub fn read_centroids(dir: &Path, mode: Centroid) -> Result<Vec<[f64; 4]>, StageError> {
    let path = dir.join(CLASSES_FILE);
    let mut r = csv::Reader::from_path(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out: Vec<(usize, [f64; 4])> = Vec::new();
    for row in r.deserialize() {
        let row: ClassRow = row.map_err(|e| format!("{}: {e}", path.display()))?;
        let Some(class) = row.class else { continue };
        let c = match mode {
            Centroid::Geometric => Some([
                row.geometric_lat,
                row.geometric_lon,
                row.geometric_x,
                row.geometric_y,
            ]),
            Centroid::Clipped => Some([
                row.clipped_lat,
                row.clipped_lon,
                row.clipped_x,
                row.clipped_y,
            ]),
            Centroid::Weighted => match (
                row.weighted_lat,
                row.weighted_lon,
                row.weighted_x,
                row.weighted_y,
            ) {
                (Some(a), Some(b), Some(c), Some(d)) => Some([a, b, c, d]),
                _ => None,
            },
        };
        let c =
            c.ok_or_else(|| format!("{}: class {class} has no {mode:?} centroid", path.display()))?;
        out.push((class, c));
    }
    out.sort_by_key(|(class, _)| *class);
    if out.iter().enumerate().any(|(i, (class, _))| i != *class) {
        return Err(format!("{}: class indices are not 0..K", path.display()).into());
    }
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

/// A location as the classes stage left it (`rich_static.csv`, the columns training reads).
#[derive(Clone, Debug, Deserialize)]
pub struct ClassedLocation {
    /// Location id.
    pub uuid: String,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// Projected x.
    pub crs_x: f64,
    /// Projected y.
    pub crs_y: f64,
    /// Its split.
    pub split: Split,
    /// Its class.
    pub class: usize,
}

/// Reads a classes entry's `rich_static.csv`.
///
/// # Errors
/// When the file cannot be read or parsed.
pub fn read_classed_locations(dir: &Path) -> Result<Vec<ClassedLocation>, StageError> {
    let path = dir.join(RICH_STATIC_FILE);
    let mut r = csv::Reader::from_path(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    r.deserialize()
        .map(|row| row.map_err(|e| format!("{}: {e}", path.display()).into()))
        .collect()
}

#[derive(Serialize, Deserialize)]
struct ClassRow {
    class: Option<usize>,
    cell: usize,
    col: usize,
    row: usize,
    min_lon: f64,
    min_lat: f64,
    max_lon: f64,
    max_lat: f64,
    land_area_deg2: f64,
    centroid_lat: Option<f64>,
    centroid_lon: Option<f64>,
    centroid_x: Option<f64>,
    centroid_y: Option<f64>,
    geometric_lat: f64,
    geometric_lon: f64,
    geometric_x: f64,
    geometric_y: f64,
    clipped_lat: f64,
    clipped_lon: f64,
    clipped_x: f64,
    clipped_y: f64,
    weighted_lat: Option<f64>,
    weighted_lon: Option<f64>,
    weighted_x: Option<f64>,
    weighted_y: Option<f64>,
    is_true_centroid: bool,
    n_train: usize,
    n_val: usize,
    n_test: usize,
}

fn write_classes(
    path: &Path,
    table: &ClassTable,
    locations: &[Location],
) -> Result<(), StageError> {
    let mut counts = vec![[0usize; 3]; table.cells.len()];
    for (a, l) in table.points.iter().zip(locations) {
        counts[a.cell][split_index(l.split)] += 1;
    }
    let mut w = csv::Writer::from_path(path)?;
    for (cell, n) in table.cells.iter().zip(counts) {
        let chosen = cell.centroid(table.mode);
        let chosen_xy = cell.centroid_xy(table.mode);
        w.serialize(ClassRow {
            class: cell.class,
            cell: cell.index,
            col: cell.col,
            row: cell.row,
            min_lon: cell.bounds.min_lon,
            min_lat: cell.bounds.min_lat,
            max_lon: cell.bounds.max_lon,
            max_lat: cell.bounds.max_lat,
            land_area_deg2: cell.land_area_deg2,
            centroid_lat: chosen.map(|c| c.lat),
            centroid_lon: chosen.map(|c| c.lon),
            centroid_x: chosen_xy.map(|c| c.0),
            centroid_y: chosen_xy.map(|c| c.1),
            geometric_lat: cell.geometric.lat,
            geometric_lon: cell.geometric.lon,
            geometric_x: cell.geometric_xy.0,
            geometric_y: cell.geometric_xy.1,
            clipped_lat: cell.clipped.lat,
            clipped_lon: cell.clipped.lon,
            clipped_x: cell.clipped_xy.0,
            clipped_y: cell.clipped_xy.1,
            weighted_lat: cell.weighted.map(|c| c.lat),
            weighted_lon: cell.weighted.map(|c| c.lon),
            weighted_x: cell.weighted_xy.map(|c| c.0),
            weighted_y: cell.weighted_xy.map(|c| c.1),
            is_true_centroid: cell.is_true_centroid,
            n_train: n[0],
            n_val: n[1],
            n_test: n[2],
        })?;
    }
    w.flush()?;
    Ok(())
}

/// Lumen's `data_rich_static` columns, then `split` and `class`. The centroid is that of
/// the location's class, in the configured centroid mode.
#[derive(Serialize)]
struct RichRow<'a> {
    uuid: &'a str,
    latitude: f64,
    longitude: f64,
    polygon_index: usize,
    centroid_lng: f64,
    centroid_lat: f64,
    is_true_centroid: bool,
    crs_y: f64,
    crs_x: f64,
    crs_centroid_y: f64,
    crs_centroid_x: f64,
    split: Split,
    class: usize,
}

fn write_rich_static(
    path: &Path,
    table: &ClassTable,
    locations: &[Location],
) -> Result<(), StageError> {
    let centroids = table.class_centroids();
    let centroids_xy = table.class_centroids_xy();
    let mut w = csv::Writer::from_path(path)?;
    for (a, l) in table.points.iter().zip(locations) {
        let class_cell = table.class_cell(a.class);
        w.serialize(RichRow {
            uuid: &l.uuid,
            latitude: l.latitude,
            longitude: l.longitude,
            polygon_index: a.cell,
            centroid_lng: centroids[a.class].lon,
            centroid_lat: centroids[a.class].lat,
            is_true_centroid: class_cell.is_true_centroid,
            crs_y: a.xy.1,
            crs_x: a.xy.0,
            crs_centroid_y: centroids_xy[a.class].1,
            crs_centroid_x: centroids_xy[a.class].0,
            split: l.split,
            class: a.class,
        })?;
    }
    w.flush()?;
    Ok(())
}

fn draw_map(
    path: &Path,
    boundary: &Boundary,
    table: &ClassTable,
    locations: &[Location],
) -> Result<(), StageError> {
    let cells: Vec<MapCell> = table
        .cells
        .iter()
        .map(|c| MapCell {
            bounds: [
                c.bounds.min_lon,
                c.bounds.min_lat,
                c.bounds.max_lon,
                c.bounds.max_lat,
            ],
            is_class: c.class.is_some(),
            geometric: (c.geometric.lat, c.geometric.lon),
            clipped: (c.clipped.lat, c.clipped.lon),
            weighted: c.weighted.map(|w| (w.lat, w.lon)),
        })
        .collect();
    let points: Vec<MapPoint> = locations
        .iter()
        .map(|l| MapPoint {
            lat: l.latitude,
            lon: l.longitude,
            split: split_index(l.split),
        })
        .collect();
    draw_classes(path, boundary.shape(), &cells, &points)?;
    Ok(())
}
