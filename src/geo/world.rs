//! Process-wide access to the Natural Earth countries embedded by `world-data`.
//!
//! `world_data::load()` inflates and deserialises several MB on every call, so it runs at most
//! once per process behind a `OnceLock`. The land test used to find sea-facing coastline builds
//! its (cheap) per-polygon bounding boxes lazily too, keeping the `f32` geometry as embedded.

use std::sync::OnceLock;

use geo::Polygon;
use world_data::world_data_types::data::{WorldData, country::Country};

use super::ring::{bounds, ring_contains_f32};

/// The embedded world data, loaded on first use.
pub(crate) fn world() -> &'static WorldData {
    static WORLD: OnceLock<WorldData> = OnceLock::new();
    WORLD.get_or_init(world_data::load)
}

/// Country by ISO 3166-1 alpha-2 code (case-insensitive, surrounding whitespace ignored).
pub(crate) fn country(code: &str) -> Option<&'static Country> {
    world().countries.get(&code.trim().to_ascii_uppercase())
}

/// Best-effort "did you mean" for an unknown code: an exact ISO alpha-3 or name match first
/// (people type `HRV` or `Croatia`), then the closest code or common name by edit distance.
pub(crate) fn suggest_country(input: &str) -> Option<String> {
    let wanted = input.trim().to_lowercase();
    if wanted.is_empty() {
        return None;
    }
    let mut countries: Vec<&Country> = world().countries.values().collect();
    // HashMap order is random per process; sort so the suggestion is deterministic.
    countries.sort_by(|a, b| a.iso_a2.cmp(&b.iso_a2));
    let label = |c: &Country| format!("{} ({})", c.iso_a2, c.common_name);
    if let Some(c) = countries.iter().find(|c| {
        c.iso_a3.to_lowercase() == wanted
            || c.common_name.to_lowercase() == wanted
            || c.official_name.to_lowercase() == wanted
    }) {
        return Some(label(c));
    }
    let mut best: Option<(f64, &Country)> = None;
    for c in &countries {
        let code_score = if wanted.chars().count() <= 3 {
            strsim::normalized_damerau_levenshtein(&wanted, &c.iso_a2.to_lowercase())
        } else {
            0.0
        };
        let name_score = strsim::jaro_winkler(&wanted, &c.common_name.to_lowercase());
        let score = code_score.max(name_score);
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, c));
        }
    }
    best.filter(|(s, _)| *s >= 0.5).map(|(_, c)| label(c))
}

struct LandPolygon {
    bbox: [f64; 4],
    polygon: &'static Polygon<f32>,
}

fn land_polygons() -> &'static [LandPolygon] {
    static LAND: OnceLock<Vec<LandPolygon>> = OnceLock::new();
    LAND.get_or_init(|| {
        world()
            .countries
            .values()
            .flat_map(|c| &c.polygons)
            .map(|polygon| LandPolygon {
                bbox: bounds(
                    polygon
                        .exterior()
                        .0
                        .iter()
                        .map(|c| (f64::from(c.x), f64::from(c.y))),
                ),
                polygon,
            })
            .collect()
    })
}

/// Whether `(lon, lat)` lies in any embedded country polygon.
pub(crate) fn on_land(lon: f64, lat: f64) -> bool {
    land_polygons().iter().any(|lp| {
        let b = &lp.bbox;
        lon >= b[0]
            && lon <= b[2]
            && lat >= b[1]
            && lat <= b[3]
            && ring_contains_f32(lp.polygon.exterior(), lon, lat)
            && !lp
                .polygon
                .interiors()
                .iter()
                .any(|h| ring_contains_f32(h, lon, lat))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn croatia_is_embedded_under_hr() {
        let hr = country("hr").map(|c| c.common_name.as_str());
        assert_eq!(hr, Some("Croatia"));
    }

    #[test]
    fn suggestions_catch_alpha3_names_and_typos() {
        assert_eq!(suggest_country("HRV").as_deref(), Some("HR (Croatia)"));
        assert_eq!(suggest_country("croatia").as_deref(), Some("HR (Croatia)"));
        assert_eq!(suggest_country("Croatja").as_deref(), Some("HR (Croatia)"));
    }

    #[test]
    fn zagreb_is_on_land_and_the_adriatic_is_not() {
        assert!(on_land(15.98, 45.81));
        assert!(!on_land(14.5, 43.5));
    }
}
