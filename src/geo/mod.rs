//! Geography for image-geolocation experiments: boundaries, grids, projections, classes.
//!
//! This module turns a region (an ISO country code or a GeoJSON file) and a set of labelled
//! points into geolocation classes: square lat/lon cells over the region, their centroids
//! (geometric, clipped to land, or the mean of the training points), and projected, min-max
//! scaled coordinates for regression heads. It knows nothing about training, configuration
//! files or datasets; callers hand it plain coordinates.

mod boundary;
mod centroids;
mod classes;
mod clip;
mod error;
mod grid;
mod haversine;
mod projection;
mod ring;
mod world;

pub use boundary::{BBox, Boundary, LatLon};
pub use centroids::CentroidMode;
pub use classes::{Cell, ClassPoint, ClassTable, MinMaxScaling, PointAssignment, create_classes};
pub use error::{GeoError, ProjectionError};
pub use grid::{AREA_TOLERANCE, Grid, GridCell, GridSpec, land_grid};
pub use haversine::{EARTH_RADIUS_KM, haversine_km};
#[cfg(feature = "proj")]
pub use projection::proj_projection;
pub use projection::{Projection, projection};

/// Reference copy of the Natural Earth 1:10m Croatia polygon, present on some machines only.
#[cfg(test)]
pub(crate) const HR_GEOJSON: &str = "/work/shared/data/HRV_ne_10m.geojson";
