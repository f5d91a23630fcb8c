//! A weights file opened whatever its format, told by its first bytes rather than its name:
//! every tensor's name and shape up front, values read one tensor at a time.
//!
//! - safetensors: candle's safetensors reader.
//! - PyTorch zip archives (`torch.save`, torch ≥ 1.6: `.pth`, `.pt`, `.bin`, Lightning `.ckpt`):
//!   `data.pkl` parsed by `candle_core::pickle`'s `Stack`, each tensor's storage then read from
//!   the zip here (candle's `PthTensors` cannot read strided views, skips unknown dtypes with a
//!   message on stderr, and its zip opening fails on some torch archives: see [`open_zip`]).
//! - PyTorch's legacy format (pre-1.6), plain pickles, TorchScript archives, anything else: an
//!   error saying what the file is and what to do.
//!
//! A PyTorch file's tensors are those of the first of [`STATE_DICT_KEYS`] holding a dict of
//! tensors (Lightning keeps them under `state_dict`, next to `optimizer_states`,
//! `hyper_parameters`, ..), else the top-level dict's (a plain state dict).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::pickle::{Object, Stack, TensorInfo};
use candle_core::safetensors::BufferedSafetensors;
use candle_core::{Device, Tensor};
use zip::ZipArchive;

use crate::model::ModelError;

/// Keys of a checkpoint dict whose value may be the state dict, tried in this order when the
/// top-level dict holds no tensors.
pub const STATE_DICT_KEYS: [&str; 3] = ["state_dict", "model_state_dict", "model"];

/// What torch's legacy format starts with after the pickle's PROTO and LONG1 opcodes: its magic
/// number `0x1950a86a20f9469cfc6c`, little-endian.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];

/// An open weights file.
pub struct WeightsFile {
    path: PathBuf,
    /// Each tensor's shape, or why it cannot be read (a dtype candle lacks, ..).
    shapes: BTreeMap<String, Result<Vec<usize>, String>>,
    source: Source,
}

enum Source {
    Safetensors(BufferedSafetensors),
    Torch {
        zip: ZipArchive<BufReader<File>>,
        infos: BTreeMap<String, TensorInfo>,
    },
}

/// The formats told apart by the first bytes.
#[derive(Debug, PartialEq)]
enum Kind {
    Safetensors,
    Zip,
    LegacyTorch,
    /// Neither: what it looks like.
    Other(String),
}

impl WeightsFile {
    /// Opens `path` and lists its tensors; reads no tensor data but a safetensors file's.
    pub fn open(path: &Path) -> Result<Self, ModelError> {
        let read_err = |e: candle_core::Error| ModelError::ReadWeights {
            path: path.to_path_buf(),
            source: e,
        };
        let mut head = Vec::with_capacity(64);
        let len = File::open(path)
            .and_then(|f| {
                let len = f.metadata()?.len();
                f.take(64).read_to_end(&mut head)?;
                Ok(len)
            })
            .map_err(|e| read_err(e.into()))?;
        let (shapes, source) = match sniff(&head, len) {
            Kind::Safetensors => {
                let bytes = std::fs::read(path).map_err(|e| read_err(e.into()))?;
                let st = BufferedSafetensors::new(bytes).map_err(read_err)?;
                let shapes = st
                    .tensors()
                    .into_iter()
                    .map(|(name, view)| (name, Ok(view.shape().to_vec())))
                    .collect();
                (shapes, Source::Safetensors(st))
            }
            Kind::Zip => open_torch_zip(path)?,
            Kind::LegacyTorch => {
                return Err(ModelError::LegacyTorchFormat {
                    path: path.to_path_buf(),
                });
            }
            Kind::Other(what) => {
                return Err(ModelError::UnknownWeightsFormat {
                    path: path.to_path_buf(),
                    what,
                });
            }
        };
        Ok(Self {
            path: path.to_path_buf(),
            shapes,
            source,
        })
    }

    /// Every tensor's name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.shapes.keys().map(String::as_str)
    }

    /// The shape of tensor `name` (one of [`Self::names`]), or why it cannot be read.
    pub fn shape(&self, name: &str) -> Result<&[usize], ModelError> {
        match &self.shapes[name] {
            Ok(shape) => Ok(shape),
            Err(why) => Err(self.tensor_err(name, candle_core::Error::Msg(why.clone()))),
        }
    }

    /// Tensor `name` (one of [`Self::names`]), on the CPU, in the file's dtype.
    pub fn load(&mut self, name: &str) -> Result<Tensor, ModelError> {
        let t = match &mut self.source {
            Source::Safetensors(st) => st.load(name, &Device::Cpu),
            Source::Torch { zip, infos } => read_torch_tensor(zip, &infos[name]),
        };
        t.map_err(|e| self.tensor_err(name, e))
    }

    fn tensor_err(&self, name: &str, e: candle_core::Error) -> ModelError {
        ModelError::ReadWeights {
            path: self.path.clone(),
            source: e.context(format!("tensor `{name}`")),
        }
    }
}

/// Which format `head`, the first bytes of a file `len` bytes long, is in.
fn sniff(head: &[u8], len: u64) -> Kind {
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return Kind::Zip;
    }
    // safetensors: a little-endian u64 header length, then the JSON header.
    if let Some(n) = head.get(..8) {
        let n = u64::from_le_bytes(n.try_into().expect("8 bytes"));
        if head.get(8) == Some(&b'{') && n.checked_add(8).is_some_and(|end| end <= len) {
            return Kind::Safetensors;
        }
    }
    // A pickle (PROTO opcode); torch's legacy format opens with a LONG1 of its magic number.
    if head.first() == Some(&0x80) {
        let legacy = head
            .windows(LEGACY_MAGIC.len())
            .take(16)
            .any(|w| w == LEGACY_MAGIC);
        return if legacy {
            Kind::LegacyTorch
        } else {
            Kind::Other(
                "it is a plain Python pickle, not written by `torch.save` (nor by safetensors)"
                    .into(),
            )
        };
    }
    let text = String::from_utf8_lossy(head);
    if text.starts_with("version https://git-lfs") {
        return Kind::Other(
            "it is a Git LFS pointer, not the file itself (`git lfs pull` fetches it)".into(),
        );
    }
    let lower = text.trim_start().to_ascii_lowercase();
    if lower.starts_with("<!doctype html") || lower.starts_with("<html") {
        return Kind::Other("it is an HTML page (a failed download?)".into());
    }
    if len == 0 {
        return Kind::Other("it is empty".into());
    }
    let shown: String = head
        .iter()
        .take(16)
        .flat_map(|b| b.escape_ascii())
        .map(char::from)
        .collect();
    Kind::Other(format!("it starts with b\"{shown}\""))
}

type Listing = (BTreeMap<String, Result<Vec<usize>, String>>, Source);

/// A PyTorch zip archive's state dict: its tensors' names and where their data lies.
fn open_torch_zip(path: &Path) -> Result<Listing, ModelError> {
    let read_err = |e: candle_core::Error| ModelError::ReadWeights {
        path: path.to_path_buf(),
        source: e,
    };
    let not_torch = |what: &str| ModelError::UnknownWeightsFormat {
        path: path.to_path_buf(),
        what: what.to_string(),
    };
    let mut zip = open_zip(path).map_err(|e| read_err(e.into()))?;
    let names: Vec<String> = zip
        .file_names_raw()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    // `<archive>/data.pkl`; torch names the archive folder after the file (or `archive`).
    let Some(pkl) = names
        .iter()
        .filter(|n| n.rsplit('/').next() == Some("data.pkl"))
        .min_by_key(|n| n.matches('/').count())
        .cloned()
    else {
        return Err(not_torch(
            "it is a zip archive without `data.pkl`, not written by `torch.save`",
        ));
    };
    let dir = pkl.strip_suffix("data.pkl").expect("ends with data.pkl");
    if names
        .iter()
        .any(|n| n == &format!("{dir}constants.pkl") || n.starts_with(&format!("{dir}code/")))
    {
        return Err(ModelError::NotAStateDict {
            path: path.to_path_buf(),
            found: "a TorchScript module (`torch.jit.save`)".into(),
        });
    }
    if let Ok(mut order) = zip.by_name(&format!("{dir}byteorder")) {
        let mut s = String::new();
        order
            .read_to_string(&mut s)
            .map_err(|e| read_err(e.into()))?;
        if s.trim() == "big" {
            return Err(read_err(candle_core::Error::Msg(
                "its tensors are stored big-endian, which is not read here".into(),
            )));
        }
    }
    let obj = {
        let entry = zip.by_name(&pkl).map_err(|e| read_err(e.into()))?;
        let mut stack = Stack::empty();
        stack
            .read_loop(&mut BufReader::new(entry))
            .and_then(|()| stack.finalize())
            .map_err(|e| read_err(e.context(format!("parsing `{pkl}`"))))?
    };
    let tensors = state_dict(obj, Path::new(&format!("{dir}data"))).map_err(|found| {
        ModelError::NotAStateDict {
            path: path.to_path_buf(),
            found,
        }
    })?;
    let mut shapes = BTreeMap::new();
    let mut infos = BTreeMap::new();
    for (name, info) in tensors {
        match info {
            Ok(info) => {
                shapes.insert(name.clone(), Ok(info.layout.dims().to_vec()));
                infos.insert(name, info);
            }
            Err(why) => {
                shapes.insert(name, Err(why));
            }
        }
    }
    Ok((shapes, Source::Torch { zip, infos }))
}

/// Opens a zip archive that starts at the file's first byte, as torch's do.
///
/// The zip crate's default, `ArchiveOffset::Detect`, prefers the central directory start
/// implied by the end record's size field; torch writes a zip64 end record and locator (76
/// bytes) between the central directory and that record, so when the first central entry is
/// itself 76 bytes long (a 21-character archive folder, i.e. a file named like
/// `tiny_cnn_dataparallel.pt`) it lands on the second entry and fails with "Invalid Central
/// Directory header" (zip 9.4.1, which candle 0.11.1's own `pickle::read_all` uses). Torch's
/// archives have no prefix, so offset 0 is tried first, and detection only after.
fn open_zip(path: &Path) -> zip::result::ZipResult<ZipArchive<BufReader<File>>> {
    use zip::read::{ArchiveOffset, Config};
    let known = Config {
        archive_offset: ArchiveOffset::Known(0),
    };
    match ZipArchive::with_config(known, BufReader::new(File::open(path)?)) {
        Ok(zip) => Ok(zip),
        Err(_) => ZipArchive::new(BufReader::new(File::open(path)?)),
    }
}

/// A tensor found in a pickle: where its data lies, or why it cannot be read.
type Found = (String, Result<TensorInfo, String>);

/// The state dict in `obj`, a `data.pkl`'s object: the tensors of the first of
/// [`STATE_DICT_KEYS`] holding a dict of them, else the top-level dict's. `Err` says what `obj`
/// holds instead.
fn state_dict(obj: Object, dir: &Path) -> Result<Vec<Found>, String> {
    let items = match obj {
        Object::Dict(items) => items,
        other => return Err(describe(&other, true)),
    };
    // Tensors at the top, dicts of tensors by key, and everything else.
    let (mut top, mut nested, mut rest) = (Vec::new(), Vec::new(), Vec::new());
    for (key, value) in items {
        match (key, value) {
            (key @ Object::Unicode(_), value) if is_tensor(&value) => top.push((key, value)),
            (Object::Unicode(k), Object::Dict(inner)) => match tensors(inner, dir) {
                Ok(found) => nested.push((k, found)),
                Err(inner) => rest.push((Object::Unicode(k), Object::Dict(inner))),
            },
            (key, value) => rest.push((key, value)),
        }
    }
    // A state dict's values are all tensors, so a dict of tensors under a state-dict key
    // wins over stray tensors next to it (PyTorch's ImageNet example saves `best_acc1`).
    for wanted in STATE_DICT_KEYS {
        if let Some(i) = nested.iter().position(|(k, _)| k == wanted) {
            return Ok(nested.swap_remove(i).1);
        }
    }
    if !top.is_empty() {
        return tensors(top, dir).map_err(|_| unreachable!("tensors only"));
    }
    // candle's SETITEMS reverses the items of each batch: sorted names read better.
    nested.sort_by(|a, b| a.0.cmp(&b.0));
    if !nested.is_empty() {
        let keys: Vec<String> = nested.iter().map(|(k, _)| format!("`{k}`")).collect();
        return Err(format!(
            "a dict whose tensors are under {}, none of {}; re-save the one wanted with \
             `torch.save(checkpoint[\"{}\"], path)`",
            keys.join(", "),
            STATE_DICT_KEYS.map(|k| format!("`{k}`")).join(", "),
            nested[0].0
        ));
    }
    const SHOWN: usize = 8;
    rest.retain(|(k, _)| !matches!(k, Object::Unicode(k) if k == "_metadata"));
    rest.sort_by_key(|(k, _)| match k {
        Object::Unicode(k) => k.clone(),
        _ => String::new(),
    });
    let mut keys: Vec<String> = rest
        .iter()
        .take(SHOWN)
        .map(|(k, v)| match k {
            Object::Unicode(k) => format!("`{k}`: {}", describe(v, false)),
            k => format!("{}: {}", describe(k, false), describe(v, false)),
        })
        .collect();
    if rest.len() > SHOWN {
        keys.push(format!("and {} more", rest.len() - SHOWN));
    }
    Err(if keys.is_empty() {
        "an empty dict".to_string()
    } else {
        format!("a dict without tensors ({})", keys.join(", "))
    })
}

/// The tensors among a dict's `items` (keyed by strings), or the items back if there is none.
fn tensors(items: Vec<(Object, Object)>, dir: &Path) -> Result<Vec<Found>, Vec<(Object, Object)>> {
    if !items
        .iter()
        .any(|(k, v)| matches!(k, Object::Unicode(_)) && is_tensor(v))
    {
        return Err(items);
    }
    Ok(items
        .into_iter()
        .filter(|(k, v)| matches!(k, Object::Unicode(_)) && is_tensor(v))
        .map(|(k, v)| {
            let name = match &k {
                Object::Unicode(name) => name.clone(),
                _ => unreachable!("filtered"),
            };
            let info = match unwrap_parameter_with_state(v).into_tensor_info(k, dir) {
                Ok(Some(info)) => Ok(info),
                Ok(None) => Err("not a plain tensor".to_string()),
                Err(e) => Err(e.to_string()),
            };
            (name, info)
        })
        .collect())
}

/// How torch pickles a tensor: a REDUCE of one of these.
const TENSOR_REBUILDERS: [(&str, &str); 4] = [
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"),
];

fn is_tensor(obj: &Object) -> bool {
    match obj {
        Object::Reduce { callable, .. } => matches!(
            callable.as_ref(),
            Object::Class { module_name, class_name }
                if TENSOR_REBUILDERS.iter().any(|(m, c)| m == module_name && c == class_name)
        ),
        _ => false,
    }
}

/// `_rebuild_parameter_with_state(data, requires_grad, hooks, state)` (a parameter with Python
/// attributes) as the `_rebuild_parameter(data, requires_grad, hooks)` candle reads.
fn unwrap_parameter_with_state(obj: Object) -> Object {
    match obj {
        Object::Reduce { callable, args } => match (*callable, *args) {
            (
                Object::Class {
                    module_name,
                    class_name,
                },
                Object::Tuple(mut a),
            ) if module_name == "torch._utils"
                && class_name == "_rebuild_parameter_with_state"
                && a.len() >= 3 =>
            {
                a.truncate(3);
                Object::Reduce {
                    callable: Box::new(Object::Class {
                        module_name,
                        class_name: "_rebuild_parameter".into(),
                    }),
                    args: Box::new(Object::Tuple(a)),
                }
            }
            (callable, args) => Object::Reduce {
                callable: Box::new(callable),
                args: Box::new(args),
            },
        },
        obj => obj,
    }
}

/// A short description of a pickled object; `top` for the whole file's, which says more.
fn describe(obj: &Object, top: bool) -> String {
    match obj {
        Object::Int(_) | Object::Long(_) => "int".into(),
        Object::Float(_) => "float".into(),
        Object::Unicode(_) => "str".into(),
        Object::Bool(_) => "bool".into(),
        Object::None => "None".into(),
        Object::Tuple(v) => format!("a tuple of {} item(s)", v.len()),
        Object::List(v) => format!("a list of {} item(s)", v.len()),
        Object::Dict(v) => format!("a dict of {} item(s)", v.len()),
        obj if is_tensor(obj) => "a single tensor".into(),
        obj => match class_of(obj) {
            Some(class) if top => format!(
                "a pickled `{class}` object (`torch.save(model)` pickles the whole module, \
                 and needs its Python code to load)"
            ),
            Some(class) => format!("a pickled `{class}` object"),
            None => "a pickled object".into(),
        },
    }
}

/// The class of a pickled object built by NEWOBJ / REDUCE (+ BUILD), as `module.Class`.
fn class_of(obj: &Object) -> Option<String> {
    match obj {
        Object::Build { callable, .. } => class_of(callable),
        Object::Reduce { callable, args } => match callable.as_ref() {
            // `copyreg._reconstructor(cls, base, state)`, protocol < 2's way.
            Object::Class {
                module_name,
                class_name,
            } if module_name == "copyreg" && class_name == "_reconstructor" => {
                match args.as_ref() {
                    Object::Tuple(a) => a.first().and_then(class_of),
                    _ => None,
                }
            }
            Object::Class {
                module_name,
                class_name,
            } => Some(format!("{module_name}.{class_name}")),
            _ => None,
        },
        Object::Class {
            module_name,
            class_name,
        } => Some(format!("{module_name}.{class_name}")),
        _ => None,
    }
}

/// Reads one tensor's data from a torch zip archive: its whole storage, then the view `info`
/// describes (offset, shape and strides; strided views are gathered element by element).
fn read_torch_tensor(
    zip: &mut ZipArchive<BufReader<File>>,
    info: &TensorInfo,
) -> candle_core::Result<Tensor> {
    let dtype = info.dtype;
    let size = dtype.size_in_bytes();
    let bytes = info.storage_size * size;
    let mut data = Vec::with_capacity(bytes);
    zip.by_name(&info.path)?.read_to_end(&mut data)?;
    if data.len() < bytes {
        candle_core::bail!(
            "storage `{}` holds {} bytes, the tensor's {} {dtype:?} elements need {bytes}",
            info.path,
            data.len(),
            info.storage_size
        );
    }
    let storage =
        Tensor::from_raw_buffer(&data[..bytes], dtype, &[info.storage_size], &Device::Cpu)?;
    let dims = info.layout.dims();
    let numel: usize = dims.iter().product();
    // candle's `Layout` holds the storage offset in bytes.
    let offset = info.layout.start_offset() / size;
    if numel == 0 {
        return Tensor::zeros(dims, dtype, &Device::Cpu);
    }
    let last = dims
        .iter()
        .zip(info.layout.stride())
        .fold(offset, |acc, (d, s)| acc + (d - 1) * s);
    if last >= info.storage_size {
        candle_core::bail!(
            "tensor of shape {dims:?}, strides {:?} and offset {offset} runs past its storage of {} elements",
            info.layout.stride(),
            info.storage_size
        );
    }
    if info.layout.is_contiguous() {
        return storage.narrow(0, offset, numel)?.reshape(dims);
    }
    let mut index = Vec::with_capacity(numel);
    let mut at = vec![0usize; dims.len()];
    for _ in 0..numel {
        let i: usize = offset
            + at.iter()
                .zip(info.layout.stride())
                .map(|(a, s)| a * s)
                .sum::<usize>();
        index.push(i as i64);
        for d in (0..dims.len()).rev() {
            at[d] += 1;
            if at[d] < dims[d] {
                break;
            }
            at[d] = 0;
        }
    }
    let index = Tensor::from_vec(index, numel, &Device::Cpu)?;
    storage.index_select(&index, 0)?.reshape(dims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_tells_formats_by_their_first_bytes() {
        let mut st = 2u64.to_le_bytes().to_vec();
        st.extend(b"{}");
        assert_eq!(sniff(&st, 10), Kind::Safetensors);
        assert!(
            matches!(sniff(&st, 9), Kind::Other(_)),
            "header past the end"
        );
        assert_eq!(sniff(b"PK\x03\x04rest", 100), Kind::Zip);
        let mut legacy = vec![0x80, 0x02, 0x8a, 0x0a];
        legacy.extend(LEGACY_MAGIC);
        assert_eq!(sniff(&legacy, 100), Kind::LegacyTorch);
        let other = |head: &[u8]| match sniff(head, 100) {
            Kind::Other(what) => what,
            kind => panic!("{kind:?}"),
        };
        assert!(other(b"\x80\x04\x95").contains("plain Python pickle"));
        assert!(other(b"version https://git-lfs.github.com/spec/v1\n").contains("git lfs pull"));
        assert!(other(b"<!DOCTYPE html>").contains("HTML"));
        assert_eq!(other(b"GGUF\x03\x00"), "it starts with b\"GGUF\\x03\\x00\"");
    }
}
