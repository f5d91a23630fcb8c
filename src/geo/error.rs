//! Errors of the geography layer.
//!
//! Everything here can be triggered by user input (a country code, a GeoJSON file, a CRS
//! string, a grid spacing, point coordinates), so each message names the offending value in
//! one sentence. Underlying library errors are kept as `source()` rather than repeated in the
//! message, so that `anyhow`'s `{:#}` prints each cause exactly once.

use std::path::PathBuf;

/// Error of the geography layer (boundaries, grids, class creation).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GeoError {
    /// The country code is not one of the ISO 3166-1 alpha-2 codes embedded by `world-data`.
    #[error("unknown ISO 3166-1 alpha-2 country code {code:?}{}", did_you_mean(suggestion.as_deref()))]
    UnknownCountry {
        /// The code as given.
        code: String,
        /// The closest embedded code with its common name, e.g. `HR (Croatia)`.
        suggestion: Option<String>,
    },
    /// The GeoJSON boundary file could not be read.
    #[error("could not read GeoJSON boundary file {}", path.display())]
    ReadGeoJson {
        /// The file at fault.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The GeoJSON boundary file is not valid GeoJSON.
    #[error("could not parse GeoJSON boundary file {}", path.display())]
    ParseGeoJson {
        /// The file at fault.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: geojson::Error,
    },
    /// The GeoJSON is well-formed but unusable as a boundary (e.g. a position without latitude).
    #[error("invalid GeoJSON boundary file {}: {reason}", path.display())]
    InvalidGeoJson {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The geometry holds no polygon with at least three distinct vertices.
    #[error(
        "boundary {name} contains no polygon (only Polygon and MultiPolygon geometries with at least three distinct vertices count)"
    )]
    NoPolygon {
        /// The boundary's name (country code or file path).
        name: String,
    },
    /// A projection could not be created or applied.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// The grid spacing is unusable.
    #[error("invalid grid spacing {spacing:?}°: {reason}")]
    InvalidSpacing {
        /// The spacing as given, in degrees.
        spacing: f64,
        /// Why it is rejected.
        reason: String,
    },
    /// A point has a non-finite coordinate.
    #[error("point {index} has a non-finite coordinate (lat {lat}, lon {lon})")]
    InvalidPoint {
        /// Position of the point in the input slice.
        index: usize,
        /// Its latitude as given.
        lat: f64,
        /// Its longitude as given.
        lon: f64,
    },
    /// Classes are built from training points, and none was given.
    #[error("no training points were given, so no class can be created")]
    NoTrainPoints,
    /// No grid cell overlaps the boundary with positive area.
    #[error("no {spacing}° grid cell overlaps boundary {name} with positive area")]
    NoCells {
        /// The boundary's name.
        name: String,
        /// The spacing in degrees.
        spacing: f64,
    },
    /// `classes.cells` asks for more clusters than there are distinct training points.
    #[error(
        "cannot make {cells} clusters from {train} training points (at most {max} clusters, and no more than the distinct training locations)",
        max = super::clusters::MAX_CLUSTERS
    )]
    TooManyClusters {
        /// Clusters asked for.
        cells: usize,
        /// Training points available.
        train: usize,
    },
    /// A cluster's Voronoi region holds no land of the boundary.
    #[error(
        "cluster {cluster} (centre {lat:.4}° N, {lon:.4}° E) has no land inside the boundary; use another classes.cells or seed"
    )]
    ClusterWithoutLand {
        /// The cluster's id (its position west to east).
        cluster: usize,
        /// Latitude of its centre.
        lat: f64,
        /// Longitude of its centre.
        lon: f64,
    },
    /// No cell holds `min_locations` training points.
    #[error("no cell holds at least {min_locations} training point(s), so there is no class")]
    NoClasses {
        /// The threshold.
        min_locations: usize,
    },
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!("; did you mean {s}?"))
}

/// Error creating or applying a map projection; always names the CRS string at fault.
///
/// Backend messages are kept as text because the two backends (proj4rs, PROJ) have unrelated
/// error types and callers only ever report them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The string is neither `EPSG:<code>` nor a `+proj=...` definition.
    #[error(
        "unsupported CRS string {crs:?}: expected \"EPSG:<code>\" or a \"+proj=...\" definition"
    )]
    Unsupported {
        /// The CRS string as given.
        crs: String,
    },
    /// The EPSG code is not known to the backend.
    #[error("unknown CRS {crs}: the {backend} backend has no definition for this EPSG code")]
    UnknownEpsg {
        /// The CRS string as given.
        crs: String,
        /// `proj4rs` or `PROJ`.
        backend: &'static str,
    },
    /// The backend rejected the definition.
    #[error("invalid CRS {crs:?}: {reason}")]
    Invalid {
        /// The CRS string as given.
        crs: String,
        /// The backend's explanation.
        reason: String,
    },
    /// A coordinate could not be transformed.
    #[error("could not transform ({x}, {y}) {direction} CRS {crs}: {reason}")]
    Transform {
        /// The CRS string as given.
        crs: String,
        /// `to` for forward, `from` for inverse.
        direction: &'static str,
        /// First coordinate of the failing point (longitude or x, as given).
        x: f64,
        /// Second coordinate of the failing point (latitude or y, as given).
        y: f64,
        /// The backend's explanation.
        reason: String,
    },
}
