//! TensorBoard event files, written synchronously, and a reader that checks them.
//!
//! # Why geoexp frames its own records
//!
//! `tensorboard-rs` (0.5.9) has a `SummaryWriter`, but it cannot be trusted with a training run:
//! it writes on a background thread, so events still queued when the process exits, aborts or is
//! killed are lost (its `flush()` does not wait for the thread); two writers opened in the same
//! second in one directory get the same file name and the second truncates the first; every I/O
//! error panics; `add_image` swaps width and height of non-square images; and its HParams calls
//! panic as unimplemented. So [`EventWriter`] builds the `Event` protobufs itself (the message types
//! come from `tensorboard-proto`), frames the records with `tensorboard-rs`'s `RecordWriter` into
//! an in-memory buffer (that part is synchronous and correct), and writes the buffer with
//! `std::fs` only in [`EventWriter::flush`], which fsyncs and reports errors as values. The caller
//! keeps the file length that `flush` returns beside its checkpoint, so a resumed run can
//! [`EventWriter::resume`] by truncating away whatever was written after that checkpoint.
//!
//! # The `protobuf` 2.28 advisory
//!
//! `protobuf` 2.28 has RUSTSEC-2024-0437 (unbounded recursion, a stack overflow, when *parsing*
//! crafted input). geoexp only serialises with it, except in [`read_events`], which parses files
//! geoexp itself wrote (tests and tools read back their own runs); it is not meant for untrusted
//! files.
//!
//! # Record format
//!
//! Each record is `len: u64 LE`, `masked_crc32c(len bytes): u32 LE`, `data`,
//! `masked_crc32c(data): u32 LE`, where `data` is a serialised `Event`. The first event of every
//! file carries `file_version: "brain.Event:2"`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use protobuf::Message;
use protobuf::well_known_types::Value as ProtoValue;
use tensorboard_proto::api::{DataType as HParamType, Experiment, HParamInfo, MetricInfo, Status};
use tensorboard_proto::event::Event;
use tensorboard_proto::plugin_hparams::{HParamsPluginData, SessionEndInfo, SessionStartInfo};
use tensorboard_proto::summary::{
    HistogramProto, Summary, Summary_Image, Summary_Value, SummaryMetadata,
    SummaryMetadata_PluginData,
};
use tensorboard_proto::tensor::TensorProto;
use tensorboard_proto::tensor_shape::TensorShapeProto_Dim;
use tensorboard_proto::types::DataType as TensorType;
use tensorboard_rs::masked_crc32c::masked_crc32c;
use tensorboard_rs::record_writer::RecordWriter;

/// The version string TensorBoard expects in the first event of a file.
const FILE_VERSION: &str = "brain.Event:2";

/// Bytes of framing around each record's data: length, length CRC, data CRC.
const HEADER_LEN: usize = 12;
const FOOTER_LEN: usize = 4;

/// Histogram bucket count: enough to show a shape, few enough to keep events small.
const HISTOGRAM_BUCKETS: usize = 30;

/// The hparams plugin's name and tags, as TensorBoard's `hparams/metadata.py` spells them.
const HPARAMS_PLUGIN: &str = "hparams";
const HPARAMS_EXPERIMENT_TAG: &str = "_hparams_/experiment";
const HPARAMS_SESSION_START_TAG: &str = "_hparams_/session_start_info";
const HPARAMS_SESSION_END_TAG: &str = "_hparams_/session_end_info";

/// Distinguishes writers created by one process within the same clock tick.
static NONCE: AtomicU64 = AtomicU64::new(0);

/// What went wrong writing or reading an event file; every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TensorboardError {
    /// An I/O operation on an event file (or its directory) failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "writing events to".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `resume` was asked to keep more bytes than the file has.
    #[error("cannot resume {path} at {len} bytes: the file has only {actual} bytes")]
    ShorterThanResume {
        /// The event file.
        path: PathBuf,
        /// The length asked for.
        len: u64,
        /// The file's actual length.
        actual: u64,
    },
    /// A record's framing or one of its CRCs is wrong, or the file ends inside a record.
    #[error("corrupt event file {path} at byte {offset}: {reason}")]
    Corrupt {
        /// The event file.
        path: PathBuf,
        /// Byte offset of the record that is wrong.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// A record passed its CRCs but does not hold a valid `Event`.
    #[error("cannot decode the event at byte {offset} of {path}: {source}")]
    Decode {
        /// The event file.
        path: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// The protobuf error.
        #[source]
        source: protobuf::ProtobufError,
    },
}

/// One hyperparameter value, in the three types the hparams plugin knows.
#[derive(Debug, Clone, PartialEq)]
pub enum HParamValue {
    /// A number (TensorBoard stores every number as a float64).
    Number(f64),
    /// A flag.
    Bool(bool),
    /// Anything else, e.g. a model name.
    Text(String),
}

/// A synchronous TensorBoard event-file writer.
///
/// The event methods only queue framed records in memory; nothing reaches the disk until
/// [`flush`](Self::flush), which writes them all, fsyncs, and returns the file length. Dropping
/// a writer does not flush (a drop cannot report an error); whatever was queued since the last
/// flush is discarded, just as a resume from the last checkpoint would discard it.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: File,
    /// Length of the file as of the last successful flush: everything before it is whole records.
    len: u64,
    /// Framed records not yet written.
    pending: Vec<u8>,
}

impl EventWriter {
    /// Creates a new event file in `dir` named
    /// `events.out.tfevents.<unix_secs>.<host>.<pid>.<nonce>` and writes (and fsyncs) the
    /// `file_version: "brain.Event:2"` event.
    ///
    /// The file is created with `create_new`, so it never truncates an existing file; the nonce
    /// (a per-process counter plus the clock's nanoseconds) keeps two writers created in the same
    /// second apart, and a name that exists anyway is retried with the next nonce.
    pub fn create(dir: &Path) -> Result<Self, TensorboardError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // TensorBoard splits names on '.', and a host name with dots would still sort and load
        // fine, but keep the name to one safe token per field.
        let host: String = gethostname::gethostname()
            .to_string_lossy()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let pid = std::process::id();
        let mut attempt = 0;
        let (path, file) = loop {
            let nonce = NONCE.fetch_add(1, Ordering::Relaxed);
            let name = format!(
                "events.out.tfevents.{}.{host}.{pid}.{:09}{nonce}",
                now.as_secs(),
                now.subsec_nanos()
            );
            let path = dir.join(name);
            match OpenOptions::new().append(true).create_new(true).open(&path) {
                Ok(file) => break (path, file),
                // Only possible with a reused pid and the same clock reading; try the next nonce.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(source) => {
                    return Err(TensorboardError::Io {
                        action: "creating event file",
                        path,
                        source,
                    });
                }
            }
        };
        sync_dir(dir)?;
        Self::start(path, file)
    }

    /// Creates a new event file at exactly `path` (which must not exist), for writers whose
    /// file is renamed or linked under a TensorBoard name later: a cache entry's file name
    /// must not depend on the time or the host. Writes the version event like [`create`](Self::create).
    pub fn create_at(path: &Path) -> Result<Self, TensorboardError> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)
            .map_err(|source| TensorboardError::Io {
                action: "creating event file",
                path: path.to_path_buf(),
                source,
            })?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Self::start(path.to_path_buf(), file)
    }

    fn start(path: PathBuf, file: File) -> Result<Self, TensorboardError> {
        let mut writer = Self {
            path,
            file,
            len: 0,
            pending: Vec::new(),
        };
        writer.file_version();
        writer.flush()?;
        Ok(writer)
    }

    /// Reopens an existing event file for appending after truncating it to `len` bytes (resume:
    /// drop events written after the last checkpoint).
    ///
    /// Errors if the file is shorter than `len`, or if its first `len` bytes are not whole,
    /// CRC-valid records (appending after a torn record would make the rest unreadable).
    pub fn resume(path: &Path, len: u64) -> Result<Self, TensorboardError> {
        let io_err = |action| {
            move |source| TensorboardError::Io {
                action,
                path: path.to_path_buf(),
                source,
            }
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(path)
            .map_err(io_err("opening event file"))?;
        let actual = file
            .metadata()
            .map_err(io_err("reading the length of event file"))?
            .len();
        if actual < len {
            return Err(TensorboardError::ShorterThanResume {
                path: path.to_path_buf(),
                len,
                actual,
            });
        }
        let mut kept = Vec::new();
        (&mut file)
            .take(len)
            .read_to_end(&mut kept)
            .map_err(io_err("reading event file"))?;
        records(path, &kept)?;
        file.set_len(len).map_err(io_err("truncating event file"))?;
        file.sync_all().map_err(io_err("syncing event file"))?;
        let mut writer = Self {
            path: path.to_path_buf(),
            file,
            len,
            pending: Vec::new(),
        };
        // A file cut back to nothing still needs its version event to be readable.
        if len == 0 {
            writer.file_version();
            writer.flush()?;
        }
        Ok(writer)
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues a scalar (stored as TensorBoard's `simple_value`, an f32).
    pub fn scalar(&mut self, tag: &str, step: i64, value: f64) {
        let mut v = Summary_Value::new();
        v.set_tag(tag.to_string());
        v.set_simple_value(value as f32);
        self.summary(step, v);
    }

    /// Queues a histogram of `values`: min, max, count, sum, sum of squares and
    /// 30 equal-width buckets between min and max (one bucket when they are equal).
    ///
    /// Non-finite values are left out, since they have no bucket and would turn the sums into
    /// NaN; an input with no finite values gives an empty histogram.
    pub fn histogram(&mut self, tag: &str, step: i64, values: &[f64]) {
        let mut v = Summary_Value::new();
        v.set_tag(tag.to_string());
        v.set_histo(histogram_proto(values));
        self.summary(step, v);
    }

    /// Queues a PNG image (encoded bytes) with its real width and height.
    ///
    /// The colorspace (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA) is read from the PNG header; a size
    /// that disagrees with the header is logged, since the caller's numbers are what TensorBoard
    /// will show.
    pub fn image(&mut self, tag: &str, step: i64, png: &[u8], width: u32, height: u32) {
        let header = png_header(png);
        if let Some((w, h, _)) = header
            && (w, h) != (width, height)
        {
            tracing::warn!(
                tag,
                "image is {width}x{height} by the caller but {w}x{h} by its PNG header"
            );
        }
        let mut image = Summary_Image::new();
        image.set_width(clamp_i32(width));
        image.set_height(clamp_i32(height));
        image.set_colorspace(header.map_or(3, |(_, _, c)| c));
        image.set_encoded_image_string(png.to_vec());
        let mut v = Summary_Value::new();
        v.set_tag(tag.to_string());
        v.set_image(image);
        self.summary(step, v);
    }

    /// Queues the hparams plugin's experiment summary (one hparam info per entry of `hparams`,
    /// one metric info per tag in `metric_tags`) and the session-start summary with the values.
    pub fn hparams_start(
        &mut self,
        hparams: &BTreeMap<String, HParamValue>,
        metric_tags: &[String],
    ) {
        let mut experiment = Experiment::new();
        experiment.set_time_created_secs(unix_now());
        for (name, value) in hparams {
            let mut info = HParamInfo::new();
            info.set_name(name.clone());
            info.set_field_type(match value {
                HParamValue::Number(_) => HParamType::DATA_TYPE_FLOAT64,
                HParamValue::Bool(_) => HParamType::DATA_TYPE_BOOL,
                HParamValue::Text(_) => HParamType::DATA_TYPE_STRING,
            });
            experiment.mut_hparam_infos().push(info);
        }
        for tag in metric_tags {
            let mut info = MetricInfo::new();
            info.mut_name().set_tag(tag.clone());
            experiment.mut_metric_infos().push(info);
        }
        let mut data = HParamsPluginData::new();
        data.set_experiment(experiment);
        self.hparams_summary(HPARAMS_EXPERIMENT_TAG, data);

        let mut start = SessionStartInfo::new();
        start.set_start_time_secs(unix_now());
        for (name, value) in hparams {
            let mut v = ProtoValue::new();
            match value {
                HParamValue::Number(x) => v.set_number_value(*x),
                HParamValue::Bool(b) => v.set_bool_value(*b),
                HParamValue::Text(s) => v.set_string_value(s.clone()),
            }
            start.mut_hparams().insert(name.clone(), v);
        }
        let mut data = HParamsPluginData::new();
        data.set_session_start_info(start);
        self.hparams_summary(HPARAMS_SESSION_START_TAG, data);
    }

    /// Queues the hparams session-end summary, with status success if `ok`, else failure.
    pub fn hparams_end(&mut self, ok: bool) {
        let mut end = SessionEndInfo::new();
        end.set_status(if ok {
            Status::STATUS_SUCCESS
        } else {
            Status::STATUS_FAILURE
        });
        end.set_end_time_secs(unix_now());
        let mut data = HParamsPluginData::new();
        data.set_session_end_info(end);
        self.hparams_summary(HPARAMS_SESSION_END_TAG, data);
    }

    /// Writes every queued record, then fsyncs; returns the file length after the flush (the
    /// caller stores it in its checkpoint so a resume can truncate to it).
    ///
    /// On an I/O error the file is cut back to its length after the last successful flush (so
    /// it never ends in a torn record) and the records stay queued for the next attempt.
    pub fn flush(&mut self) -> Result<u64, TensorboardError> {
        if !self.pending.is_empty() {
            if let Err(source) = self.file.write_all(&self.pending) {
                // Best effort: if even this fails, a resume to the checkpointed length fixes it.
                let _ = self.file.set_len(self.len);
                return Err(TensorboardError::Io {
                    action: "writing events to",
                    path: self.path.clone(),
                    source,
                });
            }
            self.len += self.pending.len() as u64;
            self.pending.clear();
        }
        self.file
            .sync_data()
            .map_err(|source| TensorboardError::Io {
                action: "syncing event file",
                path: self.path.clone(),
                source,
            })?;
        Ok(self.len)
    }

    fn file_version(&mut self) {
        let mut event = Event::new();
        event.set_wall_time(unix_now());
        event.set_file_version(FILE_VERSION.to_string());
        self.push(&event);
    }

    fn summary(&mut self, step: i64, value: Summary_Value) {
        let mut summary = Summary::new();
        summary.mut_value().push(value);
        let mut event = Event::new();
        event.set_wall_time(unix_now());
        event.set_step(step);
        event.set_summary(summary);
        self.push(&event);
    }

    /// A metadata-carrying value like TensorBoard's own `hparams/summary_v2.py` writes: the
    /// plugin data in the metadata and an empty float tensor (its `NULL_TENSOR`), without which
    /// TensorBoard's tensor-based loader would skip the value.
    fn hparams_summary(&mut self, tag: &str, mut data: HParamsPluginData) {
        data.set_version(0);
        let mut plugin = SummaryMetadata_PluginData::new();
        plugin.set_plugin_name(HPARAMS_PLUGIN.to_string());
        plugin.set_content(serialize(&data));
        let mut metadata = SummaryMetadata::new();
        metadata.set_plugin_data(plugin);
        let mut tensor = TensorProto::new();
        tensor.set_dtype(TensorType::DT_FLOAT);
        let mut dim = TensorShapeProto_Dim::new();
        dim.set_size(0);
        tensor.mut_tensor_shape().mut_dim().push(dim);
        let mut v = Summary_Value::new();
        v.set_tag(tag.to_string());
        v.set_metadata(metadata);
        v.set_tensor(tensor);
        self.summary(0, v);
    }

    fn push(&mut self, event: &Event) {
        let data = serialize(event);
        // Writing into a Vec cannot fail; RecordWriter only returns io::Result for real files.
        RecordWriter::new(&mut self.pending)
            .write(&data)
            .expect("writing a record into memory cannot fail");
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            tracing::debug!(
                path = %self.path.display(),
                bytes = self.pending.len(),
                "event writer dropped with unflushed events; they are discarded"
            );
        }
    }
}

/// Reads an event file back, checking the framing and both masked CRC32Cs (length and data) of
/// every record, and returns the decoded events in order.
///
/// A bad CRC, impossible length or a trailing partial record (a writer killed mid-write) is an
/// error naming the file and the record's byte offset. Parses with `protobuf` 2.28; meant for
/// files geoexp wrote (see the module docs).
pub fn read_events(path: &Path) -> Result<Vec<Event>, TensorboardError> {
    let bytes = std::fs::read(path).map_err(|source| TensorboardError::Io {
        action: "reading event file",
        path: path.to_path_buf(),
        source,
    })?;
    records(path, &bytes)?
        .into_iter()
        .map(|(offset, data)| {
            Event::parse_from_bytes(data).map_err(|source| TensorboardError::Decode {
                path: path.to_path_buf(),
                offset,
                source,
            })
        })
        .collect()
}

/// `(tag, step, value)` of every `simple_value` scalar in an event file, in order.
pub fn read_scalars(path: &Path) -> Result<Vec<(String, i64, f64)>, TensorboardError> {
    Ok(read_events(path)?
        .iter()
        .filter(|e| e.has_summary())
        .flat_map(|e| {
            e.get_summary()
                .get_value()
                .iter()
                .filter(|v| v.has_simple_value())
                .map(|v| {
                    (
                        v.get_tag().to_string(),
                        e.get_step(),
                        f64::from(v.get_simple_value()),
                    )
                })
        })
        .collect())
}

/// Splits `bytes` into records, checking both CRCs; returns each record's offset and data.
fn records<'a>(path: &Path, bytes: &'a [u8]) -> Result<Vec<(u64, &'a [u8])>, TensorboardError> {
    let corrupt = |offset: usize, reason: String| TensorboardError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < HEADER_LEN {
            return Err(corrupt(
                pos,
                format!("file ends inside a record header ({} bytes)", rest.len()),
            ));
        }
        let len_bytes: [u8; 8] = rest[..8].try_into().expect("8 bytes");
        let len_crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        if masked_crc32c(&len_bytes) != len_crc {
            return Err(corrupt(pos, "length CRC mismatch".to_string()));
        }
        let len = u64::from_le_bytes(len_bytes);
        let whole = len
            .checked_add((HEADER_LEN + FOOTER_LEN) as u64)
            .filter(|&whole| whole <= rest.len() as u64);
        let Some(whole) = whole else {
            return Err(corrupt(
                pos,
                format!(
                    "file ends inside a record of {len} bytes ({} bytes left)",
                    rest.len()
                ),
            ));
        };
        // Both fit in usize: they are no longer than the slice.
        let (len, whole) = (len as usize, whole as usize);
        let data = &rest[HEADER_LEN..HEADER_LEN + len];
        let data_crc =
            u32::from_le_bytes(rest[HEADER_LEN + len..whole].try_into().expect("4 bytes"));
        if masked_crc32c(data) != data_crc {
            return Err(corrupt(pos, "data CRC mismatch".to_string()));
        }
        out.push((pos as u64, data));
        pos += whole;
    }
    Ok(out)
}

fn histogram_proto(values: &[f64]) -> HistogramProto {
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let mut h = HistogramProto::new();
    if finite.is_empty() {
        return h;
    }
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    h.set_min(min);
    h.set_max(max);
    h.set_num(finite.len() as f64);
    h.set_sum(finite.iter().sum());
    h.set_sum_squares(finite.iter().map(|v| v * v).sum());
    // TensorBoard reads bucket i as [previous limit (or min), bucket_limit[i]), with the last
    // bucket ending at max; a single bucket covers the degenerate min == max case.
    let buckets = if max > min { HISTOGRAM_BUCKETS } else { 1 };
    let width = (max - min) / buckets as f64;
    let mut counts = vec![0.0; buckets];
    for v in &finite {
        let i = if width > 0.0 {
            (((v - min) / width) as usize).min(buckets - 1)
        } else {
            0
        };
        counts[i] += 1.0;
    }
    let limits = (1..=buckets)
        .map(|i| {
            if i == buckets {
                max
            } else {
                min + width * i as f64
            }
        })
        .collect();
    h.set_bucket_limit(limits);
    h.set_bucket(counts);
    h
}

/// Width, height and TensorBoard colorspace from a PNG's IHDR chunk, if it is a PNG.
fn png_header(png: &[u8]) -> Option<(u32, u32, i32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.len() < 26 || &png[..8] != SIGNATURE || &png[12..16] != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let height = u32::from_be_bytes(png[20..24].try_into().ok()?);
    let colorspace = match png[25] {
        0 => 1,
        4 => 2,
        6 => 4,
        // 2 (RGB) and 3 (palette) both display as RGB.
        _ => 3,
    };
    Some((width, height, colorspace))
}

fn clamp_i32(x: u32) -> i32 {
    i32::try_from(x).unwrap_or(i32::MAX)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn serialize(message: &impl Message) -> Vec<u8> {
    // Only fails for messages missing required fields, which proto3 messages cannot have.
    message
        .write_to_bytes()
        .expect("proto3 messages always serialise")
}

/// Makes a newly created file's directory entry durable, so a crash cannot lose the file itself.
fn sync_dir(dir: &Path) -> Result<(), TensorboardError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| TensorboardError::Io {
                action: "syncing directory",
                path: dir.to_path_buf(),
                source,
            })?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests;
