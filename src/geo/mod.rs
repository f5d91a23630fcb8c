//! Geography for image-geolocation experiments: boundaries, grids, projections, classes.
//!
//! This module turns a region (an ISO country code or a GeoJSON file) and a set of labelled
//! points into geolocation classes: cells over the region (square lat/lon cells, a quadtree
//! of them, or clustered Voronoi cells), their centroids (geometric, clipped to land, or the
//! mean of the training points), and projected, min-max scaled coordinates for regression
//! heads. It knows nothing about training, configuration
//! files or datasets; callers hand it plain coordinates.

mod boundary;
mod centroids;
mod classes;
mod clip;
mod clusters;
mod convex;
mod error;
mod grid;
mod haversine;
mod projection;
mod quadtree;
mod ring;
mod tessellation;
#[cfg(test)]
mod tessellation_tests;
mod world;

pub use boundary::{BBox, Boundary, LatLon};
pub use centroids::CentroidMode;
pub use classes::{Cell, ClassPoint, ClassTable, MinMaxScaling, PointAssignment, create_classes};
pub use clusters::MAX_CLUSTERS;
pub use error::{GeoError, ProjectionError};
pub use grid::{AREA_TOLERANCE, Grid, GridCell, GridSpec, land_grid};
pub use haversine::{EARTH_RADIUS_KM, haversine_km};
#[cfg(feature = "proj")]
pub use projection::proj_projection;
pub use projection::{Projection, projection};
pub use tessellation::{CellScheme, CellSpec};

/// The reference GeoJSON of Natural Earth 1:10m Croatia, which only some machines have (it is
/// not part of the repository): `../shared/data/` next to the crate, else `/work/shared/data/`.
/// Tests that need it print a message and pass when it is absent.
#[cfg(test)]
pub(crate) fn hr_geojson() -> Option<std::path::PathBuf> {
    const NAME: &str = "shared/data/HRV_ne_10m.geojson";
    let found = [
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(NAME),
        std::path::Path::new("/work").join(NAME),
    ]
    .into_iter()
    .find(|p| p.exists());
    if found.is_none() {
        println!("skipping: reference file {NAME} not found");
    }
    found
}
