//! Merging dataset directories into one checked list of locations with splits.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use super::data_csv::read_data_csv;
use super::error::{DatasetError, LISTED};
use super::layout::{CSV_NAME, DirLayout};
use super::locations::Location;
use super::split::{Fractions, assign};

/// One dataset directory to merge.
pub struct Source {
    /// How the directory is named in outputs (as configured).
    pub label: String,
    /// Its scanned layout.
    pub layout: DirLayout,
}

/// The merged dataset.
#[derive(Debug)]
pub struct Indexed {
    /// Kept locations, sorted by uuid.
    pub locations: Vec<Location>,
    /// Image folders that no CSV row mentions (reported, not used).
    pub unreferenced_folders: usize,
    /// Rows dropped by `fraction`.
    pub subsampled_out: usize,
}

/// Reads every source's CSV, checks each row against its images, merges, and splits.
///
/// # Errors
/// Any row problem (see [`read_data_csv`]), a uuid in two directories, rows without image
/// folders, folders without all four views, or an empty result.
pub fn index(
    sources: &[Source],
    fractions: Fractions,
    fraction: f64,
    seed: u64,
) -> Result<Indexed, DatasetError> {
    let mut seen: HashMap<String, (PathBuf, u64)> = HashMap::new();
    let mut rows = Vec::new();
    let mut unreferenced = 0;
    for source in sources {
        let layout = &source.layout;
        let csv = layout.dir.join(CSV_NAME);
        let root = layout.dir.join(layout.image_root);
        let mut missing_folders = Vec::new();
        let mut missing_views = Vec::new();
        let mut referenced = BTreeSet::new();
        for row in read_data_csv(&csv)? {
            if let Some(first) = seen.get(&row.uuid) {
                return Err(DatasetError::DuplicateUuid {
                    uuid: row.uuid,
                    first: first.clone(),
                    second: (csv, row.line),
                });
            }
            seen.insert(row.uuid.clone(), (csv.clone(), row.line));
            if !layout.folders.contains_key(&row.uuid) {
                missing_folders.push(format!("line {}: {}", row.line, row.uuid));
                continue;
            }
            referenced.insert(row.uuid.clone());
            match layout.views(&row.uuid) {
                Ok(views) => rows.push((row, source.label.clone(), views)),
                Err(missing) => {
                    let headings: Vec<String> = missing
                        .iter()
                        .map(|&h| match layout.unusable_view(&row.uuid, h) {
                            Some(why) => format!("{h} ({why})"),
                            None => h.to_string(),
                        })
                        .collect();
                    missing_views.push(format!("{}: missing {}", row.uuid, headings.join(", ")));
                }
            }
        }
        if !missing_folders.is_empty() {
            let count = missing_folders.len();
            missing_folders.truncate(LISTED);
            return Err(DatasetError::MissingFolders {
                file: csv,
                root,
                count,
                examples: missing_folders,
            });
        }
        if !missing_views.is_empty() {
            let count = missing_views.len();
            missing_views.truncate(LISTED);
            return Err(DatasetError::MissingViews {
                root,
                count,
                examples: missing_views,
            });
        }
        unreferenced += layout.folders.len() - referenced.len();
    }
    if rows.is_empty() {
        let dirs: Vec<String> = sources
            .iter()
            .map(|s| s.layout.dir.display().to_string())
            .collect();
        return Err(DatasetError::Empty(format!(
            "no rows in {}",
            dirs.join(", ")
        )));
    }
    let uuids: Vec<&str> = rows.iter().map(|(r, _, _)| r.uuid.as_str()).collect();
    let splits = assign(&uuids, fractions, fraction, seed);
    let subsampled_out = splits.iter().filter(|s| s.is_none()).count();
    let mut locations: Vec<Location> = rows
        .into_iter()
        .zip(splits)
        .filter_map(|((row, source, views), split)| {
            let [view_0, view_90, view_180, view_270] = views;
            Some(Location {
                uuid: row.uuid,
                latitude: row.latitude,
                longitude: row.longitude,
                split: split?,
                source,
                view_0,
                view_90,
                view_180,
                view_270,
            })
        })
        .collect();
    locations.sort_by(|a, b| a.uuid.cmp(&b.uuid));
    Ok(Indexed {
        locations,
        unreferenced_folders: unreferenced,
        subsampled_out,
    })
}
