//! The image tensor file: every view of every location, decoded once, in one safetensors
//! file that training memory-maps instead of decoding JPEGs each epoch.
//!
//! Layout: one tensor named `images`, dtype `U8`, shape `[N, 4, S, S, 3]` (location,
//! view 0/90/180/270, row, column, RGB), C order, so location `i` is one contiguous block
//! of `4·S·S·3` bytes. Python's `safetensors.numpy.load_file` reads it as is.
//!
//! The file is written streaming: the header is written first with room reserved for the
//! largest possible `N` (spaces pad it, which JSON and safetensors allow), location blocks
//! follow in input order, and the header is rewritten with the final `N` once dropped
//! locations are known. Memory stays at one chunk of decoded locations whatever `N` is.
//! Nothing appears at the output path until the whole file is written (temp file + rename).

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};

use super::decode::{DecodeOptions, check_side, decode_view_into};
use super::error::ImagesError;
use crate::graph::Tick;
use crate::vocab::VIEWS;

/// The tensor's name in the file.
pub const TENSOR_NAME: &str = "images";

/// Value of the `format` metadata entry, bumped if the layout ever changes.
pub const FORMAT: &str = "geoexp-images/1";

/// What [`build_tensor_file`] did.
#[derive(Debug)]
pub struct BuildSummary {
    /// Indices into the input slice of the locations written, ascending; row `k` of the
    /// tensor is input location `kept[k]`.
    pub kept: Vec<usize>,
    /// Locations left out (only with `skip_bad`), with the first error among their views.
    pub dropped: Vec<(usize, ImagesError)>,
    /// Size of the file written, header included.
    pub bytes: u64,
}

/// How to build a tensor file; [`build_tensor_file`] uses the defaults.
#[derive(Clone, Copy, Debug)]
pub struct BuildOptions {
    /// How each view is decoded (output side, JPEG mode).
    pub decode: DecodeOptions,
    /// Drop locations with a bad view instead of failing.
    pub skip_bad: bool,
    /// Locations decoded in parallel before being written; bounds memory to
    /// `chunk · 4 · S² · 3` bytes.
    pub chunk: usize,
}

impl BuildOptions {
    /// Defaults for output side `side`: DCT-scaled JPEGs, failing on bad views, chunks
    /// of 128 locations (enough work per chunk to keep every core busy).
    pub fn new(side: u32) -> Self {
        BuildOptions {
            decode: DecodeOptions::new(side),
            skip_bad: false,
            chunk: 128,
        }
    }
}

/// Decodes all views of all locations in parallel and writes the tensor file at `out`
/// (a temp file in the same folder, renamed into place when complete). Calls `tick.inc(1)`
/// per location done.
///
/// A bad, unreadable or undecodable view: with `skip_bad` its location is dropped and
/// recorded in [`BuildSummary::dropped`]; without, the call fails with that view's error
/// (naming the file) and `out` is left untouched. Sources may have any size; every view
/// comes out `side×side`.
pub fn build_tensor_file(
    views: &[[PathBuf; VIEWS]],
    side: u32,
    out: &Path,
    skip_bad: bool,
    tick: &dyn Tick,
) -> Result<BuildSummary, ImagesError> {
    let opts = BuildOptions {
        skip_bad,
        ..BuildOptions::new(side)
    };
    build_tensor_file_with(views, out, &opts, tick)
}

/// [`build_tensor_file`] with every knob exposed.
pub fn build_tensor_file_with(
    views: &[[PathBuf; VIEWS]],
    out: &Path,
    opts: &BuildOptions,
    tick: &dyn Tick,
) -> Result<BuildSummary, ImagesError> {
    let side = opts.decode.side;
    check_side(side)?;
    let view_bytes = opts.decode.view_bytes();
    let location_bytes = VIEWS * view_bytes;
    let chunk = opts.chunk.max(1);

    let reserved = header(views.len(), side).len();
    let tmp = TempFile::create(out)?;
    let write_err = |source| ImagesError::Write {
        path: tmp.path.clone(),
        source,
    };
    let mut writer = BufWriter::with_capacity(1 << 20, &tmp.file);
    writer
        .write_all(&header(views.len(), side))
        .map_err(write_err)?;

    let mut kept = Vec::with_capacity(views.len());
    let mut dropped = Vec::new();
    let mut buf = vec![0u8; chunk.min(views.len()) * location_bytes];
    for (c, locations) in views.chunks(chunk).enumerate() {
        let buf = &mut buf[..locations.len() * location_bytes];
        // One task per view rather than per location: four times the parallelism
        // for small chunks, and each view decodes straight into its final place.
        let results: Vec<Result<(), ImagesError>> = buf
            .par_chunks_mut(view_bytes)
            .zip(locations.as_flattened().par_iter())
            .map(|(dst, path)| decode_view_into(path, opts.decode, dst))
            .collect();
        let mut results = results.into_iter();
        for (j, block) in buf.chunks(location_bytes).enumerate() {
            let index = c * chunk + j;
            // All four results are consumed whatever happens, to stay aligned.
            let first_error = results
                .by_ref()
                .take(VIEWS)
                .fold(None, |first, r| first.or(r.err()));
            match first_error {
                Some(e) if opts.skip_bad => dropped.push((index, e)),
                Some(e) => return Err(e),
                None => {
                    writer.write_all(block).map_err(write_err)?;
                    kept.push(index);
                }
            }
            tick.inc(1);
        }
    }
    writer.flush().map_err(write_err)?;
    drop(writer);

    let mut final_header = header(kept.len(), side);
    // Fewer locations never need more digits, so the final header fits the room reserved.
    debug_assert!(final_header.len() <= reserved);
    final_header.resize(reserved, b' ');
    let mut file = &tmp.file;
    file.seek(SeekFrom::Start(0)).map_err(write_err)?;
    file.write_all(&final_header).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    let bytes = (reserved + kept.len() * location_bytes) as u64;
    tmp.persist(out)?;
    Ok(BuildSummary {
        kept,
        dropped,
        bytes,
    })
}

/// The safetensors header for `n` locations: 8-byte little-endian length, then JSON
/// padded with spaces to a multiple of 8 so the data starts aligned.
fn header(n: usize, side: u32) -> Vec<u8> {
    let s = side as usize;
    let len = n * VIEWS * s * s * 3;
    let json = format!(
        concat!(
            r#"{{"__metadata__":{{"format":"{format}","views":"0,90,180,270","#,
            r#""resize":"shorter side to {s} (bilinear, antialias), centre crop"}},"#,
            r#""{name}":{{"dtype":"U8","shape":[{n},{views},{s},{s},3],"data_offsets":[0,{len}]}}}}"#
        ),
        format = FORMAT,
        name = TENSOR_NAME,
        views = VIEWS,
        s = s,
        n = n,
        len = len,
    );
    let padded = json.len().div_ceil(8) * 8;
    let mut out = Vec::with_capacity(8 + padded);
    out.extend_from_slice(&(padded as u64).to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out.resize(8 + padded, b' ');
    out
}

/// A file beside the output that is removed unless renamed into place.
struct TempFile {
    path: PathBuf,
    file: File,
    done: bool,
}

impl TempFile {
    fn create(out: &Path) -> Result<Self, ImagesError> {
        let name = out.file_name().map_or_else(
            || "images.safetensors".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        // Same folder, so the final rename never crosses file systems.
        let path = out.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        let file = File::create(&path).map_err(|source| ImagesError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(TempFile {
            path,
            file,
            done: false,
        })
    }

    fn persist(mut self, out: &Path) -> Result<(), ImagesError> {
        std::fs::rename(&self.path, out).map_err(|source| ImagesError::Write {
            path: out.to_owned(),
            source,
        })?;
        self.done = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Read-only memory-mapped view of an image tensor file.
///
/// The map is shared with the page cache: opening is instant and pages load on first
/// touch. The file must not be modified while open (geoexp only ever replaces such files
/// by rename, which leaves this map valid).
pub struct ImageTensor {
    path: PathBuf,
    map: Mmap,
    /// Byte offset of location 0 in the file.
    start: usize,
    len: usize,
    side: u32,
}

impl ImageTensor {
    /// Maps `path` and checks its header: one `images` tensor, dtype U8, shape
    /// `[N, 4, S, S, 3]`, data length matching the shape.
    pub fn open(path: &Path) -> Result<Self, ImagesError> {
        let file = File::open(path).map_err(|source| ImagesError::Open {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY: the map is read-only and geoexp never writes such a file in place
        // (new versions are renamed over it); a foreign process truncating it is the
        // usual, accepted memory-map hazard.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| ImagesError::Read {
            path: path.to_owned(),
            source,
        })?;
        let problem = |problem: String| ImagesError::Format {
            path: path.to_owned(),
            problem,
        };
        let (header_len, meta) =
            SafeTensors::read_metadata(&map).map_err(|e| problem(format!("bad header: {e}")))?;
        let info = meta
            .info(TENSOR_NAME)
            .ok_or_else(|| problem(format!("no tensor named {TENSOR_NAME:?}")))?;
        if info.dtype != Dtype::U8 {
            return Err(problem(format!("dtype is {:?}, expected U8", info.dtype)));
        }
        let shape = &info.shape;
        let expected = "[N, 4, S, S, 3]";
        if shape.len() != 5 {
            return Err(problem(format!(
                "shape {shape:?} has rank {}, expected {expected}",
                shape.len()
            )));
        }
        if shape[1] != VIEWS || shape[4] != 3 || shape[2] != shape[3] {
            return Err(problem(format!("shape {shape:?}, expected {expected}")));
        }
        let side = u32::try_from(shape[2])
            .map_err(|_| problem(format!("side {} is too large", shape[2])))?;
        let (begin, end) = info.data_offsets;
        let location = VIEWS * shape[2] * shape[3] * 3;
        // read_metadata has checked offsets against shape and file length; checked again
        // here because location() slices on these numbers.
        let start = 8 + header_len + begin;
        if end - begin != shape[0] * location || start + (end - begin) > map.len() {
            return Err(problem(format!(
                "data is {} bytes, shape {shape:?} needs {}",
                end - begin,
                shape[0] * location
            )));
        }
        Ok(ImageTensor {
            path: path.to_owned(),
            map,
            start,
            len: shape[0],
            side,
        })
    }

    /// The file this maps.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of locations.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no locations.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Side of every view in pixels.
    pub fn side(&self) -> u32 {
        self.side
    }

    /// Bytes in one view (`S·S·3`).
    pub fn view_bytes(&self) -> usize {
        self.side as usize * self.side as usize * 3
    }

    /// All locations, `[N, 4, S, S, 3]` in C order.
    pub fn data(&self) -> &[u8] {
        &self.map[self.start..self.start + self.len * VIEWS * self.view_bytes()]
    }

    /// Location `i`'s four views, `[4, S, S, 3]`.
    ///
    /// # Panics
    ///
    /// If `i >= len()`.
    pub fn location(&self, i: usize) -> &[u8] {
        assert!(
            i < self.len,
            "location {i} out of range: {} has {} locations",
            self.path.display(),
            self.len
        );
        let size = VIEWS * self.view_bytes();
        &self.map[self.start + i * size..][..size]
    }

    /// View `v` (0..4, for 0/90/180/270 degrees) of location `i`, `[S, S, 3]`.
    ///
    /// # Panics
    ///
    /// If `i >= len()` or `v >= 4`.
    pub fn view(&self, i: usize, v: usize) -> &[u8] {
        assert!(v < VIEWS, "view {v} out of range: there are {VIEWS} views");
        let size = self.view_bytes();
        &self.location(i)[v * size..][..size]
    }
}

impl std::fmt::Debug for ImageTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImageTensor")
            .field("path", &self.path)
            .field("len", &self.len)
            .field("side", &self.side)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::NoTick;
    use crate::images::decode::decode_view;
    use crate::images::test_images::{gradient, save_jpeg, save_png};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A tick that counts, to check progress is reported per location.
    #[derive(Default)]
    struct Count(AtomicU64);

    impl Tick for Count {
        fn inc(&self, n: u64) {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// `n` locations of four distinct small views each (mixed JPEG and PNG, mixed sizes).
    fn locations(dir: &Path, n: usize) -> Vec<[PathBuf; VIEWS]> {
        (0..n)
            .map(|i| {
                std::array::from_fn(|v| {
                    let (w, h) = (40 + 7 * i as u32, 30 + 5 * v as u32);
                    let img = image::imageops::rotate90(&gradient(w, h));
                    if v % 2 == 0 {
                        let p = dir.join(format!("{i}_{v}.jpg"));
                        save_jpeg(&img, &p);
                        p
                    } else {
                        let p = dir.join(format!("{i}_{v}.png"));
                        save_png(&img, &p);
                        p
                    }
                })
            })
            .collect()
    }

    #[test]
    fn round_trip_matches_decode_view() {
        let dir = tempfile::tempdir().unwrap();
        let views = locations(dir.path(), 5);
        let out = dir.path().join("images.safetensors");
        let count = Count::default();
        let opts = BuildOptions {
            chunk: 2, // several chunks, one partial
            ..BuildOptions::new(24)
        };
        let summary = build_tensor_file_with(&views, &out, &opts, &count).unwrap();
        assert_eq!(summary.kept, vec![0, 1, 2, 3, 4]);
        assert!(summary.dropped.is_empty());
        assert_eq!(count.0.load(Ordering::Relaxed), 5);
        assert_eq!(summary.bytes, std::fs::metadata(&out).unwrap().len());

        let t = ImageTensor::open(&out).unwrap();
        assert_eq!((t.len(), t.side(), t.is_empty()), (5, 24, false));
        assert_eq!(t.data().len(), 5 * 4 * 24 * 24 * 3);
        for (i, paths) in views.iter().enumerate() {
            assert_eq!(t.location(i).len(), 4 * 24 * 24 * 3);
            for (v, path) in paths.iter().enumerate() {
                assert_eq!(t.view(i, v), decode_view(path, 24).unwrap(), "{i} {v}");
            }
        }
    }

    #[test]
    fn header_is_valid_safetensors() {
        let dir = tempfile::tempdir().unwrap();
        let views = locations(dir.path(), 2);
        let out = dir.path().join("images.safetensors");
        build_tensor_file(&views, 16, &out, false, &NoTick).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.names(), vec![TENSOR_NAME]);
        let tensor = st.tensor(TENSOR_NAME).unwrap();
        assert_eq!(tensor.dtype(), Dtype::U8);
        assert_eq!(tensor.shape(), &[2, 4, 16, 16, 3]);
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap());
        assert_eq!(header_len % 8, 0);
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().as_ref().unwrap();
        assert_eq!(meta["format"], FORMAT);
    }

    #[test]
    fn skip_bad_drops_locations_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let mut views = locations(dir.path(), 4);
        let garbage = dir.path().join("garbage.jpg");
        std::fs::write(&garbage, b"not an image").unwrap();
        views[1][2] = garbage.clone();
        views[3][0] = dir.path().join("missing.jpg");
        let out = dir.path().join("images.safetensors");
        let count = Count::default();
        let summary = build_tensor_file(&views, 16, &out, true, &count).unwrap();
        assert_eq!(summary.kept, vec![0, 2]);
        assert_eq!(count.0.load(Ordering::Relaxed), 4);
        let dropped: Vec<usize> = summary.dropped.iter().map(|(i, _)| *i).collect();
        assert_eq!(dropped, vec![1, 3]);
        assert!(summary.dropped[0].1.to_string().contains("garbage.jpg"));
        assert!(matches!(summary.dropped[1].1, ImagesError::Open { .. }));

        // The reserved header room is padding now; the file still parses and lines up.
        let t = ImageTensor::open(&out).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.view(1, 3), decode_view(&views[2][3], 16).unwrap());
        let bytes = std::fs::read(&out).unwrap();
        SafeTensors::deserialize(&bytes).unwrap();
    }

    #[test]
    fn without_skip_bad_a_bad_view_fails_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut views = locations(dir.path(), 3);
        let garbage = dir.path().join("garbage.png");
        std::fs::write(&garbage, b"\x89PNG\r\n\x1a\nbroken").unwrap();
        views[2][1] = garbage;
        let out = dir.path().join("images.safetensors");
        let err = build_tensor_file(&views, 16, &out, false, &NoTick).unwrap_err();
        assert!(err.to_string().contains("garbage.png"), "{err}");
        assert!(!out.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn no_locations_gives_an_empty_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("images.safetensors");
        let summary = build_tensor_file(&[], 8, &out, false, &NoTick).unwrap();
        assert!(summary.kept.is_empty());
        let t = ImageTensor::open(&out).unwrap();
        assert!(t.is_empty());
        assert_eq!(t.side(), 8);
    }

    #[test]
    fn open_rejects_files_of_the_wrong_shape_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, json: &str, data: usize| {
            let path = dir.path().join(name);
            let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
            bytes.extend_from_slice(json.as_bytes());
            bytes.resize(bytes.len() + data, 0);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let cases = [
            (
                write(
                    "f32.safetensors",
                    r#"{"images":{"dtype":"F32","shape":[1,4,2,2,3],"data_offsets":[0,192]}}"#,
                    192,
                ),
                "dtype",
            ),
            (
                write(
                    "rank.safetensors",
                    r#"{"images":{"dtype":"U8","shape":[4,2,2,3],"data_offsets":[0,48]}}"#,
                    48,
                ),
                "rank",
            ),
            (
                write(
                    "views.safetensors",
                    r#"{"images":{"dtype":"U8","shape":[1,3,2,2,3],"data_offsets":[0,36]}}"#,
                    36,
                ),
                "expected [N, 4, S, S, 3]",
            ),
            (
                write(
                    "name.safetensors",
                    r#"{"pixels":{"dtype":"U8","shape":[1,4,2,2,3],"data_offsets":[0,48]}}"#,
                    48,
                ),
                "no tensor named",
            ),
            (
                write(
                    "short.safetensors",
                    r#"{"images":{"dtype":"U8","shape":[1,4,2,2,3],"data_offsets":[0,48]}}"#,
                    20,
                ),
                "bad header",
            ),
            (write("junk.safetensors", "nonsense", 0), "bad header"),
        ];
        for (path, expected) in cases {
            let err = ImageTensor::open(&path).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, ImagesError::Format { .. }), "{msg}");
            assert!(msg.contains(&*path.to_string_lossy()), "{msg}");
            assert!(msg.contains(expected), "{msg} lacks {expected:?}");
        }
    }
}
