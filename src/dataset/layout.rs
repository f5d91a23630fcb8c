//! The on-disk layout of a real dataset directory (seed 000):
//!
//! ```text
//! dataset_original_subset/
//! ├── data.csv                    uuid, latitude, longitude (+ any other columns)
//! └── images/  (or data/)
//!     └── <uuid>/{0,90,180,270}.jpg
//! ```
//!
//! Directories are read in place and never modified. Listing is parallel because a real
//! dataset has tens of thousands of folders.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::error::DatasetError;
use crate::vocab::HEADINGS;

/// The CSV every dataset directory holds.
pub const CSV_NAME: &str = "data.csv";
/// The folders of a dataset directory that hold the `<uuid>/` view folders, in the order tried.
pub const IMAGE_ROOTS: [&str; 2] = ["images", "data"];
const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// A scanned dataset directory.
#[derive(Clone, Debug)]
pub struct DirLayout {
    /// The dataset directory.
    pub dir: PathBuf,
    /// Name of its image root (`images` or `data`).
    pub image_root: &'static str,
    /// Every image folder: uuid → file names in it (sorted).
    pub folders: BTreeMap<String, Vec<String>>,
}

impl DirLayout {
    /// Scans `dir`: checks for `data.csv` and an image root, and lists every image folder.
    ///
    /// # Errors
    /// When `data.csv` or the image root is missing, or a folder cannot be listed.
    pub fn scan(dir: &Path) -> Result<DirLayout, DatasetError> {
        let csv = dir.join(CSV_NAME);
        if !csv.is_file() {
            // There, but not a file we can read: say what it is.
            if fs::symlink_metadata(&csv).is_ok() {
                return Err(DatasetError::NotAFile {
                    path: csv.clone(),
                    kind: file_kind(&csv),
                });
            }
            return Err(DatasetError::MissingCsv {
                dir: dir.to_path_buf(),
            });
        }
        let image_root = IMAGE_ROOTS
            .into_iter()
            .find(|r| dir.join(r).is_dir())
            .ok_or_else(|| DatasetError::MissingImageRoot {
                dir: dir.to_path_buf(),
            })?;
        let folders = list_folders(&dir.join(image_root))?;
        Ok(DirLayout {
            dir: dir.to_path_buf(),
            image_root,
            folders,
        })
    }

    /// Every file a dataset stage reads, relative to the directory: the CSV and all images.
    pub fn input_files(&self) -> Vec<PathBuf> {
        let mut files = vec![PathBuf::from(CSV_NAME)];
        for (uuid, names) in &self.folders {
            for name in names {
                files.push(Path::new(self.image_root).join(uuid).join(name));
            }
        }
        files
    }

    /// Why the view of `heading` in `uuid`'s folder is missing when something by its name is
    /// there: `0.jpg is a directory`, `90.jpg is a dangling symbolic link`.
    pub fn unusable_view(&self, uuid: &str, heading: u16) -> Option<String> {
        let folder = self.dir.join(self.image_root).join(uuid);
        let stem = heading.to_string();
        fs::read_dir(&folder)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|name| {
                name.rsplit_once('.').is_some_and(|(s, e)| {
                    s == stem && IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x))
                })
            })
            .map(|name| format!("{name} is {}", file_kind(&folder.join(&name))))
    }

    /// The four view paths of `uuid` (relative to the directory), or the headings missing.
    pub fn views(&self, uuid: &str) -> Result<[String; 4], Vec<u16>> {
        let files = self.folders.get(uuid).map(Vec::as_slice).unwrap_or(&[]);
        view_names(files).map(|names| names.map(|n| format!("{}/{uuid}/{n}", self.image_root)))
    }
}

/// Every visible sub-folder of `root` (a uuid) → the visible files in it, sorted. Symbolic
/// links count as what they point to, so a dataset assembled from links lists like a copy.
///
/// # Errors
/// When `root` or a folder cannot be listed.
pub fn list_folders(root: &Path) -> Result<BTreeMap<String, Vec<String>>, DatasetError> {
    let names: Vec<String> = visible_entries(root, |m| m.is_dir())?;
    names
        .into_par_iter()
        .map(|uuid| {
            let mut files = visible_entries(&root.join(&uuid), |m| m.is_file())?;
            files.sort();
            Ok((uuid, files))
        })
        .collect()
}

/// What a path is, for a message about something that is not a regular file: "a
/// directory", "a FIFO", "a dangling symbolic link", ...
pub fn file_kind(path: &Path) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let Ok(link) = fs::symlink_metadata(path) else {
        return "missing";
    };
    let Ok(meta) = fs::metadata(path) else {
        return if link.file_type().is_symlink() {
            "a dangling symbolic link"
        } else {
            "unreadable"
        };
    };
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Names of the entries of `dir` not starting with `.` whose (link-followed) metadata
/// passes `keep`; dangling links are left out.
fn visible_entries(
    dir: &Path,
    keep: impl Fn(&fs::Metadata) -> bool,
) -> Result<Vec<String>, DatasetError> {
    Ok(fs::read_dir(dir)
        .map_err(DatasetError::io("listing", dir))?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| fs::metadata(e.path()).is_ok_and(|m| keep(&m)))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

/// The files of the four headings among `files` (one folder's listing), in [`HEADINGS`]
/// order, or the headings that have none.
pub fn view_names(files: &[String]) -> Result<[&String; 4], Vec<u16>> {
    let found = HEADINGS.map(|heading| view_file(files, heading));
    match found {
        [Some(a), Some(b), Some(c), Some(d)] => Ok([a, b, c, d]),
        _ => Err(HEADINGS
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(h, _)| *h)
            .collect()),
    }
}

/// The file of one heading: `0.jpg` first, then the other accepted extensions, any case.
fn view_file(files: &[String], heading: u16) -> Option<&String> {
    let stem = heading.to_string();
    IMAGE_EXTENSIONS.iter().find_map(|ext| {
        files.iter().find(|f| {
            f.rsplit_once('.')
                .is_some_and(|(s, e)| s == stem && e.eq_ignore_ascii_case(ext))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_accept_jpeg_and_png_in_any_case_and_report_what_is_missing() {
        let files: Vec<String> = ["0.JPG", "180.png", "90.jpeg", "notes.txt"]
            .map(String::from)
            .to_vec();
        let layout = DirLayout {
            dir: PathBuf::from("d"),
            image_root: "images",
            folders: [("u".to_owned(), files)].into(),
        };
        assert_eq!(layout.views("u"), Err(vec![270]));
        assert_eq!(layout.views("nope"), Err(vec![0, 90, 180, 270]));
    }
}
