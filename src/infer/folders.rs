//! A directory of `<uuid>/{0,90,180,270}.jpg` folders (the test-set layout, no CSV needed)
//! as the locations to predict, and the folders that cannot be predicted, with why.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::dataset::layout::{CSV_NAME, IMAGE_ROOTS, list_folders, view_names};

use super::InferError;

/// One location to predict: its uuid and its four views in heading order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewFolder {
    /// The folder's name.
    pub uuid: String,
    /// The 0°, 90°, 180° and 270° views.
    pub views: [PathBuf; 4],
}

/// A folder left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    /// The folder's name.
    pub uuid: String,
    /// Missing headings, an unreadable view, a link leading out.
    pub reason: String,
}

/// The folders of a directory, sorted by uuid.
#[derive(Clone, Debug, Default)]
pub struct Folders {
    /// The directory whose sub-folders are the locations.
    pub root: PathBuf,
    /// Folders with all four views.
    pub folders: Vec<ViewFolder>,
    /// Folders that cannot be predicted.
    pub skipped: Vec<Skipped>,
}

/// Lists the locations under `dir`: either `dir/<uuid>/` directly, or a dataset directory
/// (`data.csv` next to `images/` or `data/`), whose image folder is used.
///
/// With `confine`, every view must resolve (links followed) inside that directory; a view
/// that leads out makes its folder skipped, and is never opened.
///
/// # Errors
/// When `dir` is not a directory or cannot be listed.
pub fn scan(dir: &Path, confine: Option<&Path>) -> Result<Folders, InferError> {
    if !dir.is_dir() {
        return Err(InferError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let root = match IMAGE_ROOTS.iter().find(|r| dir.join(r).is_dir()) {
        Some(r) if dir.join(CSV_NAME).is_file() => dir.join(r),
        _ => dir.to_path_buf(),
    };
    let listing = list_folders(&root).map_err(|e| InferError::Listing {
        message: e.to_string(),
    })?;
    let mut out = Folders {
        root: root.clone(),
        ..Folders::default()
    };
    for (uuid, files) in &listing {
        let views = match view_names(files) {
            Ok(names) => names.map(|n| root.join(uuid).join(n)),
            Err(missing) => {
                let missing: Vec<String> = missing.iter().map(u16::to_string).collect();
                out.skipped.push(Skipped {
                    uuid: uuid.clone(),
                    reason: format!("no view for heading {}", missing.join(", ")),
                });
                continue;
            }
        };
        if let Some(outside) = confine.and_then(|c| leading_out(&views, c)) {
            out.skipped.push(Skipped {
                uuid: uuid.clone(),
                reason: format!("{outside} leads outside the data root"),
            });
            continue;
        }
        out.folders.push(ViewFolder {
            uuid: uuid.clone(),
            views,
        });
    }
    Ok(out)
}

/// Decodes the four views of each folder (in parallel) to `[4, S, S, 3]` u8; a folder
/// with a view that cannot be read or decoded is skipped, with the error as the reason.
pub fn decode(
    folders: &[ViewFolder],
    opts: crate::images::DecodeOptions,
) -> (Vec<(&ViewFolder, Vec<u8>)>, Vec<Skipped>) {
    let decoded: Vec<_> = folders
        .par_iter()
        .map(|f| (f, super::input::decode_location(&f.views, opts)))
        .collect();
    let mut ready = Vec::with_capacity(decoded.len());
    let mut skipped = Vec::new();
    for (folder, views) in decoded {
        match views {
            Ok(v) => ready.push((folder, v)),
            Err(e) => skipped.push(Skipped {
                uuid: folder.uuid.clone(),
                reason: crate::graph::error_chain(&e),
            }),
        }
    }
    (ready, skipped)
}

/// The name of the first view that does not resolve inside `confine` (canonical).
fn leading_out(views: &[PathBuf; 4], confine: &Path) -> Option<String> {
    views.iter().find_map(|v| {
        let inside = v.canonicalize().is_ok_and(|c| c.starts_with(confine));
        (!inside).then(|| {
            v.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn lists_complete_folders_sorted_and_skips_the_rest_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        for uuid in ["b", "a"] {
            for h in [0, 90, 180, 270] {
                touch(&dir.path().join(uuid).join(format!("{h}.jpg")));
            }
        }
        touch(&dir.path().join("c/0.jpg"));
        touch(&dir.path().join("c/90.png"));
        let found = scan(dir.path(), None).unwrap();
        let uuids: Vec<&str> = found.folders.iter().map(|f| f.uuid.as_str()).collect();
        assert_eq!(uuids, ["a", "b"]);
        assert_eq!(found.folders[0].views[3], dir.path().join("a/270.jpg"));
        assert_eq!(
            found.skipped,
            vec![Skipped {
                uuid: "c".into(),
                reason: "no view for heading 180, 270".into()
            }]
        );
    }

    #[test]
    fn a_dataset_directory_uses_its_image_folder() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("data.csv"));
        for h in [0, 90, 180, 270] {
            touch(&dir.path().join(format!("images/u/{h}.jpg")));
        }
        let found = scan(dir.path(), None).unwrap();
        assert_eq!(found.root, dir.path().join("images"));
        assert_eq!(found.folders.len(), 1);
    }

    #[test]
    fn confined_scans_skip_views_linking_outside() {
        let outside = tempfile::tempdir().unwrap();
        touch(&outside.path().join("secret.jpg"));
        let dir = tempfile::tempdir().unwrap();
        for h in [0, 90, 180] {
            touch(&dir.path().join(format!("u/{h}.jpg")));
        }
        std::os::unix::fs::symlink(
            outside.path().join("secret.jpg"),
            dir.path().join("u/270.jpg"),
        )
        .unwrap();
        let root = dir.path().canonicalize().unwrap();
        let found = scan(&root, Some(&root)).unwrap();
        assert!(found.folders.is_empty());
        assert_eq!(
            found.skipped[0].reason,
            "270.jpg leads outside the data root"
        );
        // Unconfined, the link is an ordinary view.
        assert_eq!(scan(&root, None).unwrap().folders.len(), 1);
    }

    #[test]
    fn a_file_is_not_a_directory_of_folders() {
        let dir = tempfile::tempdir().unwrap();
        touch(&dir.path().join("f"));
        let err = scan(&dir.path().join("f"), None).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
