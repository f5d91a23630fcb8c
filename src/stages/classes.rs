//! The classes stage: cells over the boundary (grid, quadtree or clusters), their centroids,
//! and each location's cell, class and projected coordinates.
//!
//! Reads: `classes.{boundary, kind, centroid, crs}`, the keys of the kind (`spacing`; for a
//! quadtree also `max_locations`, `min_spacing`, `min_locations`; for clusters `cells`,
//! `min_locations` and `seed`), the boundary's geometry digest, and the dataset stage's
//! `locations.csv`. The grid's key holds exactly what it held before the other kinds existed.
//! Writes: `classes.csv` (every cell), `cells.geojson` (every cell's outline), `rich_static.csv`
//! (Lumen's enriched location table plus `split` and `class`), `scaling.toml` (min-max
//! scaling of projected coordinates, fitted on train locations only) and `class_map.png`.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::dataset::{LOCATIONS_FILE, Location, Split, read_locations};
use crate::experiment::{CellKind, Centroid, Loaded};
use crate::geo::{
    Boundary, CellScheme, CellSpec, CentroidMode, ClassPoint, ClassTable, GeoError, create_classes,
    projection,
};
use crate::graph::{Input, Outcome, Params, Stage, StageContext, StageError, params_of};
use crate::track::map::{MapCell, MapPoint, MapText, draw_classes};

use super::{BOUNDARY_INPUT, split_index};

/// Name of the stage.
pub const NAME: &str = "classes";
/// Every cell.
pub const CLASSES_FILE: &str = "classes.csv";
/// Every cell's outline, as GeoJSON.
pub const CELLS_GEOJSON_FILE: &str = "cells.geojson";
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
    #[serde(rename = "classes.kind", skip_serializing_if = "CellKind::is_grid")]
    kind: CellKind,
    #[serde(rename = "classes.spacing", skip_serializing_if = "Option::is_none")]
    spacing: Option<f64>,
    #[serde(
        rename = "classes.max_locations",
        skip_serializing_if = "Option::is_none"
    )]
    max_locations: Option<usize>,
    #[serde(
        rename = "classes.min_spacing",
        skip_serializing_if = "Option::is_none"
    )]
    min_spacing: Option<f64>,
    #[serde(
        rename = "classes.min_locations",
        skip_serializing_if = "Option::is_none"
    )]
    min_locations: Option<usize>,
    #[serde(rename = "classes.cells", skip_serializing_if = "Option::is_none")]
    cells: Option<usize>,
    #[serde(rename = "seed", skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(rename = "classes.centroid")]
    centroid: Centroid,
    #[serde(rename = "classes.crs")]
    crs: String,
}

/// Builds the class table.
pub struct ClassesStage {
    params: ClassesParams,
    spec: CellSpec,
    boundary: Arc<Boundary>,
}

/// The cells `loaded` asks for, with every unset key at its default.
pub fn cell_spec(loaded: &Loaded) -> CellSpec {
    let c = &loaded.experiment.classes;
    let scheme = match c.kind {
        CellKind::Grid => CellScheme::Grid { spacing: c.spacing },
        CellKind::Quadtree => CellScheme::Quadtree {
            spacing: c.spacing,
            max_locations: c.max_locations_or_default(),
            min_spacing: c.min_spacing_or_default(),
        },
        CellKind::Clusters => CellScheme::Clusters {
            cells: c.cells_or_default(),
            seed: loaded.experiment.seed,
        },
    };
    CellSpec {
        scheme,
        min_locations: c.min_locations_or_default(),
    }
}

impl ClassesStage {
    /// The stage for `loaded`.
    pub fn new(loaded: &Loaded, boundary: Arc<Boundary>) -> ClassesStage {
        let c = &loaded.experiment.classes;
        let spec = cell_spec(loaded);
        // Keys hold what the kind reads, defaults resolved, so setting a key to its default
        // is not a rerun; the grid's are the keys it always had.
        let (mut spacing, mut max_locations, mut min_spacing, mut cells, mut seed) =
            (None, None, None, None, None);
        match spec.scheme {
            CellScheme::Grid { spacing: s } => spacing = Some(s),
            CellScheme::Quadtree {
                spacing: s,
                max_locations: m,
                min_spacing: ms,
            } => {
                spacing = Some(s);
                max_locations = Some(m);
                min_spacing = Some(ms);
            }
            CellScheme::Clusters { cells: n, seed: s } => {
                cells = Some(n);
                seed = Some(s);
            }
        }
        ClassesStage {
            params: ClassesParams {
                boundary: c.boundary.clone(),
                kind: c.kind,
                spacing,
                max_locations,
                min_spacing,
                min_locations: (!c.kind.is_grid()).then_some(spec.min_locations),
                cells,
                seed,
                centroid: c.centroid,
                crs: c.crs.trim().to_owned(),
            },
            spec,
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
        // 2: cells.geojson, and the quadtree and cluster kinds.
        // 3: class_map.png has a title, headline, legend and scale bar.
        3
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
            &self.spec,
            &points,
            centroid_mode(p.centroid),
            projection.as_ref(),
        )
        .map_err(|e| match e {
            GeoError::TooManyClusters { .. } => format!("classes.cells: {e}"),
            GeoError::NoClasses { .. } => format!("classes.min_locations: {e}"),
            e => e.to_string(),
        })?;
        if table.num_classes() < 2 {
            return Err(format!(
                "only {} {} cell(s) hold {} training location(s); a classifier needs at least 2 classes ({})",
                table.num_classes(),
                p.kind.as_str(),
                if p.kind.is_grid() { "any".to_owned() } else { format!("at least {}", self.spec.min_locations) },
                match p.kind {
                    CellKind::Grid => "use a smaller classes.spacing or more data",
                    CellKind::Quadtree => "use a smaller classes.spacing or classes.min_locations, or more data",
                    CellKind::Clusters => "use a smaller classes.min_locations, or more data",
                }
            )
            .into());
        }
        let out = ctx.out_dir();
        let counts = split_counts(&table, &locations);
        write_classes(&out.join(CLASSES_FILE), &table, &counts)?;
        write_cells_geojson(&out.join(CELLS_GEOJSON_FILE), &table, &counts)?;
        write_rich_static(&out.join(RICH_STATIC_FILE), &table, &locations)?;
        let scaling = toml::to_string(&Scaling {
            crs: &p.crs,
            x_min: table.scaling.x_min,
            x_max: table.scaling.x_max,
            y_min: table.scaling.y_min,
            y_max: table.scaling.y_max,
        })?;
        std::fs::write(out.join(SCALING_FILE), scaling)?;
        let text = MapText {
            title: format!("Classes · {}", ctx.label()),
            headline: headline(&self.spec, &table),
        };
        draw_map(
            &out.join(MAP_FILE),
            &self.boundary,
            &table,
            &locations,
            &text,
        )?;
        if table.moved > 0 {
            tracing::info!(
                "{} location(s) lie outside every cell and were assigned to the nearest one",
                table.moved
            );
        }
        if table.without_class > 0 {
            tracing::info!(
                "{} location(s) lie in cells that are not classes and use the nearest class",
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
    col: Option<usize>,
    row: Option<usize>,
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

/// Locations per cell and split (train, val, test).
fn split_counts(table: &ClassTable, locations: &[Location]) -> Vec<[usize; 3]> {
    let mut counts = vec![[0usize; 3]; table.cells.len()];
    for (a, l) in table.points.iter().zip(locations) {
        counts[a.cell][split_index(l.split)] += 1;
    }
    counts
}

fn write_classes(path: &Path, table: &ClassTable, counts: &[[usize; 3]]) -> Result<(), StageError> {
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

/// `cells.geojson`: one Feature per cell in cell order, its outline as a Polygon (lon, lat,
/// counter-clockwise), with the cell and class ids, the counts per split, the land area and
/// the selected centroid as properties.
fn write_cells_geojson(
    path: &Path,
    table: &ClassTable,
    counts: &[[usize; 3]],
) -> Result<(), StageError> {
    use geojson::{Feature, FeatureCollection, Geometry, JsonObject, JsonValue};
    let features = table
        .cells
        .iter()
        .zip(counts)
        .map(|(cell, n)| {
            let mut ring = cell.outline.clone();
            if let Some(&first) = ring.first() {
                ring.push(first);
            }
            let chosen = cell.centroid(table.mode);
            let mut props = JsonObject::new();
            props.insert("cell".into(), cell.index.into());
            props.insert(
                "class".into(),
                cell.class.map_or(JsonValue::Null, Into::into),
            );
            props.insert("kind".into(), table.spec.scheme.kind().into());
            props.insert("n_train".into(), n[0].into());
            props.insert("n_val".into(), n[1].into());
            props.insert("n_test".into(), n[2].into());
            props.insert("land_area_deg2".into(), cell.land_area_deg2.into());
            props.insert(
                "centroid_lat".into(),
                chosen.map_or(JsonValue::Null, |c| c.lat.into()),
            );
            props.insert(
                "centroid_lon".into(),
                chosen.map_or(JsonValue::Null, |c| c.lon.into()),
            );
            Feature {
                bbox: None,
                geometry: Some(Geometry::new_polygon([ring])),
                id: None,
                properties: Some(props),
                foreign_members: None,
            }
        })
        .collect();
    let collection = FeatureCollection {
        bbox: None,
        features,
        foreign_members: None,
    };
    let mut text = serde_json::to_string(&collection)?;
    text.push('\n');
    std::fs::write(path, text)?;
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

/// The class map's numbers: cells, classes, how they were cut, locations moved.
fn headline(spec: &CellSpec, table: &ClassTable) -> String {
    let how = match spec.scheme {
        CellScheme::Grid { spacing } => format!("grid spacing {spacing}°"),
        CellScheme::Quadtree {
            spacing,
            max_locations,
            min_spacing,
        } => format!("quadtree {spacing}° to {min_spacing}°, max {max_locations} per cell"),
        CellScheme::Clusters { cells, .. } => format!("{cells} k-means clusters"),
    };
    format!(
        "{} cells, {} classes, {how}, {} moved to the nearest cell",
        table.cells.len(),
        table.num_classes(),
        table.moved
    )
}

fn draw_map(
    path: &Path,
    boundary: &Boundary,
    table: &ClassTable,
    locations: &[Location],
    text: &MapText,
) -> Result<(), StageError> {
    let cells: Vec<MapCell> = table
        .cells
        .iter()
        .map(|c| MapCell {
            outline: c.outline.clone(),
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
    draw_classes(path, boundary.shape(), &cells, &points, text)?;
    Ok(())
}
